//! The error every Corefile problem is reported with, below both the lexer and the parser.

/// A Corefile problem, located at `file:line` (CoreDNS prints the same shape).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line} - Error during parsing: {msg}")]
pub struct CorefileError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

impl CorefileError {
    pub fn at(file: &str, line: usize, msg: impl Into<String>) -> Self {
        CorefileError {
            file: file.to_string(),
            line,
            msg: msg.into(),
        }
    }
}

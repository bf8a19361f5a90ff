//! Splits Corefile text into tokens, each remembering the file and line it came from, so every
//! later error can say where the problem is.

use std::sync::Arc;

use super::error::CorefileError;

/// One word of a Corefile with its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub file: Arc<str>,
    pub line: usize,
    /// Quoted tokens are never treated as `{`/`}` or as directives of their own.
    pub quoted: bool,
}

impl Token {
    pub fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }
    pub fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
    pub fn err(&self, msg: impl Into<String>) -> CorefileError {
        CorefileError::at(&self.file, self.line, msg)
    }
}

/// Tokenizes `text`: whitespace separates, `#` starts a comment when it begins a word, double
/// quotes group words (with `\"` escapes), `{$NAME}` / `{%NAME%}` are replaced by the
/// environment through `env`.
pub fn tokenize(
    text: &str,
    file: &Arc<str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Token>, CorefileError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            line += 1;
            chars.next();
            continue;
        }
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                chars.next();
            }
            continue;
        }
        let start_line = line;
        let mut word = String::new();
        let mut quoted = false;
        if c == '"' {
            quoted = true;
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' if matches!(chars.peek(), Some('"') | Some('\\')) => {
                        word.push(chars.next().unwrap_or('\\'));
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\n' => {
                        line += 1;
                        word.push('\n');
                    }
                    c => word.push(c),
                }
            }
            if !closed {
                return Err(CorefileError::at(
                    file,
                    start_line,
                    "unterminated quoted string",
                ));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        let text = substitute_env(&word, env);
        tokens.push(Token {
            text,
            file: file.clone(),
            line: start_line,
            quoted,
        });
    }
    Ok(tokens)
}

/// Replaces `{$NAME}` and `{%NAME%}` inside one token; unset variables become empty, as in
/// CoreDNS.
fn substitute_env(word: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    if !word.contains('{') {
        return word.to_string();
    }
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(pos) = rest.find('{') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let (open, close) = if tail.starts_with("{$") {
            ("{$", "}")
        } else if tail.starts_with("{%") {
            ("{%", "%}")
        } else {
            out.push('{');
            rest = &tail[1..];
            continue;
        };
        match tail[open.len()..].find(close) {
            Some(end) => {
                let name = &tail[open.len()..open.len() + end];
                out.push_str(&env(name).unwrap_or_default());
                rest = &tail[open.len() + end + close.len()..];
            }
            None => {
                out.push_str(tail);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<(String, usize)> {
        let f: Arc<str> = Arc::from("Corefile");
        let env = |n: &str| (n == "ZONE").then(|| "cluster.local".to_string());
        tokenize(s, &f, &env)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.line))
            .collect()
    }

    #[test]
    fn comments_quotes_and_env() {
        let t = toks(".:53 { # comment\n  log \"a b\" {$ZONE} x{$NOPE}y\n}\n");
        let words: Vec<&str> = t.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(
            words,
            vec![".:53", "{", "log", "a b", "cluster.local", "xy", "}"]
        );
        assert_eq!(t[2].1, 2);
        assert_eq!(t[6].1, 3);
    }

    #[test]
    fn unterminated_quote_is_an_error_with_line() {
        let f: Arc<str> = Arc::from("Corefile");
        let err = tokenize("a\n\"b", &f, &|_| None).unwrap_err();
        assert_eq!(err.line, 2);
    }
}

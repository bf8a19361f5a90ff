//! The Corefile: server blocks (`zone:port ... { directives }`), snippets and `import`, `{$ENV}`
//! substitution. Parsing only builds the syntax tree; plugins interpret their own directives.

pub mod address;
pub mod error;
pub mod lexer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use address::{ListenAddr, parse_address};
pub use error::CorefileError;
pub use lexer::Token;

/// One line inside a directive's `{ }` block: a keyword and its arguments.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: Token,
    pub args: Vec<Token>,
}

impl Line {
    pub fn arg_strs(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }
    pub fn err(&self, msg: impl Into<String>) -> CorefileError {
        self.name.err(msg)
    }
}

/// A directive in a server block: `name args... [{ lines }]`.
#[derive(Debug, Clone)]
pub struct Directive {
    pub name: Token,
    pub args: Vec<Token>,
    pub block: Vec<Line>,
}

impl Directive {
    pub fn arg_strs(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }
    pub fn err(&self, msg: impl Into<String>) -> CorefileError {
        self.name
            .err(format!("plugin/{}: {}", self.name.text, msg.into()))
    }
}

/// A server block: its keys (zones with optional port) and directives in written order.
#[derive(Debug, Clone)]
pub struct ServerBlock {
    pub keys: Vec<Token>,
    pub directives: Vec<Directive>,
}

/// A parsed Corefile.
#[derive(Debug, Clone)]
pub struct Corefile {
    pub blocks: Vec<ServerBlock>,
}

/// Reads and parses a Corefile from disk; imports resolve relative to its folder.
pub fn parse_file(path: &Path) -> Result<Corefile, CorefileError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CorefileError::at(
            &path.display().to_string(),
            0,
            format!("cannot read the Corefile: {e}"),
        )
    })?;
    parse_str(&text, &path.display().to_string(), path.parent(), &|n| {
        std::env::var(n).ok()
    })
}

/// Parses Corefile text. `dir` is where relative `import` paths are looked up (None: imports
/// of files are an error).
pub fn parse_str(
    text: &str,
    file: &str,
    dir: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Corefile, CorefileError> {
    let file: Arc<str> = Arc::from(file);
    let tokens = lexer::tokenize(text, &file, env)?;
    let mut p = Parser {
        snippets: Vec::new(),
        dir: dir.map(Path::to_path_buf),
        env,
        depth: 0,
        file: file.clone(),
    };
    let blocks = p.top_level(tokens)?;
    if blocks.is_empty() {
        return Err(CorefileError::at(
            &file,
            1,
            "no server blocks in the Corefile",
        ));
    }
    Ok(Corefile { blocks })
}

struct Parser<'a> {
    snippets: Vec<(String, Vec<Token>)>,
    dir: Option<PathBuf>,
    env: &'a dyn Fn(&str) -> Option<String>,
    depth: usize,
    file: Arc<str>,
}

/// Imports nest at most this deep, which also stops a snippet or file importing itself.
const MAX_IMPORT_DEPTH: usize = 10;

impl Parser<'_> {
    fn top_level(&mut self, tokens: Vec<Token>) -> Result<Vec<ServerBlock>, CorefileError> {
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let t = &tokens[i];
            // `(name) { ... }` defines a snippet.
            if !t.quoted && t.text.starts_with('(') && t.text.ends_with(')') && t.text.len() > 2 {
                let name = t.text[1..t.text.len() - 1].to_string();
                let (body, next) = braced(&tokens, i + 1, t)?;
                self.snippets.push((name, body));
                i = next;
                continue;
            }
            if !t.quoted && t.text == "import" {
                let (arg, next) = import_arg(&tokens, i)?;
                let expanded = self.expand_import(&arg)?;
                let mut rest: Vec<Token> = expanded;
                rest.extend_from_slice(&tokens[next..]);
                return {
                    let mut more = self.top_level(rest)?;
                    blocks.append(&mut more);
                    Ok(blocks)
                };
            }
            // Server block keys: every token up to `{`; keys may be comma separated.
            let mut keys = Vec::new();
            let first_line = t.line;
            while i < tokens.len() && !tokens[i].is_open() {
                let k = &tokens[i];
                if k.is_close() {
                    return Err(k.err("unexpected '}'"));
                }
                if k.line != first_line && !keys.is_empty() {
                    return Err(k.err(format!(
                        "expected '{{' to open the server block of {}",
                        keys.iter()
                            .map(|k: &Token| k.text.clone())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )));
                }
                for part in k.text.split(',') {
                    if !part.is_empty() {
                        keys.push(Token {
                            text: part.to_string(),
                            ..k.clone()
                        });
                    }
                }
                i += 1;
            }
            if i >= tokens.len() {
                return Err(t.err("server block without '{'"));
            }
            let (body, next) = braced(&tokens, i, &tokens[i])?;
            let body = self.expand_imports_in(body)?;
            let directives = directives(&body)?;
            blocks.push(ServerBlock { keys, directives });
            i = next;
        }
        Ok(blocks)
    }

    /// Replaces `import X` lines inside a block body with the snippet's or files' tokens.
    fn expand_imports_in(&mut self, body: Vec<Token>) -> Result<Vec<Token>, CorefileError> {
        if !body.iter().any(|t| !t.quoted && t.text == "import") {
            return Ok(body);
        }
        let mut out = Vec::with_capacity(body.len());
        let mut i = 0;
        while i < body.len() {
            let t = &body[i];
            let starts_line = i == 0 || body[i - 1].line != t.line || body[i - 1].file != t.file;
            if !t.quoted && t.text == "import" && starts_line {
                let (arg, next) = import_arg(&body, i)?;
                let expanded = self.expand_import(&arg)?;
                let expanded = self.expand_imports_in(expanded)?;
                self.depth -= 1;
                out.extend(expanded);
                i = next;
            } else {
                out.push(t.clone());
                i += 1;
            }
        }
        Ok(out)
    }

    fn expand_import(&mut self, arg: &Token) -> Result<Vec<Token>, CorefileError> {
        self.depth += 1;
        if self.depth > MAX_IMPORT_DEPTH {
            return Err(arg.err(format!(
                "import of '{}' nests too deep (a cycle?)",
                arg.text
            )));
        }
        if let Some((_, body)) = self.snippets.iter().find(|(n, _)| *n == arg.text) {
            return Ok(body.clone());
        }
        let Some(dir) = &self.dir else {
            return Err(arg.err(format!("import '{}': no such snippet", arg.text)));
        };
        let path = dir.join(&arg.text);
        let paths = glob_files(&path).map_err(|e| arg.err(e))?;
        if paths.is_empty() {
            return Err(arg.err(format!("import '{}': no snippet or file matches", arg.text)));
        }
        let mut out = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| arg.err(format!("import '{}': {e}", p.display())))?;
            let f: Arc<str> = Arc::from(p.display().to_string());
            out.extend(lexer::tokenize(&text, &f, self.env)?);
        }
        let _ = &self.file;
        Ok(out)
    }
}

/// Returns the files an import path names: the file itself, or for a `*` in the last component,
/// every file in the folder that matches.
fn glob_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if !name.contains('*') {
        return Ok(if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let (pre, post) = name.split_once('*').unwrap_or((&name, ""));
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("import: {}: {e}", dir.display()))?;
    for entry in rd.flatten() {
        let n = entry.file_name().to_string_lossy().to_string();
        if n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn import_arg(tokens: &[Token], i: usize) -> Result<(Token, usize), CorefileError> {
    let t = &tokens[i];
    match tokens.get(i + 1) {
        Some(a) if a.line == t.line && a.file == t.file && !a.is_open() && !a.is_close() => {
            // Extra words on the line are snippet arguments; skip them.
            let mut next = i + 2;
            while next < tokens.len() && tokens[next].line == t.line && tokens[next].file == t.file
            {
                if tokens[next].is_close() {
                    break;
                }
                next += 1;
            }
            Ok((a.clone(), next))
        }
        _ => Err(t.err("import needs a snippet name or file path")),
    }
}

/// Given `tokens[open]` is `{`, returns the tokens inside the matching `}` and the index after it.
fn braced(
    tokens: &[Token],
    open: usize,
    owner: &Token,
) -> Result<(Vec<Token>, usize), CorefileError> {
    match tokens.get(open) {
        Some(t) if t.is_open() => {}
        Some(t) => {
            return Err(t.err(format!(
                "expected '{{' after '{}', got '{}'",
                owner.text, t.text
            )));
        }
        None => return Err(owner.err(format!("expected '{{' after '{}'", owner.text))),
    }
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        if t.is_open() {
            depth += 1;
        } else if t.is_close() {
            depth -= 1;
            if depth == 0 {
                return Ok((tokens[open + 1..j].to_vec(), j + 1));
            }
        }
    }
    Err(tokens[open].err("unmatched '{' (missing '}')"))
}

/// Groups a block body into directives: a name and the words on its line, then an optional
/// `{ ... }` whose lines are the directive's sub-settings.
fn directives(body: &[Token]) -> Result<Vec<Directive>, CorefileError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let name = body[i].clone();
        if name.is_open() || name.is_close() {
            return Err(name.err(format!("unexpected '{}'", name.text)));
        }
        i += 1;
        let mut args = Vec::new();
        while i < body.len() && same_line(&body[i], &name) && !body[i].is_open() {
            if body[i].is_close() {
                return Err(body[i].err("unexpected '}'"));
            }
            args.push(body[i].clone());
            i += 1;
        }
        let mut block = Vec::new();
        if i < body.len() && body[i].is_open() && same_line(&body[i], args.last().unwrap_or(&name))
        {
            let (inner, next) = braced(body, i, &name)?;
            i = next;
            let mut j = 0;
            while j < inner.len() {
                let lname = inner[j].clone();
                if lname.is_open() || lname.is_close() {
                    return Err(lname.err(format!("unexpected '{}' in {}", lname.text, name.text)));
                }
                j += 1;
                let mut largs = Vec::new();
                while j < inner.len() && same_line(&inner[j], &lname) {
                    if inner[j].is_open() || inner[j].is_close() {
                        return Err(inner[j]
                            .err(format!("nested blocks are not supported in {}", name.text)));
                    }
                    largs.push(inner[j].clone());
                    j += 1;
                }
                block.push(Line {
                    name: lname,
                    args: largs,
                });
            }
        }
        out.push(Directive { name, args, block });
    }
    Ok(out)
}

fn same_line(a: &Token, b: &Token) -> bool {
    a.line == b.line && a.file == b.file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Corefile, CorefileError> {
        parse_str(s, "Corefile", None, &|n| (n == "TTL").then(|| "30".into()))
    }

    #[test]
    fn kubeadm_corefile_parses() {
        let cf = parse(
            ".:53 {\n    errors\n    health {\n       lameduck 5s\n    }\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl {$TTL}\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf {\n       max_concurrent 1000\n    }\n    cache 30\n    loop\n    reload\n    loadbalance\n}\n",
        )
        .unwrap();
        assert_eq!(cf.blocks.len(), 1);
        let b = &cf.blocks[0];
        assert_eq!(b.keys[0].text, ".:53");
        let names: Vec<&str> = b.directives.iter().map(|d| d.name.text.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "errors",
                "health",
                "ready",
                "kubernetes",
                "prometheus",
                "forward",
                "cache",
                "loop",
                "reload",
                "loadbalance"
            ]
        );
        let k = &b.directives[3];
        assert_eq!(
            k.arg_strs(),
            vec!["cluster.local", "in-addr.arpa", "ip6.arpa"]
        );
        assert_eq!(k.block[2].name.text, "ttl");
        assert_eq!(k.block[2].arg_strs(), vec!["30"]);
        assert_eq!(k.block[2].name.line, 10);
    }

    #[test]
    fn one_line_blocks_snippets_and_multiple_keys() {
        let cf = parse(
            "(common) {\n errors\n log\n}\nexample.org:1053, example.com:1053 {\n import common\n health { lameduck 1s }\n}\n",
        )
        .unwrap();
        let b = &cf.blocks[0];
        assert_eq!(b.keys.len(), 2);
        assert_eq!(b.keys[1].text, "example.com:1053");
        let names: Vec<&str> = b.directives.iter().map(|d| d.name.text.as_str()).collect();
        assert_eq!(names, vec!["errors", "log", "health"]);
        assert_eq!(b.directives[2].block[0].arg_strs(), vec!["1s"]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(".:53 {\n errors\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("Corefile", 1));
        assert!(e.msg.contains("unmatched"), "{e}");
        let e = parse(".:53 {\n import nope\n}\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("}\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("(a) {\n import a\n}\n.:53 {\n import a\n}\n").unwrap_err();
        assert!(e.msg.contains("too deep"), "{e}");
        assert!(parse("").is_err());
    }

    #[test]
    fn file_imports_resolve_relative_to_the_corefile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("extra.conf"), "log\n").unwrap();
        std::fs::write(
            dir.path().join("Corefile"),
            ".:53 {\n import extra.conf\n errors\n}\n",
        )
        .unwrap();
        let cf = parse_file(&dir.path().join("Corefile")).unwrap();
        let names: Vec<&str> = cf.blocks[0]
            .directives
            .iter()
            .map(|d| d.name.text.as_str())
            .collect();
        assert_eq!(names, vec!["log", "errors"]);
        assert!(cf.blocks[0].directives[0].name.file.ends_with("extra.conf"));
    }
}

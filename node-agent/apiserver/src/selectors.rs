//! Label and field selectors, parsed from query strings (`app=web,tier!=db,env in (a,b),!x`) and
//! from `LabelSelector` objects (`matchLabels`/`matchExpressions`).
//!
//! The query syntax follows apimachinery (`pkg/labels/selector.go`: its lexer, its
//! recursive-descent parser and `NewRequirement`'s checks; `pkg/fields/selector.go` for field
//! selectors): anything else is a 400 with the message kube-apiserver gives, never a selector
//! that quietly matches more than was asked (`!!!` used to match everything).

use super::errors::{ApiError, ApiResult};
use super::validation::{label_value_errors, qualified_name_errors};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<Requirement>,
    /// A `LabelSelector` that can never match (an unknown operator is refused earlier; this is
    /// the nil-selector case controllers use for "select nothing").
    nothing: bool,
}

/// The longest selector string accepted: far beyond any real one, so a hostile query cannot
/// make the parser allocate without bound.
const MAX_SELECTOR_LEN: usize = 64 * 1024;

impl Selector {
    pub fn everything() -> Self {
        Selector::default()
    }

    pub fn nothing() -> Self {
        Selector {
            reqs: vec![],
            nothing: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty() && !self.nothing
    }

    /// Parses the `labelSelector` query syntax (apimachinery's `labels.Parse`).
    pub fn parse_labels(s: &str) -> ApiResult<Self> {
        check_length("label", s)?;
        let reqs = label_grammar::parse(s).map_err(ApiError::bad_request)?;
        Ok(Selector {
            reqs,
            nothing: false,
        })
    }

    /// Parses the `fieldSelector` query syntax (apimachinery's `fields.ParseSelector`: terms
    /// `key=value`, `key==value`, `key!=value` joined by commas; `\\`, `\,` and `\=` escaped).
    pub fn parse_fields(s: &str) -> ApiResult<Self> {
        check_length("field", s)?;
        let mut reqs = Vec::new();
        for term in split_unescaped_commas(s) {
            if term.is_empty() {
                continue;
            }
            let Some((key, op, value)) = split_field_term(term) else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let value = unescape_field_value(value).map_err(ApiError::bad_request)?;
            let op = if op == "!=" {
                Op::NotEq(value)
            } else {
                Op::Eq(value)
            };
            reqs.push(Requirement {
                key: key.to_string(),
                op,
            });
        }
        Ok(Selector {
            reqs,
            nothing: false,
        })
    }

    /// Builds a selector from a `LabelSelector` object; `None` (absent) selects nothing, as the
    /// controllers treat a missing selector.
    pub fn from_label_selector(v: Option<&Value>) -> ApiResult<Self> {
        let Some(v) = v.filter(|v| !v.is_null()) else {
            return Ok(Self::nothing());
        };
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                let val = val.as_str().unwrap_or_default().to_string();
                reqs.push(new_requirement(k.clone(), Op::Eq(val)).map_err(ApiError::bad_request)?);
            }
        }
        if let Some(exprs) = v.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In(values),
                    Some("NotIn") => Op::NotIn(values),
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                };
                reqs.push(new_requirement(key, op).map_err(ApiError::bad_request)?);
            }
        }
        Ok(Selector {
            reqs,
            nothing: false,
        })
    }

    /// Builds an equality selector from a plain map (a Service's `spec.selector`).
    pub fn from_map(m: &serde_json::Map<String, Value>) -> Self {
        Selector {
            reqs: m
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: Op::Eq(v.as_str().unwrap_or_default().into()),
                })
                .collect(),
            nothing: false,
        }
    }

    /// The keys this selector refers to (used to refuse unsupported field selectors).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.reqs.iter().map(|r| r.key.as_str())
    }

    /// Matches against a lookup function giving the value of a key, if present.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        if self.nothing {
            return false;
        }
        self.reqs.iter().all(|r| {
            let v = get(&r.key);
            match &r.op {
                // As apimachinery's `Requirement.Matches`: equality needs the key present
                // (`app=` selects an empty value, not a missing label).
                Op::Eq(want) => v == Some(want.as_str()),
                Op::NotEq(want) => v != Some(want.as_str()),
                Op::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => !v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }

    /// Matches a list of `(key, value)` pairs.
    pub fn matches_pairs(&self, pairs: &[(Box<str>, Box<str>)]) -> bool {
        self.matches(|k| pairs.iter().find(|(pk, _)| &**pk == k).map(|(_, v)| &**v))
    }

    /// Matches a JSON labels map.
    pub fn matches_labels(&self, labels: Option<&Value>) -> bool {
        let m = labels.and_then(Value::as_object);
        self.matches(|k| m.and_then(|m| m.get(k)).and_then(Value::as_str))
    }
}

fn check_length(what: &str, s: &str) -> ApiResult<()> {
    if s.len() > MAX_SELECTOR_LEN {
        return Err(ApiError::bad_request(format!(
            "{what} selector longer than {MAX_SELECTOR_LEN} bytes"
        )));
    }
    Ok(())
}

/// A requirement checked as apimachinery's `NewRequirement` checks it: a qualified-name key, and
/// values that are label values in the number the operator takes.
fn new_requirement(key: String, op: Op) -> Result<Requirement, String> {
    let key_errors = qualified_name_errors(&key);
    if !key_errors.is_empty() {
        return Err(format!("Invalid value: {key:?}: {}", key_errors.join("; ")));
    }
    let values: &[String] = match &op {
        Op::Eq(v) | Op::NotEq(v) => std::slice::from_ref(v),
        Op::In(vs) | Op::NotIn(vs) => {
            if vs.is_empty() {
                return Err(
                    "Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                        .to_string(),
                );
            }
            vs
        }
        Op::Exists | Op::DoesNotExist | Op::Gt(_) | Op::Lt(_) => &[],
    };
    for v in values {
        let errs = label_value_errors(v);
        if !errs.is_empty() {
            return Err(format!(
                "values[0][{key}]: Invalid value: {v:?}: {}",
                errs.join("; ")
            ));
        }
    }
    Ok(Requirement { key, op })
}

/// The label-selector query language: apimachinery's lexer and recursive-descent parser.
mod label_grammar {
    use super::{Op, Requirement, new_requirement};

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
        End,
        Ident(String),
        /// `in` and `notin`: operators after a key, plain identifiers where values stand.
        In,
        NotIn,
        Not,
        Eq,
        DoubleEq,
        NotEq,
        Gt,
        Lt,
        Comma,
        OpenPar,
        ClosePar,
        /// A run of operator characters that is no operator.
        Error(String),
    }

    impl Token {
        /// The text apimachinery's messages quote for this token.
        fn literal(&self) -> String {
            match self {
                Token::End => String::new(),
                Token::Ident(s) | Token::Error(s) => s.clone(),
                Token::In => "in".into(),
                Token::NotIn => "notin".into(),
                Token::Not => "!".into(),
                Token::Eq => "=".into(),
                Token::DoubleEq => "==".into(),
                Token::NotEq => "!=".into(),
                Token::Gt => ">".into(),
                Token::Lt => "<".into(),
                Token::Comma => ",".into(),
                Token::OpenPar => "(".into(),
                Token::ClosePar => ")".into(),
            }
        }

        /// In a value position `in`/`notin` are identifiers (`x in (in)` is valid).
        fn in_value_position(self) -> Token {
            match self {
                Token::In => Token::Ident("in".into()),
                Token::NotIn => Token::Ident("notin".into()),
                t => t,
            }
        }
    }

    fn is_special(c: u8) -> bool {
        matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
    }

    fn is_space(c: u8) -> bool {
        matches!(c, b' ' | b'\t' | b'\r' | b'\n')
    }

    fn operator(s: &[u8]) -> Option<Token> {
        Some(match s {
            b")" => Token::ClosePar,
            b"," => Token::Comma,
            b"!" => Token::Not,
            b"==" => Token::DoubleEq,
            b"=" => Token::Eq,
            b">" => Token::Gt,
            b"<" => Token::Lt,
            b"!=" => Token::NotEq,
            b"(" => Token::OpenPar,
            _ => return None,
        })
    }

    fn lex(s: &str) -> Vec<Token> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut out = Vec::new();
        loop {
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            if i == b.len() {
                out.push(Token::End);
                return out;
            }
            if is_special(b[i]) {
                // The longest run of operator characters that is still an operator.
                let start = i;
                let mut best: Option<(Token, usize)> = None;
                let mut j = i;
                while j < b.len() && is_special(b[j]) {
                    j += 1;
                    match operator(&b[start..j]) {
                        Some(t) => best = Some((t, j)),
                        None if best.is_some() => break,
                        None => {}
                    }
                }
                match best {
                    Some((t, end)) => {
                        out.push(t);
                        i = end;
                    }
                    None => {
                        out.push(Token::Error(format!(
                            "error expected: keyword found '{}'",
                            &s[start..j]
                        )));
                        i = j;
                    }
                }
            } else {
                let start = i;
                while i < b.len() && !is_special(b[i]) && !is_space(b[i]) {
                    i += 1;
                }
                out.push(match &s[start..i] {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    word => Token::Ident(word.to_string()),
                });
            }
        }
    }

    struct Parser {
        tokens: Vec<Token>,
        pos: usize,
    }

    impl Parser {
        fn peek(&self) -> Token {
            self.tokens[self.pos].clone()
        }

        fn next(&mut self) -> Token {
            let t = self.peek();
            // The last token is End and stays current.
            self.pos = (self.pos + 1).min(self.tokens.len() - 1);
            t
        }
    }

    /// `<requirement> ("," <requirement>)*`, each `[!] KEY [op values]`.
    pub(super) fn parse(s: &str) -> Result<Vec<Requirement>, String> {
        let mut p = Parser {
            tokens: lex(s),
            pos: 0,
        };
        let mut reqs = Vec::new();
        loop {
            match p.peek().in_value_position() {
                Token::Ident(_) | Token::Not => {
                    let r = requirement(&mut p)
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    reqs.push(r);
                    match p.next().in_value_position() {
                        Token::End => return Ok(reqs),
                        Token::Comma => match p.peek().in_value_position() {
                            Token::Ident(_) | Token::Not => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ));
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ));
                        }
                    }
                }
                Token::End => return Ok(reqs),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ));
                }
            }
        }
    }

    fn requirement(p: &mut Parser) -> Result<Requirement, String> {
        let mut negated = false;
        let mut t = p.next().in_value_position();
        if t == Token::Not {
            negated = true;
            t = p.next().in_value_position();
        }
        let Token::Ident(key) = t else {
            return Err(format!("found '{}', expected: identifier", t.literal()));
        };
        // The key is checked before what follows it, as apimachinery does.
        let key_errors = super::qualified_name_errors(&key);
        if !key_errors.is_empty() {
            return Err(format!("Invalid value: {key:?}: {}", key_errors.join("; ")));
        }
        if matches!(p.peek().in_value_position(), Token::End | Token::Comma) {
            let op = if negated {
                Op::DoesNotExist
            } else {
                Op::Exists
            };
            return new_requirement(key, op);
        }
        if negated {
            // `!key` takes no operator: what follows must end the requirement.
            return Err(format!(
                "found '{}', expected: ',' or 'end of string'",
                p.peek().literal()
            ));
        }
        let op = p.next();
        let op = match op {
            Token::In => Op::In(values(p)?),
            Token::NotIn => Op::NotIn(values(p)?),
            Token::Eq | Token::DoubleEq => Op::Eq(exact_value(p)?),
            Token::NotEq => Op::NotEq(exact_value(p)?),
            Token::Gt | Token::Lt => {
                let v = exact_value(p)?;
                let n: i64 = v.parse().map_err(|_| {
                    format!(
                        "Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an \
                         integer"
                    )
                })?;
                if op == Token::Gt {
                    Op::Gt(n)
                } else {
                    Op::Lt(n)
                }
            }
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ));
            }
        };
        new_requirement(key, op)
    }

    /// `( [VALUE] ("," [VALUE])* )`; empty values are allowed (`x in (a,,b)`, `x in ()`).
    fn values(p: &mut Parser) -> Result<Vec<String>, String> {
        let t = p.next().in_value_position();
        if t != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        let mut set = std::collections::BTreeSet::new();
        match p.peek().in_value_position() {
            Token::ClosePar => {
                p.next();
                set.insert(String::new());
            }
            Token::Ident(_) | Token::Comma => {
                // After "(" or ",": an identifier, or an empty value before "," or ")".
                loop {
                    match p.next().in_value_position() {
                        Token::Ident(v) => {
                            set.insert(v);
                            match p.next().in_value_position() {
                                Token::Comma => {}
                                Token::ClosePar => break,
                                t => {
                                    return Err(format!(
                                        "found '{}', expected: ',' or ')'",
                                        t.literal()
                                    ));
                                }
                            }
                        }
                        Token::Comma => {
                            set.insert(String::new());
                        }
                        Token::ClosePar => {
                            set.insert(String::new());
                            break;
                        }
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',', or identifier",
                                t.literal()
                            ));
                        }
                    }
                    // A value position follows each comma.
                    if let Token::ClosePar = p.peek().in_value_position() {
                        p.next();
                        set.insert(String::new());
                        break;
                    }
                }
            }
            t => {
                return Err(format!(
                    "found '{}', expected: ',', ')' or identifier",
                    t.literal()
                ));
            }
        }
        Ok(set.into_iter().collect())
    }

    /// One value, possibly empty (`app=` is `app` equal to "").
    fn exact_value(p: &mut Parser) -> Result<String, String> {
        match p.peek().in_value_position() {
            Token::End | Token::Comma => Ok(String::new()),
            _ => match p.next().in_value_position() {
                Token::Ident(v) => Ok(v),
                t => Err(format!("found '{}', expected: identifier", t.literal())),
            },
        }
    }
}

/// Splits a field selector on commas not escaped with a backslash.
fn split_unescaped_commas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// `key<op>value` at the first place an operator starts (`!=` before `==` before `=`).
fn split_field_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// Undoes `\\`, `\,` and `\=`; any other escape is an error.
fn unescape_field_value(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('\\' | ',' | '=')) => out.push(e),
            Some(e) => {
                return Err(format!(
                    "invalid field selector: invalid escape sequence: \\{e}"
                ));
            }
            None => return Err("invalid field selector: unterminated escape".to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_equality_and_set_terms() {
        let s = Selector::parse_labels("app=web,tier!=db,env in (a, b),!legacy,team").unwrap();
        let labels = json!({"app":"web","tier":"fe","env":"b","team":"x"});
        assert!(s.matches_labels(Some(&labels)));
        let labels = json!({"app":"web","tier":"fe","env":"c","team":"x"});
        assert!(!s.matches_labels(Some(&labels)));
        let labels = json!({"app":"web","env":"a","team":"x","legacy":"1"});
        assert!(!s.matches_labels(Some(&labels)));
    }

    #[test]
    fn apimachinery_grammar() {
        let ok = [
            "x in (foo,,baz),y,z notin ()",
            "app==web",
            "a=",
            "!a",
            "a , b",
            "example.com/tier!=db",
            "x in (in)",
            "n>5,m<3",
            "",
        ];
        for s in ok {
            Selector::parse_labels(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        }
        for (bad, says) in [
            ("!!!", "expected: identifier"),
            ("x/y/z=1", "qualified name"),
            ("a=b=c", "expected: ',' or 'end of string'"),
            ("a,,b", "identifier after ','"),
            ("a in b", "expected: '('"),
            ("a in (b", "expected: ',' or ')'"),
            ("!a=b", "expected: ',' or 'end of string'"),
            ("a=b c", "expected: ',' or 'end of string'"),
            ("a=-b", "a valid label must be"),
            ("n>x", "must be an integer"),
            ("a,", "identifier after ','"),
            ("=a", "expected: !, identifier"),
        ] {
            let e = Selector::parse_labels(bad).unwrap_err();
            assert_eq!((e.code, e.reason), (400, "BadRequest"), "{bad:?}");
            assert!(e.message.contains(says), "{bad:?}: {}", e.message);
        }
    }

    #[test]
    fn equality_needs_the_label() {
        let s = Selector::parse_labels("app==").unwrap();
        assert!(!s.matches_labels(Some(&json!({}))));
        assert!(s.matches_labels(Some(&json!({"app": ""}))));
        assert!(!s.matches_labels(Some(&json!({"app": "web"}))));
        let s = Selector::parse_labels("x in (a,,b)").unwrap();
        assert!(s.matches_labels(Some(&json!({"x": ""}))));
        assert!(!s.matches_labels(Some(&json!({}))));
        let s = Selector::parse_labels("n>5").unwrap();
        assert!(s.matches_labels(Some(&json!({"n": "6"}))));
        assert!(!s.matches_labels(Some(&json!({"n": "5"}))));
        assert!(!s.matches_labels(Some(&json!({"n": "x"}))));
    }

    #[test]
    fn no_input_panics_or_matches_everything_by_accident() {
        // Every string over a small alphabet up to length 5: parsing never panics, and a
        // selector that parses with a requirement never matches an object with no labels
        // unless the requirement is a negation.
        let alphabet = ['a', '=', '!', '(', ')', ',', ' ', 'i', 'n', '<', '/'];
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            if let Ok(sel) = Selector::parse_labels(&s) {
                let negation = s.contains('!') || s.contains("notin");
                if !sel.is_empty() && !negation {
                    assert!(!sel.matches_labels(Some(&json!({}))), "{s:?}");
                }
            }
            if s.len() < 5 {
                for c in alphabet {
                    stack.push(format!("{s}{c}"));
                }
            }
        }
    }

    #[test]
    fn field_selectors_refuse_set_syntax() {
        assert!(Selector::parse_fields("metadata.name=x").is_ok());
        let e = Selector::parse_fields("metadata.name in (x)").unwrap_err();
        assert_eq!(e.reason, "BadRequest");
        let s = Selector::parse_fields(r"a=x\,y,b!=,c==1").unwrap();
        assert!(s.matches(|k| match k {
            "a" => Some("x,y"),
            "b" => Some("z"),
            "c" => Some("1"),
            _ => None,
        }));
        assert!(Selector::parse_fields(r"a=\q").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let sel = json!({"matchLabels":{"app":"a"},"matchExpressions":[{"key":"v","operator":"NotIn","values":["1"]}]});
        let s = Selector::from_label_selector(Some(&sel)).unwrap();
        assert!(s.matches_labels(Some(&json!({"app":"a","v":"2"}))));
        assert!(!s.matches_labels(Some(&json!({"app":"a","v":"1"}))));
        assert!(
            !Selector::from_label_selector(None)
                .unwrap()
                .matches_labels(Some(&json!({})))
        );
        let bad = json!({"matchExpressions":[{"key":"v","operator":"Near"}]});
        assert!(Selector::from_label_selector(Some(&bad)).is_err());
    }
}

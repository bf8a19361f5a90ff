//! Label and field selectors, parsed from query strings (`app=web,tier!=db,env in (a,b),!x`) and
//! from `LabelSelector` objects (`matchLabels`/`matchExpressions`).

use super::errors::{ApiError, ApiResult};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
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

    /// Parses the `labelSelector` query syntax.
    pub fn parse_labels(s: &str) -> ApiResult<Self> {
        Self::parse(s, true)
    }

    /// Parses the `fieldSelector` query syntax (only `=`, `==`, `!=`).
    pub fn parse_fields(s: &str) -> ApiResult<Self> {
        Self::parse(s, false)
    }

    fn parse(s: &str, set_based: bool) -> ApiResult<Self> {
        let what = if set_based { "label" } else { "field" };
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid {what} selector term {term:?}"
                ))
            };
            let req = if let Some((k, v)) = term.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq(v.trim().into()),
                }
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if !set_based {
                return Err(bad());
            } else if let Some(rest) = term.strip_prefix('!') {
                Requirement {
                    key: rest.trim().into(),
                    op: Op::DoesNotExist,
                }
            } else if let Some((k, set)) = split_set(term, " notin ") {
                Requirement {
                    key: k,
                    op: Op::NotIn(set),
                }
            } else if let Some((k, set)) = split_set(term, " in ") {
                Requirement {
                    key: k,
                    op: Op::In(set),
                }
            } else if term.contains(['(', ')', ' ', '<', '>']) {
                return Err(bad());
            } else {
                Requirement {
                    key: term.into(),
                    op: Op::Exists,
                }
            };
            if req.key.is_empty() {
                return Err(bad());
            }
            reqs.push(req);
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
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(val.as_str().unwrap_or_default().into()),
                });
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
                reqs.push(Requirement { key, op });
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
                Op::Eq(want) => v.unwrap_or("") == want && (v.is_some() || want.is_empty()),
                Op::NotEq(want) => v != Some(want.as_str()),
                Op::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => !v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
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

/// Splits on commas that are not inside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_set(term: &str, op: &str) -> Option<(String, Vec<String>)> {
    let (k, rest) = term.split_once(op)?;
    let rest = rest.trim();
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    Some((
        k.trim().to_string(),
        inner
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    ))
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
    fn field_selectors_refuse_set_syntax() {
        assert!(Selector::parse_fields("metadata.name=x").is_ok());
        let e = Selector::parse_fields("metadata.name in (x)").unwrap_err();
        assert_eq!(e.reason, "BadRequest");
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

//! The Table columns of custom objects: `Name`, then the version's
//! `additionalPrinterColumns` (or `Age` when it declares none), with cells read by the
//! columns' JSONPath, as apiextensions-apiserver's `customresource/tableconvertor` does.
//! `date` cells are shown as ages, as that convertor renders them.

use super::registry;
use crate::resources::ResIdx;
use serde_json::{Value, json};

fn columns_of(res: ResIdx) -> Option<Vec<Value>> {
    let v = registry::version(res)?;
    if v.columns.is_empty() {
        return Some(vec![json!({
            "name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created.",
        })]);
    }
    Some(v.columns.to_vec())
}

/// The column definitions of a custom resource's Table (None for built-in kinds).
pub fn definitions(res: ResIdx) -> Option<Value> {
    let cols = columns_of(res)?;
    let mut out = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
    })];
    for c in cols {
        out.push(json!({
            "name": c.get("name").cloned().unwrap_or(json!("")),
            "type": c.get("type").cloned().unwrap_or(json!("string")),
            "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")),
            "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    Some(Value::Array(out))
}

/// The cells of one custom object's row (None for built-in kinds).
pub fn cells(res: ResIdx, v: &Value) -> Option<Vec<Value>> {
    let cols = columns_of(res)?;
    let mut out = vec![json!(crate::meta::name_of(v))];
    for c in cols {
        let path = c
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let found = json_path(v, path);
        let cell = match (c.get("type").and_then(Value::as_str), found) {
            (_, None) => Value::Null,
            (Some("date"), Some(Value::String(t))) => match crate::meta::parse_time(&t) {
                Some(ts) => json!(crate::meta::human_duration(
                    jiff::Timestamp::now().as_second() - ts.as_second()
                )),
                None => json!(t),
            },
            (_, Some(x @ (Value::Object(_) | Value::Array(_)))) => json!(x.to_string()),
            (_, Some(x)) => x,
        };
        out.push(cell);
    }
    Some(out)
}

/// The value at a printer column's JSONPath: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`.
pub fn json_path(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v.clone();
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.get(key)?.clone();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (k, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                let items = cur.as_array()?;
                cur = items
                    .iter()
                    .find(|x| {
                        x.get(k.trim()).is_some_and(|y| match y {
                            Value::String(s) => s == want,
                            other => serde_json::to_string(other).is_ok_and(|t| t == want),
                        })
                    })?
                    .clone();
            } else {
                let i: usize = inner.trim().parse().ok()?;
                cur = cur.get(i)?.clone();
            }
        } else {
            return None;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_of_printer_columns() {
        let v = json!({"spec": {"size": 3, "tags": ["a", "b"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}});
        assert_eq!(json_path(&v, ".spec.size"), Some(json!(3)));
        assert_eq!(json_path(&v, ".spec.tags[1]"), Some(json!("b")));
        assert_eq!(
            json_path(&v, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(json!("True"))
        );
        assert_eq!(json_path(&v, ".spec.missing"), None);
        let ports = json!({"ports": [{"port": 53, "name": "dns"}, {"port": 80, "name": "web"}]});
        assert_eq!(
            json_path(&ports, ".ports[?(@.port==80)].name"),
            Some(json!("web"))
        );
    }
}

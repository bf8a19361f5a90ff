//! A CRD version's structural schema applied to a custom object, in the order
//! apiextensions-apiserver applies it on a write: unknown fields pruned
//! (`apiserver/schema/pruning`), defaults filled (`apiserver/schema/defaulting`), then the value
//! validated (`apiserver/validation`, kube-openapi's validator): types, nullable, required,
//! enum, bounds, lengths, pattern, item and property counts, `x-kubernetes-int-or-string`.
//!
//! Messages follow the real server's field errors (`spec.replicas: Invalid value: "x":
//! spec.replicas in body must be of type integer: "string"`), so kubectl prints the same.

use crate::errors::FieldCause;
use serde_json::{Map, Value};

fn flag(s: &Value, k: &str) -> bool {
    s.get(k).and_then(Value::as_bool) == Some(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes the fields the schema does not know (returning their paths, `spec.foo`), as
/// pruning does: at the root `apiVersion`, `kind` and `metadata` are always kept, as they are
/// in an `x-kubernetes-embedded-resource`.
pub fn prune(schema: &Value, v: &mut Value) -> Vec<String> {
    let mut out = Vec::new();
    prune_at(schema, v, "", true, &mut out);
    out
}

fn prune_at(schema: &Value, v: &mut Value, path: &str, is_resource: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if flag(schema, "x-kubernetes-preserve-unknown-fields")
                && schema.get("properties").is_none()
                && schema.get("additionalProperties").is_none()
            {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields")
                || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let p = join(path, &k);
                if is_resource && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    // ObjectMeta is the server's own; only its schema-declared parts matter.
                    continue;
                }
                let sub = props.and_then(|ps| ps.get(&k)).or(additional);
                match sub {
                    Some(s) => {
                        let embedded = flag(s, "x-kubernetes-embedded-resource");
                        if let Some(x) = m.get_mut(&k) {
                            prune_at(s, x, &p, embedded, out);
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        out.push(p);
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter_mut().enumerate() {
                    prune_at(
                        items,
                        x,
                        &format!("{path}[{i}]"),
                        flag(items, "x-kubernetes-embedded-resource"),
                        out,
                    );
                }
            }
        }
        _ => {}
    }
}

/// Fills `default`s of absent fields (and of nulls where the field is not nullable),
/// depth first, as structural defaulting does.
pub fn default(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    let absent = match m.get(k) {
                        None => true,
                        Some(Value::Null) => !flag(s, "nullable"),
                        Some(_) => false,
                    };
                    if absent && let Some(d) = s.get("default") {
                        m.insert(k.clone(), d.clone());
                    }
                }
                for (k, s) in props {
                    if let Some(x) = m.get_mut(k) {
                        default(s, x);
                    }
                }
            } else if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for x in m.values_mut() {
                    default(add, x);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for x in a {
                    default(items, x);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type name of a value as the validator reports it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a value is shown in `Invalid value: …` (Go's `%#v`-like form kubectl prints).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn invalid(path: &str, v: &Value, why: String) -> FieldCause {
    FieldCause {
        reason: "FieldValueInvalid",
        field: path.to_string(),
        message: format!("Invalid value: {}: {why}", shown(v)),
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Checks `v` against `schema`; `path` is the field path of `v` (`""` at the root).
pub fn validate(schema: &Value, v: &Value, path: &str, causes: &mut Vec<FieldCause>) {
    let at = if path.is_empty() { "<root>" } else { path };
    if v.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            let ty = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            causes.push(invalid(
                path,
                v,
                format!("{at} in body must be of type {ty}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    if int_or_string {
        if !matches!(type_name(v), "integer" | "string") {
            causes.push(invalid(
                path,
                v,
                format!(
                    "{at} in body must be of type integer,string: \"{}\"",
                    type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == ty || (ty == "number" && actual == "integer");
        if !ok {
            causes.push(invalid(
                path,
                v,
                format!("{at} in body must be of type {ty}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        let list: Vec<String> = values.iter().map(shown).collect();
        causes.push(FieldCause {
            reason: "FieldValueNotSupported",
            field: path.to_string(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                list.join(", ")
            ),
        });
    }
    match v {
        Value::Number(_) => {
            let x = number(v).unwrap_or_default();
            let excl = |k: &str| flag(schema, k);
            if let Some(max) = schema.get("maximum").and_then(number) {
                if excl("exclusiveMaximum") && x >= max {
                    causes.push(invalid(
                        path,
                        v,
                        format!("{at} in body should be less than {max}"),
                    ));
                } else if x > max {
                    causes.push(invalid(
                        path,
                        v,
                        format!("{at} in body should be less than or equal to {max}"),
                    ));
                }
            }
            if let Some(min) = schema.get("minimum").and_then(number) {
                if excl("exclusiveMinimum") && x <= min {
                    causes.push(invalid(
                        path,
                        v,
                        format!("{at} in body should be greater than {min}"),
                    ));
                } else if x < min {
                    causes.push(invalid(
                        path,
                        v,
                        format!("{at} in body should be greater than or equal to {min}"),
                    ));
                }
            }
            if let Some(m) = schema.get("multipleOf").and_then(number)
                && m > 0.0
                && (x / m).fract() != 0.0
            {
                causes.push(invalid(
                    path,
                    v,
                    format!("{at} in body should be a multiple of {m}"),
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                causes.push(FieldCause {
                    reason: "FieldValueTooLong",
                    field: path.to_string(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                causes.push(invalid(
                    path,
                    v,
                    format!("{at} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        causes.push(invalid(path, v, format!("{at} in body should match '{p}'")));
                    }
                    Ok(_) => {}
                    Err(e) => causes.push(invalid(
                        path,
                        v,
                        format!("the schema's pattern {p:?} does not compile: {e}"),
                    )),
                }
            }
        }
        Value::Array(a) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && a.len() as u64 > max
            {
                causes.push(FieldCause {
                    reason: "FieldValueTooMany",
                    field: path.to_string(),
                    message: format!("Too many: {}: must have at most {max} items", a.len()),
                });
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (a.len() as u64) < min
            {
                causes.push(invalid(
                    path,
                    v,
                    format!("{at} in body should have at least {min} items"),
                ));
            }
            let set = flag(schema, "uniqueItems")
                || schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set");
            if set {
                for (i, x) in a.iter().enumerate() {
                    if a[..i].contains(x) {
                        causes.push(FieldCause {
                            reason: "FieldValueDuplicate",
                            field: format!("{path}[{i}]"),
                            message: format!("Duplicate value: {}", shown(x)),
                        });
                    }
                }
            }
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    validate(items, x, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(m) => validate_object(schema, m, path, at, causes),
        _ => {}
    }
    for (k, each) in [("allOf", true), ("anyOf", false), ("oneOf", false)] {
        let Some(list) = schema.get(k).and_then(Value::as_array) else {
            continue;
        };
        let results: Vec<Vec<FieldCause>> = list
            .iter()
            .map(|s| {
                let mut c = Vec::new();
                validate(s, v, path, &mut c);
                c
            })
            .collect();
        let passing = results.iter().filter(|c| c.is_empty()).count();
        if each {
            causes.extend(results.into_iter().flatten());
        } else if k == "anyOf" && passing == 0 {
            causes.push(invalid(
                path,
                v,
                format!("{at} in body must match at least one schema in anyOf"),
            ));
        } else if k == "oneOf" && passing != 1 {
            causes.push(invalid(
                path,
                v,
                format!("{at} in body must match exactly one schema in oneOf"),
            ));
        }
    }
    if let Some(not) = schema.get("not") {
        let mut c = Vec::new();
        validate(not, v, path, &mut c);
        if c.is_empty() {
            causes.push(invalid(
                path,
                v,
                format!("{at} in body must not validate the schema (not)"),
            ));
        }
    }
}

fn validate_object(
    schema: &Value,
    m: &Map<String, Value>,
    path: &str,
    at: &str,
    causes: &mut Vec<FieldCause>,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(k) = r.as_str()
            && m.get(k).is_none_or(Value::is_null)
        {
            causes.push(FieldCause {
                reason: "FieldValueRequired",
                field: join(path, k),
                message: "Required value".into(),
            });
        }
    }
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && m.len() as u64 > max
    {
        causes.push(FieldCause {
            reason: "FieldValueTooMany",
            field: path.to_string(),
            message: format!("Too many: {}: must have at most {max} items", m.len()),
        });
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && (m.len() as u64) < min
    {
        causes.push(invalid(
            path,
            &Value::Object(m.clone()),
            format!("{at} in body should have at least {min} properties"),
        ));
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let is_root = path.is_empty();
    for (k, x) in m {
        // The server validates ObjectMeta itself; type and version were checked against the URL.
        if is_root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
            validate(s, x, &join(path, k), causes);
        }
    }
}

/// Checks that a CRD version's schema is structural enough to serve: an object at the root
/// and a `type` on every node that does not preserve unknown fields or allow int-or-string.
/// Violations are reported at `path` (`spec.versions[0].schema.openAPIV3Schema`).
pub fn check_structural(schema: &Value, path: &str, root: bool, causes: &mut Vec<FieldCause>) {
    let ty = schema.get("type").and_then(Value::as_str);
    if root && ty != Some("object") {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: join(path, "type"),
            message: format!(
                "Invalid value: {:?}: must be object at the root",
                ty.unwrap_or_default()
            ),
        });
    }
    if ty.is_none()
        && !flag(schema, "x-kubernetes-preserve-unknown-fields")
        && !flag(schema, "x-kubernetes-int-or-string")
    {
        causes.push(FieldCause {
            reason: "FieldValueRequired",
            field: join(path, "type"),
            message: "Required value: must not be empty for specified object fields".into(),
        });
    }
    if let Some(ps) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in ps {
            check_structural(s, &format!("{path}.properties[{k}]"), false, causes);
        }
    }
    if let Some(items) = schema.get("items") {
        check_structural(items, &format!("{path}.items"), false, causes);
    }
    if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(add, &format!("{path}.additionalProperties"), false, causes);
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(p)
    {
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: join(path, "pattern"),
            message: format!(
                "Invalid value: {p:?}: must be a valid regular expression, but isn't: {e}"
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "port": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        }})
    }

    #[test]
    fn unknown_fields_are_pruned_where_the_schema_does_not_preserve_them() {
        let mut v = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"size": 1, "bogus": 1, "free": {"any": {"thing": 1}}, "labels": {"a": "b"},
                     "tags": ["x"]},
            "extra": true});
        let gone = prune(&schema(), &mut v);
        assert_eq!(gone, ["extra", "spec.bogus"]);
        assert_eq!(v["spec"]["free"], json!({"any": {"thing": 1}}));
        assert_eq!(v["spec"]["labels"], json!({"a": "b"}));
        assert_eq!(v["metadata"], json!({"name": "a"}));
    }

    #[test]
    fn defaults_fill_absent_fields_only() {
        let mut v = json!({"spec": {"size": 2}});
        default(&schema(), &mut v);
        assert_eq!(v["spec"]["color"], "red");
        let mut v = json!({"spec": {"size": 2, "color": "blue"}});
        default(&schema(), &mut v);
        assert_eq!(v["spec"]["color"], "blue");
    }

    #[test]
    fn validation_names_each_field_as_the_real_server_does() {
        let v = json!({"spec": {"size": "three", "color": "pink", "name": "ABCDEFG",
            "tags": ["a", "b", "c"], "port": 1.5}});
        let mut c = Vec::new();
        validate(&schema(), &v, "", &mut c);
        let got: Vec<String> = c
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            got,
            [
                "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\"",
                "spec.name: Too long: may not be more than 5 bytes",
                "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
                "spec.port: Invalid value: 1.5: spec.port in body must be of type integer,string: \"number\"",
                "spec.size: Invalid value: \"three\": spec.size in body must be of type integer: \"string\"",
                "spec.tags: Too many: 3: must have at most 2 items",
            ]
        );
        let mut c = Vec::new();
        validate(&schema(), &json!({"spec": {"size": 11}}), "", &mut c);
        assert_eq!(
            c[0].message,
            "Invalid value: 11: spec.size in body should be less than or equal to 10"
        );
        let mut c = Vec::new();
        validate(&schema(), &json!({"spec": {}}), "", &mut c);
        assert_eq!(
            (c[0].field.as_str(), c[0].message.as_str()),
            ("spec.size", "Required value")
        );
        let mut c = Vec::new();
        validate(
            &schema(),
            &json!({"spec": {"size": 3, "port": "http"}}),
            "",
            &mut c,
        );
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn structural_check_wants_types() {
        let mut c = Vec::new();
        check_structural(
            &json!({"type": "object", "properties": {"a": {}}}),
            "s",
            true,
            &mut c,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "s.properties[a].type");
        let mut c = Vec::new();
        check_structural(&json!({"type": "string"}), "s", true, &mut c);
        assert_eq!(c[0].field, "s.type");
    }
}

//! `fieldValidation=Strict` (what kubectl sends by default): the object must decode as its
//! Kubernetes type and carry no field the type does not have, else 400 BadRequest with the
//! real server's wording (`strict decoding error: unknown field "spec.foo"`).
//!
//! The check decodes into the k8s-openapi type and compares the result with what was sent:
//! a field that did not survive the round trip is unknown. Objects are still stored as sent.

use crate::errors::{ApiError, ApiResult};
use crate::resources::{self, ResIdx};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Field paths present in `sent` but not in `kept`, as `spec.containers[0].imagee`.
fn unknown_fields(sent: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, sv) in s {
                let p = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(sv, kv, &p, out),
                    // Nulls are dropped by the typed form without meaning anything.
                    None if sv.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, (sv, kv)) in s.iter().zip(k.iter()).enumerate() {
                unknown_fields(sv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Checks `v` strictly as the resource's type.
pub fn check(res: ResIdx, v: &Value) -> ApiResult<()> {
    let r = resources::get(res);
    struct RoundTrip<'a>(&'a Value);
    impl crate::typed::Visit for RoundTrip<'_> {
        type Out = Result<Value, String>;
        fn visit<T: DeserializeOwned + Serialize + k8s_openapi::schemars::JsonSchema>(
            self,
        ) -> Self::Out {
            round_trip::<T>(self.0)
        }
    }
    let kept = match crate::typed::with_type(r, RoundTrip(v)) {
        Some(kept) => kept,
        // A custom object: what its schema would prune is unknown.
        None if res >= resources::RESOURCES.len() => {
            return report(r, crate::crd::unknown_fields(res, v));
        }
        None => return Ok(()),
    };
    let kept = kept.map_err(|e| ApiError::bad_request(format!("{}: {e}", prefix(r))))?;
    let mut unknown = Vec::new();
    unknown_fields(v, &kept, "", &mut unknown);
    report(r, unknown)
}

fn prefix(r: &resources::Resource) -> String {
    format!(
        "{} in version \"{}\" cannot be handled as a {}",
        r.kind, r.version, r.kind
    )
}

/// The strict decoding error naming every unknown field, if any.
fn report(r: &resources::Resource, unknown: Vec<String>) -> ApiResult<()> {
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "{}: strict decoding error: {}",
        prefix(r),
        list.join(", ")
    )))
}

/// Whether the request asked for strict validation.
pub fn wanted(query: &std::collections::HashMap<String, String>) -> bool {
    query.get("fieldValidation").map(String::as_str) == Some("Strict")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::idx;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}},
            "spec":{"containers":[{"name":"c","imagee":"x"}],"bogus":1,"nodeName":null}});
        let e = check(idx::pods(), &pod).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.bogus\", unknown field \"spec.containers[0].imagee\""
        );
        let ok =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}});
        assert!(check(idx::configmaps(), &ok).is_ok());
        let wrong_type = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":"three"}});
        let e = check(idx::deployments(), &wrong_type).unwrap_err();
        assert!(
            e.message
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: "),
            "{}",
            e.message
        );
    }
}

//! Secrets as kube-apiserver stores them: `stringData` merged into `data` on every write and
//! dropped (the v1 to internal conversion, `Convert_v1_Secret_To_core_Secret`), `data` values
//! base64 as JSON carries bytes, `type` defaulted to `Opaque`, and the checks of
//! `ValidateSecret`/`ValidateSecretUpdate` in `pkg/apis/core/validation`: keys, the 1 MiB
//! total, the keys each well-known type requires, and immutability.

use crate::admission::MAX_DATA_BYTES;
use crate::errors::{ApiError, ApiResult, FieldCause, invalid_value, required};
use crate::validation::config_key_errors;
use base64::Engine;
use serde_json::{Map, Value, json};

/// The well-known types and the data keys each requires (`pkg/apis/core/types.go`).
const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";
const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const DOCKERCFG: &str = "kubernetes.io/dockercfg";
const DOCKERCFG_KEY: &str = ".dockercfg";
const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const BASIC_AUTH: &str = "kubernetes.io/basic-auth";
const SSH_AUTH: &str = "kubernetes.io/ssh-auth";
const SSH_PRIVATE_KEY: &str = "ssh-privatekey";
const TLS: &str = "kubernetes.io/tls";

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// Merges `stringData` into `data` (a key in both takes the `stringData` value), drops
/// `stringData`, defaults `type`, and checks that every `data` value is base64. A value that
/// is not is a 400, as the real server's decoder refuses it before validation.
pub fn normalize(obj: &mut Value) -> ApiResult<()> {
    let Some(m) = obj.as_object_mut() else {
        return Ok(());
    };
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: {why}"
        ))
    };
    if let Some(sd) = m.remove("stringData").filter(|v| !v.is_null()) {
        let Value::Object(sd) = sd else {
            return Err(cannot("stringData must be a map of strings".into()));
        };
        let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if data.is_null() {
            *data = Value::Object(Map::new());
        }
        let Some(data) = data.as_object_mut() else {
            return Err(cannot("data must be a map of base64 strings".into()));
        };
        for (k, v) in sd {
            let Some(s) = v.as_str() else {
                return Err(cannot(format!("stringData[{k}] must be a string")));
            };
            data.insert(k, json!(b64().encode(s)));
        }
    }
    if let Some(data) = m.get("data").filter(|v| !v.is_null()) {
        let Some(data) = data.as_object() else {
            return Err(cannot("data must be a map of base64 strings".into()));
        };
        for (k, v) in data {
            let decoded = v.as_str().map(|s| b64().decode(s));
            match decoded {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(cannot(format!("data[{k}]: illegal base64 data: {e}"))),
                None => return Err(cannot(format!("data[{k}] must be a base64 string"))),
            }
        }
    }
    if m.get("type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert("type".into(), json!("Opaque"));
    }
    Ok(())
}

/// The decoded `data` (after [`normalize`], which guarantees base64 strings).
fn data_of(obj: &Value) -> Vec<(String, Vec<u8>)> {
    obj.get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = v
                        .as_str()
                        .and_then(|s| b64().decode(s).ok())
                        .unwrap_or_default();
                    (k.clone(), bytes)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateSecret` (and `ValidateSecretUpdate` when `old` is given).
pub fn validate(obj: &Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    let data = data_of(obj);
    let mut total = 0usize;
    for (k, v) in &data {
        for why in config_key_errors(k) {
            causes.push(invalid_value(format!("data[{k}]"), k, &why));
        }
        total += v.len();
    }
    if total > MAX_DATA_BYTES {
        causes.push(data_too_long("data"));
    }
    let has = |key: &str| data.iter().any(|(k, _)| k == key);
    let value = |key: &str| {
        data.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    };
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let json_key = |key: &str, causes: &mut Vec<FieldCause>| match value(key) {
        None | Some([]) => causes.push(required(format!("data[{key}]"))),
        Some(bytes) => {
            if let Err(e) = serde_json::from_slice::<Value>(bytes) {
                causes.push(invalid_value(
                    format!("data[{key}]"),
                    "<secret contents redacted>",
                    &e.to_string(),
                ));
            }
        }
    };
    match ty {
        SERVICE_ACCOUNT_TOKEN => {
            let named = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(SERVICE_ACCOUNT_NAME_ANNOTATION))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !named {
                causes.push(required(format!(
                    "metadata.annotations[{SERVICE_ACCOUNT_NAME_ANNOTATION}]"
                )));
            }
        }
        DOCKERCFG => json_key(DOCKERCFG_KEY, causes),
        DOCKER_CONFIG_JSON => json_key(DOCKER_CONFIG_JSON_KEY, causes),
        // Either may be empty, but one of the two must be there.
        BASIC_AUTH if !has("username") && !has("password") => {
            causes.push(required("data[username]"));
            causes.push(required("data[password]"));
        }
        SSH_AUTH if value(SSH_PRIVATE_KEY).is_none_or(<[u8]>::is_empty) => {
            causes.push(required(format!("data[{SSH_PRIVATE_KEY}]")));
        }
        TLS => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    causes.push(required(format!("data[{key}]")));
                }
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_ty = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if ty != old_ty {
            causes.push(invalid_value("type", ty, "field is immutable"));
        }
        immutable_data(obj, old, &["data"], causes);
    }
}

/// The `data` size cause (`field.TooLong` on a map of bytes).
pub fn data_too_long(field: &str) -> FieldCause {
    FieldCause {
        reason: "FieldValueTooLong",
        field: field.into(),
        message: format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
    }
}

/// ConfigMaps and Secrets marked `immutable: true`: the mark cannot be taken back and the
/// data fields cannot change (`ValidateConfigMapUpdate`, `ValidateSecretUpdate`).
pub fn immutable_data(obj: &Value, old: &Value, fields: &[&str], causes: &mut Vec<FieldCause>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    let forbidden = |field: &str| FieldCause {
        reason: "FieldValueForbidden",
        field: field.into(),
        message: "Forbidden: field is immutable when `immutable` is set".into(),
    };
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        causes.push(forbidden("immutable"));
    }
    for f in fields {
        let empty = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v == &json!({}));
        let (n, o) = (obj.get(*f), old.get(*f));
        if n != o && !(empty(n) && empty(o)) {
            causes.push(forbidden(f));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(v: Value) -> Value {
        let mut v = v;
        normalize(&mut v).unwrap();
        v
    }

    fn fields(obj: &Value, old: Option<&Value>) -> Vec<String> {
        let mut c = Vec::new();
        validate(obj, old, &mut c);
        c.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn string_data_is_merged_as_base64_and_dropped_and_type_defaults() {
        let s = secret(json!({"metadata": {"name": "s"},
            "data": {"a": "eA==", "b": "eQ=="}, "stringData": {"b": "over", "c": "new"}}));
        assert_eq!(
            s,
            json!({"metadata": {"name": "s"}, "type": "Opaque",
                   "data": {"a": "eA==", "b": "b3Zlcg==", "c": "bmV3"}})
        );
        let mut bad = json!({"data": {"k": "not base64!"}});
        let e = normalize(&mut bad).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("data[k]"), "{}", e.message);
    }

    #[test]
    fn typed_secrets_need_their_keys() {
        let tls = secret(json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}));
        assert_eq!(fields(&tls, None), vec!["data[tls.key]: Required value"]);
        let dcj = secret(json!({"type": "kubernetes.io/dockerconfigjson",
                                "stringData": {".dockerconfigjson": "{not json"}}));
        let f = fields(&dcj, None);
        assert!(
            f[0].starts_with(
                "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\""
            ),
            "{f:?}"
        );
        let sat = secret(json!({"type": "kubernetes.io/service-account-token"}));
        assert_eq!(
            fields(&sat, None),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
        let basic =
            secret(json!({"type": "kubernetes.io/basic-auth", "stringData": {"password": ""}}));
        assert!(fields(&basic, None).is_empty());
        let basic = secret(json!({"type": "kubernetes.io/basic-auth"}));
        assert_eq!(fields(&basic, None).len(), 2);
        let bad_key = secret(json!({"stringData": {"a/b": "x"}}));
        assert!(fields(&bad_key, None)[0].starts_with("data[a/b]: Invalid value"));
    }

    #[test]
    fn size_limit_counts_decoded_bytes() {
        let at_limit = "x".repeat(MAX_DATA_BYTES);
        let ok = secret(json!({"stringData": {"k": at_limit}}));
        assert!(fields(&ok, None).is_empty());
        let over = secret(json!({"stringData": {"k": at_limit, "j": "y"}}));
        assert_eq!(
            fields(&over, None),
            vec![format!(
                "data: Too long: must have at most {MAX_DATA_BYTES} bytes"
            )]
        );
    }

    #[test]
    fn immutable_secrets_keep_their_data_and_type() {
        let old = secret(json!({"immutable": true, "stringData": {"k": "v"}}));
        assert!(fields(&old, Some(&old)).is_empty());
        let changed = secret(json!({"immutable": true, "stringData": {"k": "w"}}));
        assert_eq!(
            fields(&changed, Some(&old)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let unmarked = secret(json!({"stringData": {"k": "v"}}));
        assert_eq!(
            fields(&unmarked, Some(&old)),
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let retyped =
            secret(json!({"type": "kubernetes.io/basic-auth", "stringData": {"username": "v"}}));
        let plain = secret(json!({"stringData": {"username": "v"}}));
        assert_eq!(
            fields(&retyped, Some(&plain)),
            vec!["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]
        );
    }
}

//! Decoding of the Kubernetes protobuf envelope (`k8s\0` + `runtime.Unknown`) for the few
//! kinds kubectl's `create namespace|configmap|service|deployment|job|cronjob`, `create token` and
//! `auth whoami|can-i` send that way. Other kinds get a 415
//! that names the accepted formats.

use crate::errors::{ApiError, ApiResult};
use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// One decoded protobuf field.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn bad(what: &str) -> ApiError {
    ApiError::bad_request(format!("invalid protobuf body: {what}"))
}

fn varint(buf: &[u8], pos: &mut usize) -> ApiResult<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("varint too long"))
}

fn fields(buf: &[u8]) -> ApiResult<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return Err(bad("unsupported wire type")),
        }
    }
    Ok(out)
}

fn string(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8"))
}

fn map_entry(b: &[u8]) -> ApiResult<(String, String)> {
    let mut k = String::new();
    let mut v = String::new();
    for (n, f) in fields(b)? {
        if let Field::Bytes(x) = f {
            match n {
                1 => k = string(x)?,
                2 => v = string(x)?,
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn object_meta(b: &[u8]) -> ApiResult<Value> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => {
                m.insert("name".into(), json!(string(x)?));
            }
            2 => {
                m.insert("generateName".into(), json!(string(x)?));
            }
            3 => {
                m.insert("namespace".into(), json!(string(x)?));
            }
            11 => {
                let (k, v) = map_entry(x)?;
                labels.insert(k, json!(v));
            }
            12 => {
                let (k, v) = map_entry(x)?;
                annotations.insert(k, json!(v));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(m))
}

fn service_port(b: &[u8]) -> ApiResult<Value> {
    let mut p = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                p.insert("name".into(), json!(string(x)?));
            }
            (2, Field::Bytes(x)) => {
                p.insert("protocol".into(), json!(string(x)?));
            }
            (3, Field::Varint(v)) => {
                p.insert("port".into(), json!(v));
            }
            (4, Field::Bytes(x)) => {
                // IntOrString: 1 type (0 int, 1 string), 2 intVal, 3 strVal.
                let mut ty = 0;
                let mut iv = 0;
                let mut sv = String::new();
                for (n2, f2) in fields(x)? {
                    match (n2, f2) {
                        (1, Field::Varint(t)) => ty = t,
                        (2, Field::Varint(i)) => iv = i,
                        (3, Field::Bytes(s)) => sv = string(s)?,
                        _ => {}
                    }
                }
                p.insert(
                    "targetPort".into(),
                    if ty == 1 { json!(sv) } else { json!(iv) },
                );
            }
            (5, Field::Varint(v)) => {
                p.insert("nodePort".into(), json!(v));
            }
            _ => {}
        }
    }
    Ok(Value::Object(p))
}

fn service_spec(b: &[u8]) -> ApiResult<Value> {
    let mut s = Map::new();
    let mut ports = Vec::new();
    let mut selector = Map::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => ports.push(service_port(x)?),
            2 => {
                let (k, v) = map_entry(x)?;
                selector.insert(k, json!(v));
            }
            3 => {
                s.insert("clusterIP".into(), json!(string(x)?));
            }
            4 => {
                s.insert("type".into(), json!(string(x)?));
            }
            10 => {
                s.insert("externalName".into(), json!(string(x)?));
            }
            _ => {}
        }
    }
    if !ports.is_empty() {
        s.insert("ports".into(), Value::Array(ports));
    }
    if !selector.is_empty() {
        s.insert("selector".into(), Value::Object(selector));
    }
    Ok(Value::Object(s))
}

fn strings_into(m: &mut Map<String, Value>, key: &str, x: &[u8]) -> ApiResult<()> {
    let v = m.entry(key).or_insert(json!([]));
    if let Some(a) = v.as_array_mut() {
        a.push(json!(string(x)?));
    }
    Ok(())
}

fn container(b: &[u8]) -> ApiResult<Value> {
    let mut c = Map::new();
    let mut ports = Vec::new();
    let mut env = Vec::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => {
                c.insert("name".into(), json!(string(x)?));
            }
            2 => {
                c.insert("image".into(), json!(string(x)?));
            }
            3 => strings_into(&mut c, "command", x)?,
            4 => strings_into(&mut c, "args", x)?,
            5 => {
                c.insert("workingDir".into(), json!(string(x)?));
            }
            6 => {
                let mut p = Map::new();
                for (n2, f2) in fields(x)? {
                    match (n2, f2) {
                        (1, Field::Bytes(y)) => {
                            p.insert("name".into(), json!(string(y)?));
                        }
                        (2, Field::Varint(v)) => {
                            p.insert("hostPort".into(), json!(v));
                        }
                        (3, Field::Varint(v)) => {
                            p.insert("containerPort".into(), json!(v));
                        }
                        (4, Field::Bytes(y)) => {
                            p.insert("protocol".into(), json!(string(y)?));
                        }
                        _ => {}
                    }
                }
                ports.push(Value::Object(p));
            }
            7 => {
                let (k, v) = map_entry(x)?;
                env.push(json!({"name": k, "value": v}));
            }
            _ => {}
        }
    }
    if !ports.is_empty() {
        c.insert("ports".into(), Value::Array(ports));
    }
    if !env.is_empty() {
        c.insert("env".into(), Value::Array(env));
    }
    Ok(Value::Object(c))
}

fn pod_spec(b: &[u8]) -> ApiResult<Value> {
    let mut s = Map::new();
    let mut containers = Vec::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            2 => containers.push(container(x)?),
            3 => {
                s.insert("restartPolicy".into(), json!(string(x)?));
            }
            6 => {
                s.insert("dnsPolicy".into(), json!(string(x)?));
            }
            _ => {}
        }
    }
    s.insert("containers".into(), Value::Array(containers));
    Ok(Value::Object(s))
}

fn label_selector(b: &[u8]) -> ApiResult<Value> {
    let mut labels = Map::new();
    let mut exprs = Vec::new();
    for (n, f) in fields(b)? {
        let Field::Bytes(x) = f else { continue };
        match n {
            1 => {
                let (k, v) = map_entry(x)?;
                labels.insert(k, json!(v));
            }
            2 => {
                let mut e = Map::new();
                for (n2, f2) in fields(x)? {
                    if let Field::Bytes(y) = f2 {
                        match n2 {
                            1 => {
                                e.insert("key".into(), json!(string(y)?));
                            }
                            2 => {
                                e.insert("operator".into(), json!(string(y)?));
                            }
                            3 => strings_into(&mut e, "values", y)?,
                            _ => {}
                        }
                    }
                }
                exprs.push(Value::Object(e));
            }
            _ => {}
        }
    }
    let mut sel = Map::new();
    if !labels.is_empty() {
        sel.insert("matchLabels".into(), Value::Object(labels));
    }
    if !exprs.is_empty() {
        sel.insert("matchExpressions".into(), Value::Array(exprs));
    }
    Ok(Value::Object(sel))
}

fn deployment_spec(b: &[u8]) -> ApiResult<Value> {
    let mut s = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Varint(v)) => {
                s.insert("replicas".into(), json!(v));
            }
            (2, Field::Bytes(x)) => {
                s.insert("selector".into(), label_selector(x)?);
            }
            (3, Field::Bytes(x)) => {
                let mut t = Map::new();
                for (n2, f2) in fields(x)? {
                    match (n2, f2) {
                        (1, Field::Bytes(y)) => {
                            t.insert("metadata".into(), object_meta(y)?);
                        }
                        (2, Field::Bytes(y)) => {
                            t.insert("spec".into(), pod_spec(y)?);
                        }
                        _ => {}
                    }
                }
                s.insert("template".into(), Value::Object(t));
            }
            (4, Field::Bytes(x)) => {
                for (n2, f2) in fields(x)? {
                    if let (1, Field::Bytes(y)) = (n2, f2) {
                        s.insert("strategy".into(), json!({"type": string(y)?}));
                    }
                }
            }
            (5, Field::Varint(v)) => {
                s.insert("minReadySeconds".into(), json!(v));
            }
            (6, Field::Varint(v)) => {
                s.insert("revisionHistoryLimit".into(), json!(v));
            }
            (9, Field::Varint(v)) => {
                s.insert("progressDeadlineSeconds".into(), json!(v));
            }
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

// --- batch/v1 (`kubectl create job|cronjob`) ---

/// A `PodTemplateSpec`: metadata = 1, spec = 2.
fn pod_template(b: &[u8]) -> ApiResult<Value> {
    let mut t = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(y)) => {
                t.insert("metadata".into(), object_meta(y)?);
            }
            (2, Field::Bytes(y)) => {
                t.insert("spec".into(), pod_spec(y)?);
            }
            _ => {}
        }
    }
    Ok(Value::Object(t))
}

/// A `JobSpec` (batch/v1 `generated.proto` field numbers).
fn job_spec(b: &[u8]) -> ApiResult<Value> {
    let mut s = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Varint(v)) => {
                s.insert("parallelism".into(), json!(v));
            }
            (2, Field::Varint(v)) => {
                s.insert("completions".into(), json!(v));
            }
            (3, Field::Varint(v)) => {
                s.insert("activeDeadlineSeconds".into(), json!(v));
            }
            (4, Field::Bytes(x)) => {
                s.insert("selector".into(), label_selector(x)?);
            }
            (5, Field::Varint(v)) => {
                s.insert("manualSelector".into(), json!(v != 0));
            }
            (6, Field::Bytes(x)) => {
                s.insert("template".into(), pod_template(x)?);
            }
            (7, Field::Varint(v)) => {
                s.insert("backoffLimit".into(), json!(v));
            }
            (8, Field::Varint(v)) => {
                s.insert("ttlSecondsAfterFinished".into(), json!(v));
            }
            (9, Field::Bytes(x)) => {
                s.insert("completionMode".into(), json!(string(x)?));
            }
            (10, Field::Varint(v)) => {
                s.insert("suspend".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

/// A `CronJobSpec`.
fn cronjob_spec(b: &[u8]) -> ApiResult<Value> {
    let mut s = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                s.insert("schedule".into(), json!(string(x)?));
            }
            (2, Field::Varint(v)) => {
                s.insert("startingDeadlineSeconds".into(), json!(v));
            }
            (3, Field::Bytes(x)) => {
                s.insert("concurrencyPolicy".into(), json!(string(x)?));
            }
            (4, Field::Varint(v)) => {
                s.insert("suspend".into(), json!(v != 0));
            }
            (5, Field::Bytes(x)) => {
                // JobTemplateSpec: metadata = 1, spec = 2.
                let mut t = Map::new();
                for (n2, f2) in fields(x)? {
                    match (n2, f2) {
                        (1, Field::Bytes(y)) => {
                            t.insert("metadata".into(), object_meta(y)?);
                        }
                        (2, Field::Bytes(y)) => {
                            t.insert("spec".into(), job_spec(y)?);
                        }
                        _ => {}
                    }
                }
                s.insert("jobTemplate".into(), Value::Object(t));
            }
            (6, Field::Varint(v)) => {
                s.insert("successfulJobsHistoryLimit".into(), json!(v));
            }
            (7, Field::Varint(v)) => {
                s.insert("failedJobsHistoryLimit".into(), json!(v));
            }
            (8, Field::Bytes(x)) => {
                s.insert("timeZone".into(), json!(string(x)?));
            }
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

/// Strings of a message's fields, by field number: (number, JSON name).
fn string_fields(buf: &[u8], names: &[(u64, &str)]) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    for (n, f) in fields(buf)? {
        if let (Some((_, name)), Field::Bytes(x)) = (names.iter().find(|(k, _)| *k == n), f) {
            m.insert((*name).into(), json!(string(x)?));
        }
    }
    Ok(m)
}

/// authorization/v1 `ResourceAttributes` (fields 1-7) or `NonResourceAttributes`.
fn resource_attributes(b: &[u8]) -> ApiResult<Value> {
    Ok(Value::Object(string_fields(
        b,
        &[
            (1, "namespace"),
            (2, "verb"),
            (3, "group"),
            (4, "version"),
            (5, "resource"),
            (6, "subresource"),
            (7, "name"),
        ],
    )?))
}

/// The spec of a SelfSubjectAccessReview or SubjectAccessReview (which adds user, groups,
/// uid).
fn access_review_spec(b: &[u8]) -> ApiResult<Value> {
    let mut spec = Map::new();
    let mut groups = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                spec.insert("resourceAttributes".into(), resource_attributes(x)?);
            }
            (2, Field::Bytes(x)) => {
                let na = string_fields(x, &[(1, "path"), (2, "verb")])?;
                spec.insert("nonResourceAttributes".into(), Value::Object(na));
            }
            (3, Field::Bytes(x)) => {
                spec.insert("user".into(), json!(string(x)?));
            }
            (4, Field::Bytes(x)) => groups.push(json!(string(x)?)),
            (6, Field::Bytes(x)) => {
                spec.insert("uid".into(), json!(string(x)?));
            }
            _ => {}
        }
    }
    if !groups.is_empty() {
        spec.insert("groups".into(), Value::Array(groups));
    }
    Ok(Value::Object(spec))
}

/// authentication/v1 `TokenRequestSpec`.
fn token_request_spec(b: &[u8]) -> ApiResult<Value> {
    let mut spec = Map::new();
    let mut audiences = Vec::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(x)) => audiences.push(json!(string(x)?)),
            (3, Field::Bytes(x)) => {
                let r = string_fields(
                    x,
                    &[(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")],
                )?;
                spec.insert("boundObjectRef".into(), Value::Object(r));
            }
            (4, Field::Varint(v)) => {
                spec.insert("expirationSeconds".into(), json!(v));
            }
            _ => {}
        }
    }
    spec.insert("audiences".into(), Value::Array(audiences));
    Ok(Value::Object(spec))
}

/// Repeated strings of a message, by field number: (number, JSON name).
fn string_lists(buf: &[u8], names: &[(u64, &str)]) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    for (n, f) in fields(buf)? {
        if let (Some((_, name)), Field::Bytes(x)) = (names.iter().find(|(k, _)| *k == n), f) {
            let list = m.entry(*name).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!(string(x)?));
            }
        }
    }
    Ok(m)
}

/// rbac/v1 `PolicyRule`.
fn policy_rule(b: &[u8]) -> ApiResult<Value> {
    Ok(Value::Object(string_lists(
        b,
        &[
            (1, "verbs"),
            (2, "apiGroups"),
            (3, "resources"),
            (4, "resourceNames"),
            (5, "nonResourceURLs"),
        ],
    )?))
}

/// The fields of a Role/ClusterRole (rules = 2) or a RoleBinding/ClusterRoleBinding
/// (subjects = 2, roleRef = 3), after the metadata.
fn rbac_object(obj: &mut Map<String, Value>, raw: &[u8], binding: bool) -> ApiResult<()> {
    let mut list = Vec::new();
    for (n, f) in fields(raw)? {
        match (n, f) {
            (1, Field::Bytes(x)) => {
                obj.insert("metadata".into(), object_meta(x)?);
            }
            (2, Field::Bytes(x)) if binding => list.push(Value::Object(string_fields(
                x,
                &[(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")],
            )?)),
            (2, Field::Bytes(x)) => list.push(policy_rule(x)?),
            (3, Field::Bytes(x)) if binding => {
                let r = string_fields(x, &[(1, "apiGroup"), (2, "kind"), (3, "name")])?;
                obj.insert("roleRef".into(), Value::Object(r));
            }
            _ => {}
        }
    }
    let key = if binding { "subjects" } else { "rules" };
    obj.insert(key.into(), Value::Array(list));
    Ok(())
}

/// Decodes a protobuf request body to the JSON form of the object.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s protobuf magic prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n2, f2) in fields(tm)? {
                    match (n2, f2) {
                        (1, Field::Bytes(x)) => api_version = string(x)?,
                        (2, Field::Bytes(x)) => kind = string(x)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    match (api_version.as_str(), kind.as_str()) {
        ("authentication.k8s.io/v1", "SelfSubjectReview") => {}
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => {
            rbac_object(&mut obj, raw, false)?;
        }
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => {
            rbac_object(&mut obj, raw, true)?;
        }
        ("v1", "ServiceAccount") => {
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => {
                        obj.insert("metadata".into(), object_meta(x)?);
                    }
                    (4, Field::Varint(v)) => {
                        obj.insert("automountServiceAccountToken".into(), json!(v != 0));
                    }
                    _ => {}
                }
            }
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            for (n, f) in fields(raw)? {
                if let (2, Field::Bytes(x)) = (n, f) {
                    obj.insert("spec".into(), token_request_spec(x)?);
                }
            }
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview" | "SubjectAccessReview") => {
            for (n, f) in fields(raw)? {
                if let (2, Field::Bytes(x)) = (n, f) {
                    obj.insert("spec".into(), access_review_spec(x)?);
                }
            }
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            for (n, f) in fields(raw)? {
                if let (2, Field::Bytes(x)) = (n, f) {
                    obj.insert(
                        "spec".into(),
                        Value::Object(string_fields(x, &[(1, "namespace")])?),
                    );
                }
            }
        }
        ("v1", "Namespace") => {
            for (n, f) in fields(raw)? {
                if let (1, Field::Bytes(x)) = (n, f) {
                    obj.insert("metadata".into(), object_meta(x)?);
                }
            }
        }
        ("v1", "ConfigMap") => {
            let mut data = Map::new();
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => {
                        obj.insert("metadata".into(), object_meta(x)?);
                    }
                    (2, Field::Bytes(x)) => {
                        let (k, v) = map_entry(x)?;
                        data.insert(k, json!(v));
                    }
                    (4, Field::Varint(v)) => {
                        obj.insert("immutable".into(), json!(v != 0));
                    }
                    _ => {}
                }
            }
            if !data.is_empty() {
                obj.insert("data".into(), Value::Object(data));
            }
        }
        ("v1", "Service") => {
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => {
                        obj.insert("metadata".into(), object_meta(x)?);
                    }
                    (2, Field::Bytes(x)) => {
                        obj.insert("spec".into(), service_spec(x)?);
                    }
                    _ => {}
                }
            }
        }
        ("apps/v1", "Deployment") => {
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => {
                        obj.insert("metadata".into(), object_meta(x)?);
                    }
                    (2, Field::Bytes(x)) => {
                        obj.insert("spec".into(), deployment_spec(x)?);
                    }
                    _ => {}
                }
            }
        }
        ("batch/v1", "Job" | "CronJob") => {
            let cron = kind == "CronJob";
            for (n, f) in fields(raw)? {
                match (n, f) {
                    (1, Field::Bytes(x)) => {
                        obj.insert("metadata".into(), object_meta(x)?);
                    }
                    (2, Field::Bytes(x)) => {
                        let spec = if cron { cronjob_spec(x)? } else { job_spec(x)? };
                        obj.insert("spec".into(), spec);
                    }
                    _ => {}
                }
            }
        }
        _ => {
            return Err(ApiError::unsupported_media_type(&format!(
                "application/vnd.kubernetes.protobuf for {api_version}/{kind}"
            )));
        }
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    #[test]
    fn decodes_a_namespace() {
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let meta = ld(1, b"team-a");
        let ns = ld(1, &meta);
        let body = [MAGIC.to_vec(), ld(1, &tm), ld(2, &ns)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"}})
        );
        assert_eq!(decode(b"nope").unwrap_err().code, 400);
        assert_eq!(decode(&body[..body.len() - 2]).unwrap_err().code, 400);
    }
}

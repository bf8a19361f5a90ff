//! The reviews that answer "who am I" and "may I": authentication.k8s.io/v1
//! SelfSubjectReview (`kubectl auth whoami`), authorization.k8s.io/v1 SelfSubjectAccessReview
//! (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`) and
//! SubjectAccessReview (for anyone, so only for those RBAC lets create it: the admin by
//! default). Created, answered, never stored.

use super::{Attributes, User, authorized, rbac};
use crate::ApiState;
use crate::errors::{ApiError, ApiResult};
use serde_json::{Value, json};

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The attributes a review's `spec` asks about.
fn spec_attributes(spec: &Value) -> ApiResult<Attributes> {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes {
            verb: s(r, "verb"),
            namespace: s(r, "namespace"),
            api_group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            name: s(r, "name"),
            path: None,
        });
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        return Ok(Attributes {
            verb: s(n, "verb"),
            path: Some(s(n, "path")),
            ..Default::default()
        });
    }
    Err(ApiError::invalid(
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "",
        vec![crate::errors::invalid_value(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )],
    ))
}

fn answer(kind: &str, group: &str, spec: Value, status: Value) -> Value {
    json!({
        "kind": kind,
        "apiVersion": format!("{group}/v1"),
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": status,
    })
}

fn access_status(allowed: bool) -> Value {
    if allowed {
        json!({"allowed": true, "reason": "allowed by RBAC or the system:masters group"})
    } else {
        json!({"allowed": false})
    }
}

/// Answers a review `kind` posted by `user`.
pub fn answer_review(st: &ApiState, user: &User, kind: &str, body: &Value) -> ApiResult<Value> {
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    match kind {
        "SelfSubjectReview" => Ok(json!({
            "kind": kind,
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user.to_json()},
        })),
        "SelfSubjectAccessReview" => {
            let a = spec_attributes(&spec)?;
            Ok(answer(
                kind,
                "authorization.k8s.io",
                spec,
                access_status(authorized(st, user, &a)),
            ))
        }
        "SubjectAccessReview" => {
            let a = spec_attributes(&spec)?;
            let subject = User {
                name: s(&spec, "user"),
                uid: s(&spec, "uid"),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|g| {
                        g.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
                extra: vec![],
            };
            Ok(answer(
                kind,
                "authorization.k8s.io",
                spec,
                access_status(authorized(st, &subject, &a)),
            ))
        }
        "SelfSubjectRulesReview" => {
            let ns = s(&spec, "namespace");
            let mut resource_rules = Vec::new();
            let mut non_resource_rules = Vec::new();
            for r in rbac::rules_for(&st.store, user, &ns) {
                if r.get("nonResourceURLs")
                    .is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty()))
                {
                    non_resource_rules.push(
                        json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}),
                    );
                } else {
                    let mut rule = json!({"verbs": r["verbs"], "apiGroups": r["apiGroups"],
                                          "resources": r["resources"]});
                    if let Some(n) = r.get("resourceNames").filter(|n| !n.is_null()) {
                        rule["resourceNames"] = n.clone();
                    }
                    resource_rules.push(rule);
                }
            }
            Ok(answer(
                kind,
                "authorization.k8s.io",
                spec,
                json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                       "incomplete": false}),
            ))
        }
        other => Err(ApiError::method_not_allowed(format!(
            "{other} is not a review this server answers"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_review_without_attributes_is_invalid() {
        assert_eq!(spec_attributes(&json!({})).unwrap_err().code, 422);
        let a = spec_attributes(&json!({"nonResourceAttributes": {"path": "/api", "verb": "get"}}))
            .unwrap();
        assert_eq!(a.path.as_deref(), Some("/api"));
    }
}

//! Role-based access control (rbac.authorization.k8s.io/v1) as kubernetes'
//! `plugin/pkg/auth/authorizer/rbac` evaluates it: a request is allowed when some rule of a
//! role bound to the user allows it — ClusterRoleBindings everywhere, RoleBindings in their
//! namespace. Nothing denies; what no rule allows is forbidden.

use super::{Attributes, User};
use crate::resources::idx;
use crate::store::Store;
use serde_json::Value;

/// The strings of array `key` of `v` (none when absent); shared with the TokenRequest parser.
pub(crate) fn strs(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one PolicyRule allows the request (upstream `RuleAllows`).
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&strs(rule, "verbs"), &a.verb) {
        return false;
    }
    match &a.path {
        Some(path) => strs(rule, "nonResourceURLs").iter().any(|u| {
            u == "*"
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        }),
        None => {
            if !has(&strs(rule, "apiGroups"), &a.api_group) {
                return false;
            }
            let combined = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            let resource_ok = strs(rule, "resources").iter().any(|r| {
                r == "*"
                    || *r == combined
                    || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
                    || (!a.subresource.is_empty() && *r == format!("{}/*", a.resource))
            });
            if !resource_ok {
                return false;
            }
            let names = strs(rule, "resourceNames");
            names.is_empty() || names.contains(&a.name)
        }
    }
}

/// Whether a binding's subject is `user`. ServiceAccount subjects without a namespace take
/// the binding's (`binding_ns`, empty for ClusterRoleBindings).
pub fn subject_matches(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or_default();
    match s("kind") {
        "User" => s("name") == user.name,
        "Group" => user.groups.iter().any(|g| g == s("name")),
        "ServiceAccount" => {
            let ns = if s("namespace").is_empty() {
                binding_ns
            } else {
                s("namespace")
            };
            !ns.is_empty() && super::tokens::service_account_username(ns, s("name")) == user.name
        }
        _ => false,
    }
}

/// The rules of the role a binding refers to (`Role` only from the binding's namespace).
fn role_rules(store: &Store, binding: &Value, binding_ns: &str) -> Vec<Value> {
    let kind = crate::meta::str_at(binding, "/roleRef/kind").unwrap_or_default();
    let name = crate::meta::str_at(binding, "/roleRef/name").unwrap_or_default();
    let role = match kind {
        "ClusterRole" => store.get(idx::clusterroles(), "", name),
        "Role" if !binding_ns.is_empty() => store.get(idx::roles(), binding_ns, name),
        _ => None,
    };
    role.and_then(|r| r.value().get("rules").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// Every rule that applies to `user` in `namespace` (cluster-wide ones included); for
/// SelfSubjectRulesReview, and the one walk [`allows`] makes.
pub fn rules_for(store: &Store, user: &User, namespace: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let (crbs, _, _) = store.list(idx::clusterrolebindings(), None, None, 0, |_| true);
    for b in crbs {
        let v = b.value();
        if subjects(&v).iter().any(|s| subject_matches(s, user, "")) {
            out.extend(role_rules(store, &v, ""));
        }
    }
    if !namespace.is_empty() {
        let (rbs, _, _) = store.list(idx::rolebindings(), Some(namespace), None, 0, |_| true);
        for b in rbs {
            let v = b.value();
            if subjects(&v)
                .iter()
                .any(|s| subject_matches(s, user, namespace))
            {
                out.extend(role_rules(store, &v, namespace));
            }
        }
    }
    out
}

fn subjects(binding: &Value) -> Vec<Value> {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether RBAC allows the request.
pub fn allows(store: &Store, user: &User, a: &Attributes) -> bool {
    rules_for(store, user, &a.namespace)
        .iter()
        .any(|r| rule_allows(r, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Change;
    use serde_json::json;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: None,
        }
    }

    fn path(verb: &str, p: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: Some(p.into()),
            ..Default::default()
        }
    }

    #[test]
    fn verbs_groups_and_resources_with_wildcards() {
        let r = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]});
        assert!(rule_allows(&r, &res("get", "", "pods", "", "ns", "p")));
        assert!(rule_allows(&r, &res("list", "", "pods", "", "ns", "")));
        assert!(!rule_allows(&r, &res("delete", "", "pods", "", "ns", "p")));
        assert!(!rule_allows(&r, &res("get", "apps", "pods", "", "ns", "p")));
        assert!(!rule_allows(
            &r,
            &res("get", "", "configmaps", "", "ns", "c")
        ));
        let all = json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]});
        assert!(rule_allows(
            &all,
            &res("deletecollection", "apps", "deployments", "", "n", "")
        ));
        assert!(rule_allows(
            &all,
            &res("create", "", "pods", "exec", "n", "p")
        ));
        // A resource rule never allows a non-resource URL.
        assert!(!rule_allows(&all, &path("get", "/api")));
    }

    #[test]
    fn subresources_are_separate_resources() {
        let pods = json!({"verbs": ["get", "create"], "apiGroups": [""], "resources": ["pods"]});
        assert!(!rule_allows(
            &pods,
            &res("get", "", "pods", "log", "n", "p")
        ));
        assert!(!rule_allows(
            &pods,
            &res("create", "", "pods", "exec", "n", "p")
        ));
        let log = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]});
        assert!(rule_allows(&log, &res("get", "", "pods", "log", "n", "p")));
        assert!(!rule_allows(&log, &res("get", "", "pods", "", "n", "p")));
        assert!(!rule_allows(
            &log,
            &res("create", "", "pods", "exec", "n", "p")
        ));
        let any_status =
            json!({"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/status"]});
        assert!(rule_allows(
            &any_status,
            &res("update", "apps", "deployments", "status", "n", "d")
        ));
        assert!(!rule_allows(
            &any_status,
            &res("update", "apps", "deployments", "", "n", "d")
        ));
        let pod_subs = json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods/*"]});
        assert!(rule_allows(
            &pod_subs,
            &res("create", "", "pods", "exec", "n", "p")
        ));
        assert!(!rule_allows(
            &pod_subs,
            &res("get", "", "pods", "", "n", "p")
        ));
    }

    #[test]
    fn resource_names_restrict() {
        let r = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"],
                       "resourceNames": ["allowed"]});
        assert!(rule_allows(
            &r,
            &res("get", "", "configmaps", "", "n", "allowed")
        ));
        assert!(!rule_allows(
            &r,
            &res("get", "", "configmaps", "", "n", "other")
        ));
        // A list names no object, so resourceNames never allow it.
        assert!(!rule_allows(
            &r,
            &res("list", "", "configmaps", "", "n", "")
        ));
    }

    #[test]
    fn non_resource_urls_exact_and_prefix() {
        let r = json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/apis/*", "/healthz"]});
        assert!(rule_allows(&r, &path("get", "/api")));
        assert!(!rule_allows(&r, &path("get", "/api/v1")));
        assert!(rule_allows(&r, &path("get", "/apis/apps/v1")));
        assert!(!rule_allows(&r, &path("post", "/healthz")));
        assert!(!rule_allows(&r, &res("get", "", "pods", "", "n", "")));
        let star = json!({"verbs": ["*"], "nonResourceURLs": ["*"]});
        assert!(rule_allows(&star, &path("get", "/metrics")));
    }

    async fn put(store: &Store, r: usize, ns: &str, v: Value) {
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        store
            .mutate(r, ns, &name, |_| Ok(Change::Put(v)))
            .await
            .unwrap();
    }

    fn sa_user(ns: &str, name: &str) -> User {
        User {
            name: format!("system:serviceaccount:{ns}:{name}"),
            uid: String::new(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            extra: vec![],
        }
    }

    #[tokio::test]
    async fn bindings_grant_in_their_scope_only() {
        let store = Store::in_memory();
        let u = sa_user("app", "reader");
        let get_cm = res("get", "", "configmaps", "", "app", "c");
        assert!(!allows(&store, &u, &get_cm));
        put(
            &store,
            idx::roles(),
            "app",
            json!({"metadata": {"name": "cm-reader", "namespace": "app"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}),
        )
        .await;
        // Subject without a namespace: the binding's.
        put(&store, idx::rolebindings(), "app", json!({"metadata": {"name": "b", "namespace": "app"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader"}]})).await;
        assert!(allows(&store, &u, &get_cm));
        assert!(!allows(
            &store,
            &u,
            &res("get", "", "configmaps", "", "other", "c")
        ));
        assert!(!allows(&store, &sa_user("app", "someone"), &get_cm));
        // A group binding through a ClusterRole applies in every namespace.
        put(
            &store,
            idx::clusterroles(),
            "",
            json!({"metadata": {"name": "node-lister"},
            "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["nodes"]}]}),
        )
        .await;
        put(&store, idx::clusterrolebindings(), "", json!({"metadata": {"name": "all-sa"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-lister"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts"}]})).await;
        assert!(allows(
            &store,
            &sa_user("x", "y"),
            &res("list", "", "nodes", "", "", "")
        ));
        assert_eq!(rules_for(&store, &u, "app").len(), 2);
    }
}

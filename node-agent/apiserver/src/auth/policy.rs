//! The default RBAC policy kube-apiserver creates at start (`rbac/bootstrap-roles`), the
//! minimal part a KIND cluster's users and add-ons rely on, and kubeadm's CoreDNS role.
//! The roles the real server aggregates (`admin`, `edit`, `view`) list the resources
//! minikind serves directly; as upstream's, `edit` and `admin` may read and write Secrets and
//! `view` may not see them (reading a Secret can escalate to its service account).

use crate::resources::idx;
use serde_json::{Value, json};

const RBAC: &str = "rbac.authorization.k8s.io/v1";

/// The ClusterRole kubeadm gives CoreDNS and the ServiceAccount it binds it to.
pub const COREDNS_ROLE: &str = "system:coredns";

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({
        "apiVersion": RBAC, "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": rules,
    })
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": RBAC, "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                     "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];

/// Rules for the namespaced resources a user edits (`edit`) or reads (`view`).
fn workload_rules(verbs: &[&str]) -> Value {
    json!([
        {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "configmaps",
                                          "serviceaccounts"], "verbs": verbs},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "replicasets",
                                              "replicasets/scale", "statefulsets",
                                              "statefulsets/scale", "daemonsets"], "verbs": verbs},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": verbs},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
        {"apiGroups": [""], "resources": ["pods/log", "pods/status", "services/status",
                                          "events", "namespaces"], "verbs": READ},
        {"apiGroups": ["apps"], "resources": ["deployments/status", "replicasets/status",
                                              "statefulsets/status", "daemonsets/status",
                                              "controllerrevisions"],
         "verbs": READ},
        {"apiGroups": ["batch"], "resources": ["jobs/status", "cronjobs/status"],
         "verbs": READ},
    ])
}

/// Every (resource index, object) of the default policy, ClusterRoles before bindings.
pub fn bootstrap_objects() -> Vec<(usize, Value)> {
    let mut rw: Vec<&str> = READ.to_vec();
    rw.extend(WRITE);
    let mut edit = workload_rules(&rw);
    if let Some(a) = edit.as_array_mut() {
        a.push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": rw}));
        a.push(
            json!({"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"],
                      "verbs": ["create", "get"]}),
        );
        a.push(
            json!({"apiGroups": [""], "resources": ["serviceaccounts/token"],
                      "verbs": ["create"]}),
        );
    }
    let mut admin = edit.clone();
    if let Some(a) = admin.as_array_mut() {
        a.push(json!({"apiGroups": ["rbac.authorization.k8s.io"],
                      "resources": ["roles", "rolebindings"], "verbs": rw}));
    }
    let roles = vec![
        cluster_role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        cluster_role("admin", admin),
        cluster_role("edit", edit),
        cluster_role("view", workload_rules(&READ)),
        cluster_role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                                        "/livez", "/openapi", "/openapi/*", "/readyz",
                                        "/version", "/version/"], "verbs": ["get"]}]),
        ),
        cluster_role(
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"]},
                   {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                    "verbs": ["create"]}]),
        ),
        cluster_role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                        "/version/"], "verbs": ["get"]}]),
        ),
        // kubeadm's CoreDNS role (cmd/kubeadm/app/phases/addons/dns).
        json!({
            "apiVersion": RBAC, "kind": "ClusterRole",
            "metadata": {"name": COREDNS_ROLE},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                 "verbs": ["list", "watch"]},
            ],
        }),
    ];
    let bindings = vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            json!([group("system:masters")]),
        ),
        binding(
            "system:discovery",
            "system:discovery",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([
                group("system:authenticated"),
                group("system:unauthenticated")
            ]),
        ),
        json!({
            "apiVersion": RBAC, "kind": "ClusterRoleBinding",
            "metadata": {"name": COREDNS_ROLE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": COREDNS_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        }),
    ];
    roles
        .into_iter()
        .map(|r| (idx::clusterroles(), r))
        .chain(
            bindings
                .into_iter()
                .map(|b| (idx::clusterrolebindings(), b)),
        )
        .collect()
}

//! The resource types the API server serves: their names, groups, scope and subresources.
//!
//! Everything else (routing, discovery, tables, storage keys) is derived from this one table so
//! that a resource is added in exactly one place. The custom resources that stored
//! CustomResourceDefinitions declare are appended behind the table at run time
//! ([`crate::crd::registry`]); the lookups here see both.

/// One served resource type.
#[derive(Debug)]
pub struct Resource {
    /// API group; `""` is the core (legacy) group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural lower-case name as used in URLs (`pods`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources: `status`, `log`, `exec`, `portforward`, `scale`, `binding`, `proxy`.
    pub subresources: &'static [&'static str],
    /// Field selectors (besides `metadata.name`/`metadata.namespace`) the real server accepts.
    pub selectable_fields: &'static [&'static str],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The stable identifier used as the storage key prefix (`pods`, `apps/deployments`).
    pub fn id(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}/{}", self.group, self.plural)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    /// Reviews are only created, and answered without being stored.
    pub fn is_review(&self) -> bool {
        self.plural.ends_with("reviews")
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        if self.is_review() {
            return &["create"];
        }
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

const ALL: &[&str] = &["all"];

/// Every served resource, in discovery order.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &["status"],
        selectable_fields: &["status.phase"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &["status", "proxy"],
        selectable_fields: &["spec.unschedulable"],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        subresources: &["status", "log", "exec", "portforward", "binding", "proxy"],
        selectable_fields: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        subresources: &["status", "proxy"],
        selectable_fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    // Secrets and node leases (issue 15: API details).
    Resource {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &["type"],
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        selectable_fields: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        subresources: &["status", "scale"],
        selectable_fields: &[],
    },
    // The workload kinds beside Deployment (kube-controller-manager's replicaset, daemonset,
    // statefulset, job and cronjob controllers in `minikind-controllers` reconcile them).
    Resource {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        categories: ALL,
        subresources: &["status", "scale"],
        selectable_fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        short_names: &["sts"],
        categories: ALL,
        subresources: &["status", "scale"],
        selectable_fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        categories: ALL,
        subresources: &["status"],
        selectable_fields: &[],
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        kind: "ControllerRevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        categories: ALL,
        subresources: &["status"],
        selectable_fields: &[],
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short_names: &["cj"],
        categories: ALL,
        subresources: &["status"],
        selectable_fields: &[],
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &["token"],
        selectable_fields: &[],
    },
    Resource {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        subresources: &["status"],
        selectable_fields: &[],
    },
    // Reviews: created and answered, never stored (see `auth::reviews`).
    Resource {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        kind: "SelfSubjectRulesReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
    Resource {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        kind: "SubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        selectable_fields: &[],
    },
];

/// The kinds with a spec the API server counts generations of (`metadata.generation` set on
/// create, bumped on each spec change, as their registry strategies do), and whose client-sent
/// status is dropped on create.
pub fn is_workload(res: ResIdx) -> bool {
    let r = get(res);
    (r.group == "apps" || r.group == "batch") && r.kind != "ControllerRevision"
}

/// Index of a resource: below `RESOURCES.len()` a built-in one in [`RESOURCES`], above it a
/// custom resource version in [`crate::crd::registry`]; cheap to copy and compare.
pub type ResIdx = usize;

pub fn by_path(group: &str, version: &str, plural: &str) -> Option<ResIdx> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
        .or_else(|| crate::crd::registry::by_path(group, version, plural))
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<ResIdx> {
    RESOURCES
        .iter()
        .position(|r| r.api_version() == api_version && r.kind == kind)
        .or_else(|| crate::crd::registry::by_kind(api_version, kind))
}

/// The resource whose storage identifier is `id` (a custom resource's storage slot).
pub fn by_id(id: &str) -> Option<ResIdx> {
    RESOURCES
        .iter()
        .position(|r| r.id() == id)
        .or_else(|| crate::crd::registry::by_id(id))
}

pub fn get(idx: ResIdx) -> &'static Resource {
    match RESOURCES.get(idx) {
        Some(r) => r,
        None => crate::crd::registry::resource(idx),
    }
}

/// Where objects of `idx` are kept in the store: the resource itself for built-in kinds, the
/// one slot shared by every version of a custom resource.
pub fn storage_of(idx: ResIdx) -> ResIdx {
    if idx < RESOURCES.len() {
        idx
    } else {
        crate::crd::registry::slot_of(idx)
    }
}

/// Every storage slot: the built-in resources and one per custom resource ever defined (what
/// namespace deletion and the garbage collector walk).
pub fn all() -> Vec<ResIdx> {
    let mut out: Vec<ResIdx> = (0..RESOURCES.len()).collect();
    out.extend(crate::crd::registry::slots());
    out
}

/// The groups served under `/apis`, each with its versions in preference order (the first is
/// the preferred one), in discovery order: the built-in groups, then the custom ones.
pub fn named_groups() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.iter().any(|(g, _)| g == r.group) {
            out.push((r.group.to_string(), vec![r.version.to_string()]));
        }
    }
    for (g, versions) in crate::crd::registry::groups() {
        match out.iter_mut().find(|(x, _)| *x == g) {
            Some((_, vs)) => {
                for v in versions {
                    if !vs.contains(&v) {
                        vs.push(v);
                    }
                }
                vs.sort_by(|a, b| crate::crd::version_priority(a, b));
            }
            None => out.push((g, versions)),
        }
    }
    out
}

/// The served resources of one group version, built-in and custom, in discovery order.
pub fn in_group_version(group: &str, version: &str) -> Vec<ResIdx> {
    let mut out: Vec<ResIdx> = RESOURCES
        .iter()
        .enumerate()
        .filter(|(_, r)| r.group == group && r.version == version)
        .map(|(i, _)| i)
        .collect();
    out.extend(crate::crd::registry::served_in(group, version));
    out
}

/// Well-known indices, so controllers do not look resources up by string at run time.
pub mod idx {
    use super::*;
    pub fn namespaces() -> ResIdx {
        by_path("", "v1", "namespaces").expect("namespaces registered")
    }
    pub fn nodes() -> ResIdx {
        by_path("", "v1", "nodes").expect("nodes registered")
    }
    pub fn pods() -> ResIdx {
        by_path("", "v1", "pods").expect("pods registered")
    }
    pub fn services() -> ResIdx {
        by_path("", "v1", "services").expect("services registered")
    }
    pub fn endpoints() -> ResIdx {
        by_path("", "v1", "endpoints").expect("endpoints registered")
    }
    pub fn configmaps() -> ResIdx {
        by_path("", "v1", "configmaps").expect("configmaps registered")
    }
    pub fn secrets() -> ResIdx {
        by_path("", "v1", "secrets").expect("secrets registered")
    }
    pub fn leases() -> ResIdx {
        by_path("coordination.k8s.io", "v1", "leases").expect("leases registered")
    }
    pub fn events() -> ResIdx {
        by_path("", "v1", "events").expect("events registered")
    }
    pub fn deployments() -> ResIdx {
        by_path("apps", "v1", "deployments").expect("deployments registered")
    }
    pub fn serviceaccounts() -> ResIdx {
        by_path("", "v1", "serviceaccounts").expect("serviceaccounts registered")
    }
    pub fn roles() -> ResIdx {
        by_path("rbac.authorization.k8s.io", "v1", "roles").expect("roles registered")
    }
    pub fn rolebindings() -> ResIdx {
        by_path("rbac.authorization.k8s.io", "v1", "rolebindings").expect("rolebindings registered")
    }
    pub fn clusterroles() -> ResIdx {
        by_path("rbac.authorization.k8s.io", "v1", "clusterroles").expect("clusterroles registered")
    }
    pub fn clusterrolebindings() -> ResIdx {
        by_path("rbac.authorization.k8s.io", "v1", "clusterrolebindings")
            .expect("clusterrolebindings registered")
    }
    pub fn endpointslices() -> ResIdx {
        by_path("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices registered")
    }
    // The workload kinds (one block, see the table).
    pub fn replicasets() -> ResIdx {
        by_path("apps", "v1", "replicasets").expect("replicasets registered")
    }
    pub fn statefulsets() -> ResIdx {
        by_path("apps", "v1", "statefulsets").expect("statefulsets registered")
    }
    pub fn daemonsets() -> ResIdx {
        by_path("apps", "v1", "daemonsets").expect("daemonsets registered")
    }
    pub fn controllerrevisions() -> ResIdx {
        by_path("apps", "v1", "controllerrevisions").expect("controllerrevisions registered")
    }
    pub fn jobs() -> ResIdx {
        by_path("batch", "v1", "jobs").expect("jobs registered")
    }
    pub fn cronjobs() -> ResIdx {
        by_path("batch", "v1", "cronjobs").expect("cronjobs registered")
    }
    pub fn crds() -> ResIdx {
        by_path("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .expect("customresourcedefinitions registered")
    }
}

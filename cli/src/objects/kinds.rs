//! The kinds the object commands know, with the names users type for them.

use kube::core::{ApiResource, GroupVersionKind};

pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Names accepted on the command line besides the plural (singular, short names).
    pub aliases: &'static [&'static str],
}

impl Kind {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmap`, `deployment.apps`, as kubectl prefixes object names in its messages.
    pub fn display(&self) -> String {
        let s = self.kind.to_lowercase();
        if self.group.is_empty() {
            s
        } else {
            format!("{s}.{}", self.group)
        }
    }

    /// The URL path of the collection (in `ns` when namespaced and given).
    pub fn collection_path(&self, ns: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match ns {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }
}

pub static KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        aliases: &["namespace", "ns"],
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        aliases: &["node", "no"],
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        aliases: &["pod", "po"],
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
        aliases: &["service", "svc"],
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        namespaced: true,
        aliases: &["ep"],
    },
    Kind {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        aliases: &["configmap", "cm"],
    },
    Kind {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        aliases: &["event", "ev"],
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        aliases: &["deployment", "deploy"],
    },
    // The other workload kinds.
    Kind {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        aliases: &["replicaset", "rs"],
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        aliases: &["statefulset", "sts"],
    },
    Kind {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
        aliases: &["daemonset", "ds"],
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        aliases: &["job"],
    },
    Kind {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
        aliases: &["cronjob", "cj"],
    },
    Kind {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        namespaced: true,
        aliases: &["endpointslice"],
    },
];

/// Looks a kind up by what a user typed (`svc`, `deployments`, `deployment.apps`).
pub fn by_name(name: &str) -> Option<&'static Kind> {
    let n = name.to_lowercase();
    let n = n.split_once('.').map_or(n.as_str(), |(a, _)| a);
    KINDS
        .iter()
        .find(|k| k.plural == n || k.aliases.contains(&n) || k.kind.to_lowercase() == n)
}

/// Looks a kind up by `apiVersion` and `kind` as written in a manifest.
pub fn by_type(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

pub fn supported_list() -> String {
    KINDS
        .iter()
        .map(|k| format!("{} ({})", k.kind, k.api_version()))
        .collect::<Vec<_>>()
        .join(", ")
}

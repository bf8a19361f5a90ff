//! A container's environment and command line as the kubelet and the runtime make them:
//! the runtime's `PATH` and `HOSTNAME`, the `KUBERNETES_SERVICE_*` variables of the master
//! service, `envFrom`, then `env` (with `valueFrom`), `$(VAR)` references expanded in values,
//! `command` and `args`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Container, Pod};

/// The address and port of `default/kubernetes` (the API as pods reach it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterService {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    pub fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.vars
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.vars
    }

    pub(crate) fn map(&self) -> BTreeMap<&str, &str> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// Expands `$(VAR)` from `vars` like the kubelet: `$$` is a literal `$`, an unknown or
/// unclosed reference is left as written.
pub fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The value of a `fieldRef` path of `pod` (the downward API).
pub fn field_value(
    pod: &Pod,
    path: &str,
    pod_ip: Option<Ipv4Addr>,
    host_ip: Ipv4Addr,
) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let label_like = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|key| {
                map.as_ref()
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or_default()
            })
    };
    if let Some(v) = label_like("metadata.labels['", &meta.labels) {
        return Ok(v);
    }
    if let Some(v) = label_like("metadata.annotations['", &meta.annotations) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        "status.podIP" | "status.podIPs" => pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        other => bail!("fieldRef {other:?} is not supported"),
    })
}

/// Keys of named objects (ConfigMaps, Secrets) by object name; an absent name is an object
/// that does not exist.
pub type Keyed<V> = BTreeMap<String, BTreeMap<String, V>>;

/// The ConfigMaps and Secrets `configMapKeyRef`/`secretKeyRef`/`envFrom` refer to; given by
/// the caller so that this module stays free of API calls.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    pub config_maps: Keyed<String>,
    /// Secret values are bytes; the kubelet puts them in the environment as they are, so one
    /// that is not UTF-8 is refused here rather than altered.
    pub secrets: Keyed<Vec<u8>>,
}

fn secret_value(cname: &str, secret: &str, key: &str, v: &[u8]) -> Result<String> {
    String::from_utf8(v.to_vec()).map_err(|_| {
        anyhow!(
            "container {cname}: key {key:?} of secret {secret:?} is not UTF-8 text and cannot be an environment variable here"
        )
    })
}

/// The environment of `container`, everything resolved.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    hostname: &str,
    pod_ip: Option<Ipv4Addr>,
    host_ip: Ipv4Addr,
    master: Option<MasterService>,
    sources: &EnvSources,
) -> Result<Env> {
    // PATH comes from the image (image_config::environment); the kubelet's own variables
    // are the only ones `$(VAR)` references see, as in the kubelet.
    let mut env = Env::default();
    env.set("HOSTNAME", hostname.to_string());
    if let Some(m) = master {
        let (ip, port) = (m.ip, m.port);
        env.set("KUBERNETES_SERVICE_HOST", ip.to_string());
        env.set("KUBERNETES_SERVICE_PORT", port.to_string());
        env.set("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string());
        env.set("KUBERNETES_PORT", format!("tcp://{ip}:{port}"));
        env.set(
            &format!("KUBERNETES_PORT_{port}_TCP"),
            format!("tcp://{ip}:{port}"),
        );
        env.set(&format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into());
        env.set(
            &format!("KUBERNETES_PORT_{port}_TCP_PORT"),
            port.to_string(),
        );
        env.set(&format!("KUBERNETES_PORT_{port}_TCP_ADDR"), ip.to_string());
    }
    let cname = &container.name;
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => bail!("container {cname}: configmap {:?} not found", r.name),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        env.set(&format!("{prefix}{k}"), secret_value(cname, &r.name, k, v)?);
                    }
                }
                None if r.optional == Some(true) => {}
                None => bail!("container {cname}: secret {:?} not found", r.name),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path, pod_ip, host_ip)
                    .map_err(|e| anyhow!("container {cname}: env {}: {e}", var.name))?
            } else if let Some(r) = &from.config_map_key_ref {
                match sources.config_maps.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if r.optional == Some(true) => continue,
                    None => bail!(
                        "container {cname}: env {}: key {:?} of configmap {:?} not found",
                        var.name,
                        r.key,
                        r.name
                    ),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match sources.secrets.get(&r.name).and_then(|d| d.get(&r.key)) {
                    Some(v) => secret_value(cname, &r.name, &r.key, v)?,
                    None if r.optional == Some(true) => continue,
                    None => bail!(
                        "container {cname}: env {}: key {:?} of secret {:?} not found",
                        var.name,
                        r.key,
                        r.name
                    ),
                }
            } else {
                bail!(
                    "container {cname}: env {}: resourceFieldRef is not supported",
                    var.name
                );
            }
        } else {
            let vars = env.map();
            expand(var.value.as_deref().unwrap_or(""), &vars)
        };
        env.set(&var.name, value);
    }
    Ok(env)
}

/// The ConfigMaps `container`'s environment refers to.
pub fn referenced_config_maps(container: &Container) -> Vec<String> {
    let mut names: Vec<String> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|f| f.config_map_ref.as_ref().map(|r| r.name.clone()))
        .chain(container.env.iter().flatten().filter_map(|v| {
            v.value_from
                .as_ref()
                .and_then(|f| f.config_map_key_ref.as_ref().map(|r| r.name.clone()))
        }))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The Secrets `container`'s environment refers to.
pub fn referenced_secrets(container: &Container) -> Vec<String> {
    let mut names: Vec<String> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|f| f.secret_ref.as_ref().map(|r| r.name.clone()))
        .chain(container.env.iter().flatten().filter_map(|v| {
            v.value_from
                .as_ref()
                .and_then(|f| f.secret_key_ref.as_ref().map(|r| r.name.clone()))
        }))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether an image reference names CoreDNS (`registry.k8s.io/coredns/coredns:v1.12.0`,
/// `coredns/coredns`, …).
pub fn image_is_coredns(image: &str) -> bool {
    let without_tag = image.split(['@']).next().unwrap_or("");
    let repo = match without_tag.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => without_tag,
    };
    repo.rsplit('/')
        .next()
        .is_some_and(|last| last.contains("coredns"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "prod", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "kind-worker", "containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn expansion_like_the_kubelet() {
        let vars: BTreeMap<&str, &str> = [("A", "1"), ("B", "two")].into();
        assert_eq!(expand("$(A)-$(B)", &vars), "1-two");
        assert_eq!(expand("$$(A) $(C) $(A", &vars), "$(A) $(C) $(A");
        assert_eq!(expand("cost $5", &vars), "cost $5");
    }

    #[test]
    fn environment_in_order_with_downward_api_and_config_maps() {
        let c = container(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "GREETING", "value": "$(POD) at $(KUBERNETES_SERVICE_HOST)"},
                {"name": "PATH", "value": "/opt/bin:$(PATH)"}
            ]
        }));
        let cms = EnvSources {
            config_maps: [(
                "cfg".to_string(),
                [("mode".to_string(), "fast".to_string())].into(),
            )]
            .into(),
            ..EnvSources::default()
        };
        let env = container_env(
            &pod(),
            &c,
            "web-0",
            Some(Ipv4Addr::new(10, 244, 1, 5)),
            Ipv4Addr::new(172, 18, 0, 3),
            Some(MasterService {
                ip: Ipv4Addr::new(10, 96, 0, 1),
                port: 443,
            }),
            &cms,
        )
        .unwrap();
        assert_eq!(env.get("CFG_mode"), Some("fast"));
        assert_eq!(env.get("IP"), Some("10.244.1.5"));
        assert_eq!(env.get("APP"), Some("web"));
        assert_eq!(env.get("MODE"), Some("fast"));
        assert_eq!(env.get("GREETING"), Some("web-0 at 10.96.0.1"));
        assert_eq!(
            env.get("KUBERNETES_PORT_443_TCP"),
            Some("tcp://10.96.0.1:443")
        );
        // The kubelet's expansion does not know the image's PATH: left as written.
        assert_eq!(env.get("PATH"), Some("/opt/bin:$(PATH)"));
    }

    #[test]
    fn missing_references_are_errors_naming_them() {
        let c = container(json!({
            "name": "c",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]
        }));
        let e = container_env(
            &pod(),
            &c,
            "h",
            None,
            Ipv4Addr::LOCALHOST,
            None,
            &EnvSources::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("container c") && e.contains("\"nope\""), "{e}");
        assert_eq!(referenced_config_maps(&c), vec!["nope".to_string()]);
    }

    #[test]
    fn secrets_by_key_and_by_prefix_missing_optional_and_binary() {
        let c = container(json!({
            "name": "c",
            "envFrom": [{"secretRef": {"name": "creds"}, "prefix": "S_"},
                        {"secretRef": {"name": "gone", "optional": true}}],
            "env": [
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "username"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "nope", "optional": true}}}
            ]
        }));
        assert_eq!(
            referenced_secrets(&c),
            vec!["creds".to_string(), "gone".to_string()]
        );
        let mut sources = EnvSources::default();
        sources.secrets.insert(
            "creds".into(),
            [("username".to_string(), b"admin".to_vec())].into(),
        );
        let run = |s: &EnvSources, c: &Container| {
            container_env(&pod(), c, "h", None, Ipv4Addr::LOCALHOST, None, s)
        };
        let env = run(&sources, &c).unwrap();
        assert_eq!(env.get("USER"), Some("admin"));
        assert_eq!(env.get("S_username"), Some("admin"));
        assert_eq!(env.get("OPT"), None);
        let missing = container(json!({
            "name": "c",
            "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]
        }));
        let e = run(&sources, &missing).unwrap_err().to_string();
        assert!(e.contains("\"password\"") && e.contains("\"creds\""), "{e}");
        sources.secrets.insert(
            "creds".into(),
            [("username".to_string(), vec![0xff, 0xfe])].into(),
        );
        let e = run(&sources, &c).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn coredns_images_are_recognised() {
        assert!(image_is_coredns("registry.k8s.io/coredns/coredns:v1.12.0"));
        assert!(image_is_coredns("localhost:5000/coredns@sha256:abc"));
        assert!(!image_is_coredns("coredns-like.example/busybox:1.36"));
        assert!(!image_is_coredns("busybox"));
    }
}

//! Services and EndpointSlices → the renderer's [`ServicePort`]s, with kube-proxy's rules
//! (pkg/proxy: service change tracker, EndpointSlice cache, `CategorizeEndpoints`):
//!
//! - services without a cluster IP (`""`, headless `None`) and `ExternalName` services get no
//!   rules; only the proxier's IP family (IPv4: this is the iptables proxier) is used;
//! - a service port is `ns/name:portname` + protocol; its endpoints come from the slices
//!   labelled `kubernetes.io/service-name=<name>`, matched by port *name* and protocol, with the
//!   slice's port number (so named target ports are whatever the slice resolved them to);
//! - an endpoint's conditions default as in the API: `ready`/`serving` absent = true,
//!   `terminating` absent = false; the first address is used; duplicates across slices are
//!   kept once;
//! - usable endpoints are the ready ones; when none is ready, the serving-and-terminating
//!   ones (so connections still land while a rollout drains).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::service_rules::{Endpoint, Protocol, ServicePort};

/// The label that ties a slice to its service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What one pass over the stores produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Model {
    /// One entry per service port, in no particular order (the renderer sorts).
    pub ports: Vec<ServicePort>,
    /// Services that got rules (at least one port).
    pub services: usize,
    /// Usable endpoints over all ports.
    pub endpoints: usize,
    /// Objects or fields that were skipped because they are malformed, with the reason.
    pub problems: Vec<String>,
}

/// One endpoint as read from a slice, before choosing the usable ones.
#[derive(Debug, Clone)]
struct Candidate {
    endpoint: Endpoint,
    ready: bool,
    serving: bool,
    terminating: bool,
}

type PortKey = (String, Protocol);

/// Builds the model from the current store contents.
pub fn build(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Model {
    let mut model = Model::default();
    let by_service = index_slices(slices, &mut model.problems);
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let Some(cluster_ip) = cluster_ipv4(svc, &mut model.problems) else {
            continue;
        };
        let candidates = by_service.get(&(ns, name));
        let before = model.ports.len();
        let spec = svc.spec.as_ref();
        let node_ports = matches!(
            spec.and_then(|s| s.type_.as_deref()),
            Some("NodePort" | "LoadBalancer")
        );
        for sp in spec.and_then(|s| s.ports.as_deref()).unwrap_or_default() {
            let port_name = sp.name.clone().unwrap_or_default();
            let protocol = match sp.protocol.as_deref().unwrap_or("").parse::<Protocol>() {
                Ok(p) => p,
                Err(e) => {
                    model
                        .problems
                        .push(format!("service {ns}/{name} port {port_name:?}: {e}"));
                    continue;
                }
            };
            let Ok(port) = u16::try_from(sp.port) else {
                model.problems.push(format!(
                    "service {ns}/{name} port {port_name:?}: port {} out of range",
                    sp.port
                ));
                continue;
            };
            let node_port = sp
                .node_port
                .filter(|_| node_ports)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            let endpoints = candidates
                .and_then(|c| c.get(&(port_name.clone(), protocol)))
                .map(|c| usable(c))
                .unwrap_or_default();
            model.endpoints += endpoints.len();
            model.ports.push(ServicePort {
                namespace: ns.to_string(),
                name: name.to_string(),
                port_name,
                protocol,
                cluster_ip,
                port,
                node_port,
                endpoints,
            });
        }
        if model.ports.len() > before {
            model.services += 1;
        }
    }
    model
}

/// The service's IPv4 cluster IP, or None when it gets no rules from this proxier.
fn cluster_ipv4(svc: &Service, problems: &mut Vec<String>) -> Option<IpAddr> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let primary = spec.cluster_ip.as_deref().unwrap_or_default();
    if primary.is_empty() || primary == "None" {
        return None;
    }
    // `clusterIPs` lists one address per family (primary first); `clusterIP` alone is the
    // pre-dual-stack form.
    let candidates: Vec<&str> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => vec![primary],
    };
    for ip in candidates {
        match ip.parse::<IpAddr>() {
            Ok(addr @ IpAddr::V4(_)) => return Some(addr),
            Ok(IpAddr::V6(_)) => {}
            Err(_) => problems.push(format!(
                "service {}/{}: cluster IP {ip:?} is not an IP address",
                svc.metadata.namespace.as_deref().unwrap_or_default(),
                svc.metadata.name.as_deref().unwrap_or_default()
            )),
        }
    }
    None
}

/// Slices grouped by (namespace, service) then by service port, endpoints deduplicated by
/// `ip:port` (the first slice in name order wins, so the result does not depend on the
/// store's order).
fn index_slices<'a>(
    slices: &'a [Arc<EndpointSlice>],
    problems: &mut Vec<String>,
) -> HashMap<(&'a str, &'a str), HashMap<PortKey, Vec<Candidate>>> {
    let mut grouped: HashMap<(&str, &str), BTreeMap<&str, &EndpointSlice>> = HashMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let ns = slice.metadata.namespace.as_deref().unwrap_or_default();
        let slice_name = slice.metadata.name.as_deref().unwrap_or_default();
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        grouped
            .entry((ns, svc.as_str()))
            .or_default()
            .insert(slice_name, slice);
    }
    let mut out = HashMap::with_capacity(grouped.len());
    for (key, by_name) in grouped {
        let mut ports: HashMap<PortKey, Vec<Candidate>> = HashMap::new();
        for (slice_name, slice) in by_name {
            for ep_port in slice.ports.as_deref().unwrap_or_default() {
                // kube-proxy ignores ports without a name field or number.
                let Some(port_name) = ep_port.name.clone() else {
                    continue;
                };
                let Some(number) = ep_port.port.filter(|p| *p != 0) else {
                    continue;
                };
                let Ok(number) = u16::try_from(number) else {
                    problems.push(format!(
                        "endpointslice {}/{slice_name} port {port_name:?}: {number} out of range",
                        key.0
                    ));
                    continue;
                };
                let protocol = match ep_port.protocol.as_deref().unwrap_or("").parse() {
                    Ok(p) => p,
                    Err(e) => {
                        problems.push(format!(
                            "endpointslice {}/{slice_name} port {port_name:?}: {e}",
                            key.0
                        ));
                        continue;
                    }
                };
                let list = ports.entry((port_name, protocol)).or_default();
                for ep in &slice.endpoints {
                    let Some(addr) = ep.addresses.first() else {
                        continue;
                    };
                    let ip = match addr.parse::<IpAddr>() {
                        Ok(ip @ IpAddr::V4(_)) => ip,
                        Ok(IpAddr::V6(_)) => continue,
                        Err(_) => {
                            problems.push(format!(
                                "endpointslice {}/{slice_name}: address {addr:?} is not an IP address",
                                key.0
                            ));
                            continue;
                        }
                    };
                    let endpoint = Endpoint { ip, port: number };
                    if list.iter().any(|c| c.endpoint == endpoint) {
                        continue;
                    }
                    let cond = ep.conditions.as_ref();
                    list.push(Candidate {
                        endpoint,
                        ready: cond.and_then(|c| c.ready).unwrap_or(true),
                        serving: cond.and_then(|c| c.serving).unwrap_or(true),
                        terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                    });
                }
            }
        }
        out.insert(key, ports);
    }
    out
}

/// Ready endpoints, or when there is none the serving-and-terminating ones.
fn usable(candidates: &[Candidate]) -> Vec<Endpoint> {
    let ready: Vec<Endpoint> = candidates
        .iter()
        .filter(|c| c.ready)
        .map(|c| c.endpoint.clone())
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates
        .iter()
        .filter(|c| c.serving && c.terminating)
        .map(|c| c.endpoint.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).expect("a valid Service"))
    }

    fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).expect("a valid EndpointSlice"))
    }

    fn web() -> Arc<Service> {
        svc(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.96.0.50", "clusterIPs": ["10.96.0.50"],
                     "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}
        }))
    }

    fn web_slice(name: &str, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        slice(json!({
            "metadata": {"namespace": "default", "name": name,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
    }

    fn ips(model: &Model) -> Vec<String> {
        let mut v: Vec<String> = model.ports[0]
            .endpoints
            .iter()
            .map(|e| e.to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn named_target_port_comes_from_the_slice() {
        let s = web_slice(
            "web-a",
            json!([{"addresses": ["10.244.0.5"], "conditions": {"ready": true}}]),
        );
        let model = build(&[web()], &[s]);
        assert_eq!(model.services, 1);
        assert_eq!(model.ports.len(), 1);
        let p = &model.ports[0];
        assert_eq!(p.name_string(), "default/web:http");
        assert_eq!(p.port, 80);
        assert_eq!(p.cluster_ip.to_string(), "10.96.0.50");
        assert_eq!(ips(&model), vec!["10.244.0.5:8080"]);
        assert!(model.problems.is_empty(), "{:?}", model.problems);
    }

    #[test]
    fn only_ready_endpoints_unless_none_is_ready() {
        let s = web_slice(
            "web-a",
            json!([
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": false, "serving": false}},
                {"addresses": ["10.244.0.8"]},
            ]),
        );
        let model = build(&[web()], &[s]);
        assert_eq!(ips(&model), vec!["10.244.0.5:8080", "10.244.0.8:8080"]);

        let draining = web_slice(
            "web-a",
            json!([
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["10.244.0.9"], "conditions": {"ready": false, "serving": true, "terminating": false}},
            ]),
        );
        let model = build(&[web()], &[draining]);
        assert_eq!(ips(&model), vec!["10.244.0.6:8080"]);
    }

    #[test]
    fn endpoints_merge_across_slices_once() {
        let a = web_slice(
            "web-a",
            json!([{"addresses": ["10.244.0.5"]}, {"addresses": ["10.244.0.6"]}]),
        );
        let b = web_slice(
            "web-b",
            json!([{"addresses": ["10.244.0.6"]}, {"addresses": ["10.244.1.2"]}]),
        );
        let model = build(&[web()], &[b, a]);
        assert_eq!(
            ips(&model),
            vec!["10.244.0.5:8080", "10.244.0.6:8080", "10.244.1.2:8080"]
        );
        assert_eq!(model.endpoints, 3);
    }

    #[test]
    fn ports_match_by_name_and_protocol() {
        let dns = svc(json!({
            "metadata": {"namespace": "kube-system", "name": "kube-dns"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"}]}
        }));
        let s = slice(json!({
            "metadata": {"namespace": "kube-system", "name": "kube-dns-x",
                         "labels": {"kubernetes.io/service-name": "kube-dns"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                      {"name": "metrics", "port": 9153, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.244.0.2"]}],
        }));
        let model = build(&[dns], &[s]);
        let mut got: Vec<(String, Vec<String>)> = model
            .ports
            .iter()
            .map(|p| {
                (
                    p.name_string(),
                    p.endpoints.iter().map(|e| e.to_string()).collect(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "kube-system/kube-dns:dns".into(),
                    vec!["10.244.0.2:5353".into()]
                ),
                (
                    "kube-system/kube-dns:dns-tcp".into(),
                    vec!["10.244.0.2:53".into()]
                ),
                // The slice's metrics port is UDP: it does not serve the TCP service port.
                ("kube-system/kube-dns:metrics".into(), vec![]),
            ]
        );
    }

    #[test]
    fn headless_external_name_and_ipv6_services_get_no_rules() {
        let headless = svc(json!({
            "metadata": {"namespace": "default", "name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }));
        let external = svc(json!({
            "metadata": {"namespace": "default", "name": "e"},
            "spec": {"type": "ExternalName", "externalName": "example.test", "ports": [{"port": 80}]}
        }));
        let v6 = svc(json!({
            "metadata": {"namespace": "default", "name": "six"},
            "spec": {"clusterIP": "fd00::10", "clusterIPs": ["fd00::10"], "ports": [{"port": 80}]}
        }));
        let dual = svc(json!({
            "metadata": {"namespace": "default", "name": "dual"},
            "spec": {"clusterIP": "fd00::11", "clusterIPs": ["fd00::11", "10.96.3.3"], "ports": [{"port": 80}]}
        }));
        let model = build(&[headless, external, v6, dual], &[]);
        assert_eq!(model.services, 1);
        assert_eq!(model.ports[0].name, "dual");
        assert_eq!(model.ports[0].cluster_ip.to_string(), "10.96.3.3");
        assert!(model.ports[0].endpoints.is_empty());
    }

    #[test]
    fn node_ports_only_for_node_port_services() {
        let np = svc(json!({
            "metadata": {"namespace": "default", "name": "np"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.4.4",
                     "ports": [{"port": 80, "nodePort": 30080}]}
        }));
        let model = build(&[np], &[]);
        assert_eq!(model.ports[0].node_port, Some(30080));
        assert_eq!(model.ports[0].port_name, "");
        assert_eq!(model.ports[0].name_string(), "default/np");
    }

    #[test]
    fn malformed_fields_are_reported_not_fatal() {
        let bad = svc(json!({
            "metadata": {"namespace": "default", "name": "bad"},
            "spec": {"clusterIP": "10.96.9.300", "ports": [{"port": 80}]}
        }));
        let odd = svc(json!({
            "metadata": {"namespace": "default", "name": "odd"},
            "spec": {"clusterIP": "10.96.9.9", "ports": [
                {"name": "a", "port": 70000},
                {"name": "b", "port": 80, "protocol": "ICMP"},
                {"name": "c", "port": 81}]}
        }));
        let s = slice(json!({
            "metadata": {"namespace": "default", "name": "odd-1",
                         "labels": {"kubernetes.io/service-name": "odd"}},
            "addressType": "IPv4",
            "ports": [{"name": "c", "port": 8081}],
            "endpoints": [{"addresses": ["not-an-ip"]}, {"addresses": ["10.244.0.3"]}],
        }));
        let model = build(&[bad, odd], &[s]);
        assert_eq!(model.ports.len(), 1);
        assert_eq!(model.ports[0].port_name, "c");
        assert_eq!(model.ports[0].endpoints.len(), 1);
        let problems = model.problems.join("\n");
        for needle in ["10.96.9.300", "70000", "ICMP", "not-an-ip"] {
            assert!(problems.contains(needle), "{needle} missing in {problems}");
        }
    }

    #[test]
    fn slices_of_other_services_or_families_are_ignored() {
        let other = slice(json!({
            "metadata": {"namespace": "other", "name": "web-x",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.7.7"]}],
        }));
        let v6 = slice(json!({
            "metadata": {"namespace": "default", "name": "web-6",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv6",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["fd00::7"]}],
        }));
        let model = build(&[web()], &[other, v6]);
        assert!(model.ports[0].endpoints.is_empty());
    }
}

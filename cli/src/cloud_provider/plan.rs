//! What a LoadBalancer Service asks of the cloud provider, as cloud-provider-kind reads it
//! (`pkg/loadbalancer/server.go`, `proxy.go`): which Services get a load balancer, the name of
//! its container, the forwards from each Service port to the nodes' NodePorts, and the status
//! written back.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Node, Service};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::proxy::{Forward, Protocol};

/// The Node label that keeps a node out of external load balancers (the service
/// controller's `node.kubernetes.io/exclude-from-external-load-balancers`).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A Service the cloud provider serves: `type: LoadBalancer` with no `loadBalancerClass`
/// (a class names another implementation; the service controller leaves it alone).
pub fn wants_load_balancer(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

/// `namespace/name` of a Service.
pub fn service_key(svc: &Service) -> String {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The load balancer's container: a prefix and the first 6 bytes of the SHA-256 of
/// `cluster/namespace/name`, in hex (cloud-provider-kind's `loadBalancerName`, with minikind's
/// prefix for its `kindccm`).
pub fn container_name(cluster: &str, service_key: &str) -> String {
    let digest = Sha256::digest(format!("{cluster}/{service_key}").as_bytes());
    format!("minikindccm-{}", hex::encode(&digest[..6]))
}

/// The nodes' InternalIPs the proxy forwards to, in name order, without excluded nodes.
fn node_addresses(nodes: &[Node]) -> Vec<IpAddr> {
    let mut nodes: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .collect();
    nodes.sort_by_key(|n| n.metadata.name.clone());
    nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flat_map(|a| a.iter())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse::<IpAddr>().ok())
        .filter(IpAddr::is_ipv4)
        .collect()
}

/// One forward per TCP/UDP Service port (cloud-provider-kind skips SCTP), listening on the
/// Service port and sending to that port's NodePort on every node.
pub fn forwards(svc: &Service, nodes: &[Node]) -> Vec<Forward> {
    let addresses = node_addresses(nodes);
    let mut out: Vec<Forward> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter_map(|p| {
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                _ => return None,
            };
            let node_port = u16::try_from(p.node_port?).ok()?;
            Some(Forward {
                protocol,
                port: u16::try_from(p.port).ok()?,
                backends: addresses
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, node_port))
                    .collect(),
            })
        })
        .collect();
    out.sort();
    out
}

/// A digest of the forwards, kept on the container as a label: a change of ports or nodes
/// replaces the container (keeping its address).
pub fn config_digest(forwards: &[Forward]) -> String {
    let text: Vec<String> = forwards.iter().map(ToString::to_string).collect();
    hex::encode(&Sha256::digest(text.join(" ").as_bytes())[..8])
}

/// `status.loadBalancer` with the container's address, as cloud-provider-kind's
/// `GetLoadBalancer` reports it: `ipMode: Proxy` (the address is a proxy's, so kube-proxy
/// programs nothing for it) and the Service's ports.
pub fn status(svc: &Service, ip: &str) -> Value {
    let ports: Vec<Value> = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| json!({"port": p.port, "protocol": p.protocol.as_deref().unwrap_or("TCP")}))
        .collect();
    json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "Proxy", "ports": ports}]}})
}

/// The addresses in the Service's `status.loadBalancer.ingress` now.
pub fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn node(name: &str, ip: &str, exclude: bool) -> Node {
        let labels = if exclude {
            format!("labels: {{{EXCLUDE_LABEL}: ''}}")
        } else {
            String::new()
        };
        serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, {labels}}}\nstatus:\n  addresses:\n  - {{type: InternalIP, address: {ip}}}\n  - {{type: Hostname, address: {name}}}\n"
        ))
        .unwrap()
    }

    const WEB: &str = "
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 31080, protocol: TCP}
  - {name: dns, port: 53, nodePort: 31053, protocol: UDP}
  - {name: sctp, port: 9, nodePort: 31009, protocol: SCTP}
";

    #[test]
    fn only_class_less_load_balancers_are_served() {
        assert!(wants_load_balancer(&svc(WEB)));
        assert!(!wants_load_balancer(&svc(
            "metadata: {name: a}\nspec: {type: NodePort}"
        )));
        assert!(!wants_load_balancer(&svc(
            "metadata: {name: a}\nspec: {type: LoadBalancer, loadBalancerClass: example.com/other}"
        )));
    }

    #[test]
    fn the_name_is_a_hash_of_cluster_namespace_and_name() {
        let hex = hex::encode(&Sha256::digest(b"c1/shop/web")[..6]);
        assert_eq!(
            container_name("c1", "shop/web"),
            format!("minikindccm-{hex}")
        );
        assert_ne!(
            container_name("c2", "shop/web"),
            container_name("c1", "shop/web")
        );
        assert_eq!(service_key(&svc(WEB)), "shop/web");
    }

    #[test]
    fn each_tcp_and_udp_port_forwards_to_every_nodes_node_port() {
        let nodes = [
            node("w2", "172.18.0.4", false),
            node("cp", "172.18.0.2", false),
            node("w1", "172.18.0.3", true),
        ];
        let f: Vec<String> = forwards(&svc(WEB), &nodes)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            f,
            [
                "TCP:80=172.18.0.2:31080,172.18.0.4:31080",
                "UDP:53=172.18.0.2:31053,172.18.0.4:31053"
            ]
        );
        let fw = forwards(&svc(WEB), &nodes);
        assert_eq!(config_digest(&fw), config_digest(&fw));
        assert_ne!(config_digest(&fw), config_digest(&fw[..1]));
    }

    #[test]
    fn status_is_cloud_provider_kinds() {
        let s = svc(WEB);
        assert!(ingress_ips(&s).is_empty());
        let want = status(&s, "172.18.0.9");
        assert_eq!(
            want,
            json!({"loadBalancer": {"ingress": [{"ip": "172.18.0.9", "ipMode": "Proxy", "ports": [
                {"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"},
                {"port": 9, "protocol": "SCTP"}]}]}})
        );
        let mut with = s.clone();
        with.status = Some(serde_json::from_value(want.clone()).unwrap());
        assert_eq!(ingress_ips(&with), ["172.18.0.9"]);
    }
}

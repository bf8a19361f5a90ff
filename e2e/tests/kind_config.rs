//! A KIND user's node options: `extraPortMappings` publish a node port on the host (a
//! NodePort Service answers there), `extraMounts` bind a host folder into the node, `labels`
//! and kubeadm `node-labels` land on the Node object — and a node restart keeps all of them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use minikind_test_support::{Cluster, docker, eventually};

/// The NodePort the test's Service takes (in the default range 30000-32767).
const NODE_PORT: u16 = 30053;

/// A port free on the host's loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One A query over TCP (DNS's 2-byte length framing); the answers' addresses.
fn ask_tcp(server: SocketAddr, name: &str) -> Option<Vec<String>> {
    let mut m = Message::query();
    m.metadata.id = 4711;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    let q = m.to_vec().ok()?;
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(&(q.len() as u16).to_be_bytes()).ok()?;
    s.write_all(&q).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    let reply = Message::from_vec(&buf).ok()?;
    (reply.metadata.response_code == ResponseCode::NoError).then(|| {
        reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect()
    })
}

fn node_labels(c: &Cluster, node: &str) -> serde_json::Value {
    let out = c.minikind_ok(&["get", "node", node, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["metadata"]["labels"].clone()
}

#[test]
fn port_mappings_mounts_and_labels_work_and_survive_a_restart() {
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("hello"), "from the host\n").unwrap();
    let host_port = free_port();
    let c = Cluster::create(
        "e2e-kindcfg",
        &format!(
            "nodes:
- role: control-plane
  labels:
    tier: gold
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: \"ingress-ready=true\"
  extraPortMappings:
  - containerPort: {NODE_PORT}
    hostPort: {host_port}
    listenAddress: 127.0.0.1
    protocol: TCP
  extraMounts:
  - hostPath: {}
    containerPath: /data
    readOnly: true
dns:
  upstream: lab
",
            host_dir.path().display()
        ),
    );
    let cp = c.node("control-plane");
    // The app behind the NodePort: the cluster DNS itself, over TCP.
    let svc = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: dns-nodeport
  namespace: kube-system
spec:
  type: NodePort
  selector:
    k8s-app: kube-dns
  ports:
  - name: dns-tcp
    protocol: TCP
    port: 53
    targetPort: 53
    nodePort: {NODE_PORT}
"
    );
    let manifest = host_dir.path().join("svc.yaml");
    std::fs::write(&manifest, svc).unwrap();
    c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);

    let check = |when: &str| {
        let at: SocketAddr = format!("127.0.0.1:{host_port}").parse().unwrap();
        let answers = eventually(
            &format!("{when}: the NodePort answering at {at}"),
            Duration::from_secs(60),
            || ask_tcp(at, "kubernetes.default.svc.cluster.local."),
        );
        assert_eq!(answers, ["10.96.0.1"], "{when}");
        let labels = node_labels(&c, &cp);
        assert_eq!(labels["ingress-ready"], "true", "{when}: {labels}");
        assert_eq!(labels["tier"], "gold", "{when}: {labels}");
        assert_eq!(
            c.exec_ok(&cp, &["cat", "/data/hello"]),
            "from the host\n",
            "{when}"
        );
        // Read-only, as kind's `:ro` bind makes it.
        let mounts = docker(&["inspect", "-f", "{{json .Mounts}}", &cp]);
        let mounts: serde_json::Value = serde_json::from_str(&mounts.stdout).unwrap();
        let data = mounts
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Destination"] == "/data")
            .unwrap_or_else(|| panic!("{when}: no /data mount: {mounts}"));
        assert_eq!(data["RW"], false, "{when}: {data}");
    };
    check("after create");

    let r = docker(&["restart", &cp]);
    assert!(r.ok, "{}", r.stderr);
    check("after a restart");
}

//! A KIND user's node options: `extraPortMappings` publish a node port on the host (a
//! NodePort Service answers there), `extraMounts` bind a host folder into the node, `labels`
//! and kubeadm `node-labels` land on the Node object — and a node restart keeps all of them;
//! kind's ingress-guide config, unchanged but for its host ports, reaches pods' `hostPort`s.

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

/// `GET /` over HTTP/1.0 at `at`; the body when the status is 200.
fn http_get(at: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&at, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    // busybox's httpd answers HTTP/1.1 whatever the request's version.
    let status = head.lines().next()?;
    (status.starts_with("HTTP/1.") && status.split(' ').nth(1) == Some("200"))
        .then(|| body.to_string())
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

/// An HTTP server pod (busybox's `httpd` in the tools image) serving `text` on `port`, with
/// `hostPort` `host_port`, on the node the ingress guide labels (as ingress-nginx's kind
/// manifest selects it, tolerating the control plane's taints).
fn web_pod(name: &str, text: &str, port: u16, host_port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeSelector:
    ingress-ready: \"true\"
  tolerations:
  - key: node-role.kubernetes.io/control-plane
    operator: Exists
    effect: NoSchedule
  containers:
  - name: httpd
    image: {image}
    command: [sh, -c, 'mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www']
    ports:
    - containerPort: {port}
      hostPort: {host_port}
      protocol: TCP
",
        image = minikind_contract::TOOLS_IMAGE
    )
}

#[test]
fn the_ingress_guides_config_reaches_pods_host_ports() {
    let (http, https) = (free_port(), free_port());
    // kind's ingress guide (kind.sigs.k8s.io/docs/user/ingress), host ports 80/443 swapped for
    // free ones so the test needs no privileged port and runs beside others.
    let c = Cluster::create_kind(
        "kindcfg-ingress",
        &format!(
            "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: \"ingress-ready=true\"
  extraPortMappings:
  - containerPort: 80
    hostPort: {http}
    protocol: TCP
  - containerPort: 443
    hostPort: {https}
    protocol: TCP
"
        ),
    );
    let cp = c.node("control-plane");
    let dir = tempfile::tempdir().unwrap();
    for (name, text, port, host_port) in [
        ("web", "hello-80", 8080, 80),
        ("tls", "hello-443", 8443, 443),
    ] {
        let manifest = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&manifest, web_pod(name, text, port, host_port)).unwrap();
        c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    }
    for (pod, host_port, text) in [("web", http, "hello-80"), ("tls", https, "hello-443")] {
        c.wait_pod_ready("default", pod);
        let at: SocketAddr = format!("127.0.0.1:{host_port}").parse().unwrap();
        let body = eventually(
            &format!("pod {pod}'s hostPort answering at {at}"),
            Duration::from_secs(60),
            || http_get(at),
        );
        assert_eq!(body, format!("{text}\n"));
    }
    // On the node itself, 127.0.0.1:80 reaches the pod too (portmap's localhost rule and
    // route_localnet on the pod bridge).
    let local = c.exec_ok(
        &cp,
        &["busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:80/"],
    );
    assert_eq!(local, "hello-80\n");
    let nat = c.exec_ok(&cp, &["iptables-save", "-t", "nat"]);
    assert!(
        nat.contains("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        "{nat}"
    );

    // The pod goes, and its host port with it.
    // httpd is its pod's PID 1 and ignores SIGTERM: a short grace period.
    c.kubectl_ok(&["delete", "pod", "web", "--grace-period=1"]);
    let at: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    eventually(
        &format!("{at} no longer answering once pod web is gone"),
        Duration::from_secs(60),
        || http_get(at).is_none().then_some(()),
    );
    let nat = c.exec_ok(&cp, &["iptables-save", "-t", "nat"]);
    let dnat: Vec<&str> = nat
        .lines()
        .filter(|l| l.starts_with("-A CNI-HOSTPORT-DNAT "))
        .collect();
    assert_eq!(
        dnat.len(),
        1,
        "only pod tls's entry rule is left: {dnat:#?}"
    );
    assert!(dnat[0].contains("--dports 443 "), "{dnat:#?}");
}

/// Ends `minikind cloud-provider` (the test's own child, by its PID) however the test ends.
struct CloudProvider(std::process::Child);

impl Drop for CloudProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn container_exists(name: &str) -> bool {
    docker(&["inspect", "-f", "{{.Name}}", name]).ok
}

#[test]
fn load_balancer_services_get_an_address_on_the_cluster_network() {
    let c = Cluster::create(
        "kindcfg-lb",
        "nodes:\n- role: control-plane\n- role: worker\ndns:\n  upstream: lab\n",
    );
    let _provider = CloudProvider(
        minikind_test_support::minikind_command()
            .args(["cloud-provider", "--name", &c.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting minikind cloud-provider"),
    );
    let app = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web}}
spec:
  containers:
  - name: httpd
    image: {image}
    command: [sh, -c, 'mkdir -p /www && echo hello-lb > /www/index.html && exec httpd -f -p 8080 -h /www']
    ports:
    - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports:
  - name: http
    port: 80
    targetPort: 8080
",
        image = minikind_contract::TOOLS_IMAGE
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.yaml");
    std::fs::write(&manifest, app).unwrap();
    c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_pod_ready("default", "web");

    let ip = eventually(
        "Service web's load balancer address",
        Duration::from_secs(90),
        || {
            let out = c.kubectl(
                &[
                    "get",
                    "svc",
                    "web",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ],
                None,
            );
            (out.ok && !out.stdout.trim().is_empty()).then(|| out.stdout.trim().to_string())
        },
    );
    // kubectl shows it as the Service's external address.
    let table = c.kubectl_ok(&["get", "svc", "web"]);
    let row = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(row[1], "LoadBalancer", "{table}");
    assert_eq!(row[3], ip, "{table}");
    let mode = c.kubectl_ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ipMode}",
    ]);
    assert_eq!(mode, "Proxy");

    // The address is a container on the cluster network, labelled with the cluster.
    let lbs = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=dev.minikind.cluster={}", c.name),
        "--filter",
        "label=dev.minikind.role=loadbalancer",
        "--format",
        "{{.Names}}",
    ]);
    let lb: Vec<&str> = lbs.stdout.lines().collect();
    assert_eq!(lb.len(), 1, "{}", lbs.stdout);
    let lb = lb[0].to_string();
    let lb_ip = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"minikind-{}\").IPAddress}}}}",
            c.name
        ),
        &lb,
    ]);
    assert_eq!(lb_ip.stdout.trim(), ip);

    // Reached from the host, and from another container on the network (a node).
    let at: SocketAddr = format!("{ip}:80").parse().unwrap();
    let body = eventually(
        &format!("the app through {at}"),
        Duration::from_secs(60),
        || http_get(at),
    );
    assert_eq!(body, "hello-lb\n");
    let from_node = c.exec_ok(
        &c.node("worker"),
        &["busybox", "wget", "-q", "-O", "-", &format!("http://{ip}/")],
    );
    assert_eq!(from_node, "hello-lb\n");

    // The Service goes, and its load balancer with it.
    c.kubectl_ok(&["delete", "svc", "web"]);
    eventually(
        &format!("{lb} removed with Service web"),
        Duration::from_secs(30),
        || (!container_exists(&lb)).then_some(()),
    );

    // Another one is removed with the cluster.
    c.kubectl_ok(&[
        "expose",
        "pod",
        "web",
        "--name",
        "web2",
        "--type",
        "LoadBalancer",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    let lb2 = eventually(
        "Service web2's load balancer",
        Duration::from_secs(60),
        || {
            let out = docker(&[
                "ps",
                "-q",
                "--filter",
                "label=dev.minikind.loadbalancer.service=default/web2",
                "--filter",
                &format!("label=dev.minikind.cluster={}", c.name),
            ]);
            let id = out.stdout.trim().to_string();
            (!id.is_empty()).then_some(id)
        },
    );
    c.minikind_ok(&["delete", "cluster"]);
    assert!(!container_exists(&lb2), "{lb2} outlived its cluster");
}

#[test]
fn kube_proxy_mode_nftables_serves_services_from_kube_proxys_table() {
    let c = Cluster::create(
        "kindcfg-nft",
        "networking:\n  kubeProxyMode: nftables\nnodes:\n- role: control-plane\n- role: worker\ndns:\n  upstream: lab\n",
    );
    // The create waited for a pod on every node to resolve kubernetes.default through the
    // kube-dns ClusterIP: in this mode that DNAT is kube-proxy's nftables table, and iptables
    // holds no service rules at all.
    for node in [c.node("control-plane"), c.node("worker")] {
        let table = c.exec_ok(&node, &["nft", "list", "table", "ip", "kube-proxy"]);
        assert!(
            table.contains("chain service-FY5PMXPG-kube-system/kube-dns/udp/dns {"),
            "{node}: {table}"
        );
        assert!(table.contains("numgen random mod"), "{node}: {table}");
        assert!(table.contains("map service-ips {"), "{node}: {table}");
        let nat = c.exec_ok(&node, &["iptables-save", "-t", "nat"]);
        assert!(!nat.contains("KUBE-SERVICES"), "{node}: {nat}");
    }
}

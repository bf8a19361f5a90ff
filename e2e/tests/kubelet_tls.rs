//! The kubelet port on a real cluster: every node's kubelet serves a certificate of the
//! cluster CA for its name and address (the control-plane node's issued by its agent, a
//! worker's by `minikind kubelet-cert` on the control-plane node and copied at join), and
//! `minikind exec` into a pod on the worker goes through the API server's proxy, which presents
//! its kubelet client certificate. What the port refuses to others is in the kubelet crate's
//! `kubelet_endpoint.rs`.

use minikind_contract::KUBELET_SERVING_PEM;
use minikind_test_support::Cluster;

const HERMETIC: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\n";

#[test]
fn workers_get_a_kubelet_serving_certificate_and_exec_reaches_their_pods() {
    let c = Cluster::create(
        "e2e-kubelet-tls",
        &format!("nodes:\n- role: control-plane\n- role: worker\n{HERMETIC}"),
    );
    let cp = c.node("control-plane");
    let worker = c.node("worker");
    for node in [&cp, &worker] {
        let pem = c.exec_ok(node, &["cat", KUBELET_SERVING_PEM]);
        assert!(pem.contains("BEGIN CERTIFICATE"), "{node}: {pem}");
        assert!(pem.contains("PRIVATE KEY"), "{node}");
    }
    // The worker never holds the CA's key.
    assert!(!c.exec(&worker, &["cat", "/var/lib/minikind/pki/ca.key"]).ok);

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: on-worker\nspec:\n  nodeName: {worker}\n  \
             containers:\n  - name: main\n    image: minikind/tools\n    command: [sleep, \"3600\"]\n"
        ),
    )
    .unwrap();
    c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_pod_ready("default", "on-worker");
    let r = c.pod_exec("on-worker", &["cat", "/etc/hostname"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), "on-worker");
}

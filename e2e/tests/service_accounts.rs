//! Service accounts on a real cluster: a pod's mounted token is its own service account's,
//! never the admin token; with it, a call through the `kubernetes` Service (from the node: the
//! pods' busybox wget has no TLS suite in common with the API server) is refused (403) what
//! RBAC does not grant; and cluster DNS keeps
//! answering with CoreDNS running as `kube-system/coredns` under kubeadm's `system:coredns`.

use minikind_test_support::Cluster;

const HERMETIC: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\n";
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn claims(token: &str) -> serde_json::Value {
    // The payload of a JWT, base64url without padding (decoded by hand: the e2e crate has no
    // base64 dependency and this is all it needs).
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in payload.bytes() {
        let v = alphabet.iter().position(|a| *a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    serde_json::from_slice(&out).expect("JSON claims")
}

#[test]
fn pods_get_their_own_token_and_rbac_refuses_what_it_does_not_grant() {
    let c = Cluster::create(
        "e2e-sa",
        &format!("nodes:\n- role: control-plane\n{HERMETIC}"),
    );
    let cp = c.node("control-plane");
    let admin = c.exec_ok(&cp, &["cat", "/var/lib/minikind/pki/admin.token"]);

    let dir = tempfile::tempdir().unwrap();
    let apply = |name: &str, yaml: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, yaml).unwrap();
        c.minikind_ok(&["apply", "-f", f.to_str().unwrap()]);
    };
    apply(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probe\nspec:\n  containers:\n  - name: main\n    \
         image: minikind/tools\n    command: [sleep, \"3600\"]\n",
    );
    c.wait_pod_ready("default", "probe");
    let r = c.pod_exec("probe", &["cat", &format!("{SA_DIR}/token")]);
    assert!(r.ok, "{}", r.stderr);
    let token = r.stdout.trim().to_string();
    assert_ne!(token, admin.trim(), "a pod holds the admin token");
    let cl = claims(&token);
    assert_eq!(cl["sub"], "system:serviceaccount:default:default");
    assert_eq!(cl["kubernetes.io"]["pod"]["name"], "probe");
    let ns = c.pod_exec("probe", &["cat", &format!("{SA_DIR}/namespace")]);
    assert_eq!(ns.stdout, "default");

    // With that token, to the API server's Service address from the node the pod runs on
    // (the pods' busybox wget cannot handshake with the server's TLS 1.2/1.3 suites): the
    // pinned kubectl, copied into this test's node, sends the raw requests.
    let kubectl = minikind_test_support::kubectl();
    let copied = minikind_test_support::docker(&[
        "cp",
        kubectl.to_str().unwrap(),
        &format!("{cp}:/usr/local/bin/kubectl"),
    ]);
    assert!(copied.ok, "{}", copied.stderr);
    let call = |path: &str| {
        c.exec(
            &cp,
            &[
                "/usr/local/bin/kubectl",
                "--server=https://10.96.0.1:443",
                "--certificate-authority=/var/lib/minikind/pki/ca.crt",
                "--token",
                &token,
                "get",
                "--raw",
                path,
            ],
        )
    };
    for (path, what) in [
        (
            "/api/v1/namespaces/kube-system/secrets",
            "cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\"",
        ),
        (
            "/api/v1/namespaces/kube-system/configmaps",
            "cannot list resource \"configmaps\" in API group \"\" in the namespace \"kube-system\"",
        ),
        (
            "/api/v1/namespaces/default/pods",
            "cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
        ),
    ] {
        let r = call(path);
        assert!(!r.ok, "{path} answered: {}", r.stdout);
        assert!(
            r.stderr.contains("Error from server (Forbidden)")
                && r.stderr
                    .contains("User \"system:serviceaccount:default:default\"")
                && r.stderr.contains(what),
            "{path}: {}",
            r.stderr
        );
    }
    // Discovery is open to every authenticated user (system:discovery).
    let r = call("/api");
    assert!(
        r.ok && r.stdout.contains("APIVersions"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // The admin token, from the same place, may list them.
    let r = c.exec(
        &cp,
        &[
            "/usr/local/bin/kubectl",
            "--server=https://10.96.0.1:443",
            "--certificate-authority=/var/lib/minikind/pki/ca.crt",
            "--token",
            admin.trim(),
            "get",
            "--raw",
            "/api/v1/namespaces/kube-system/configmaps",
        ],
    );
    assert!(
        r.ok && r.stdout.contains("coredns"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );

    // CoreDNS runs as kube-system/coredns and answers.
    for p in c.coredns_pods() {
        assert_eq!(p["spec"]["serviceAccountName"], "coredns", "{p}");
    }
    let r = c.exec(
        &cp,
        &[
            "dig",
            "@10.96.0.10",
            "kubernetes.default.svc.cluster.local",
            "+short",
            "+time=2",
            "+tries=3",
        ],
    );
    assert!(
        r.ok && r.stdout.trim() == "10.96.0.1",
        "{} {}",
        r.stdout,
        r.stderr
    );
    // A Service created now is seen by CoreDNS through its own token's list/watch.
    apply(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: late\nspec:\n  ports:\n  - port: 80\n",
    );
    minikind_test_support::eventually(
        "CoreDNS to answer for a new Service",
        std::time::Duration::from_secs(30),
        || {
            let r = c.exec(
                &cp,
                &[
                    "dig",
                    "@10.96.0.10",
                    "late.default.svc.cluster.local",
                    "+short",
                    "+time=2",
                ],
            );
            (r.ok && !r.stdout.trim().is_empty()).then_some(())
        },
    );
}

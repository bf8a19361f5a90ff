//! `minikind export logs` and `export kubeconfig`, as a CI job uses them after a failure.

use std::path::Path;

use minikind_test_support::Cluster;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn last_line(out: &str) -> &str {
    out.trim().lines().last().unwrap_or_default()
}

#[test]
fn logs_and_kubeconfig_are_exported_for_a_ci_artifact() {
    let cluster = Cluster::create("e2e-export", "");
    let cp = format!("{}-control-plane", cluster.name);
    let scratch = tempfile::tempdir().unwrap();

    // A folder.
    let dir = scratch.path().join("logs");
    let out = cluster.minikind_ok(&["export", "logs", dir.to_str().unwrap()]);
    // The status lines, then the path on a line of its own (the last).
    assert_eq!(last_line(&out), dir.to_str().unwrap());
    let info: serde_json::Value =
        serde_json::from_str(&read(&dir.join("docker-info.json"))).unwrap();
    assert!(info.get("ServerVersion").is_some(), "{info}");
    let inspect: serde_json::Value =
        serde_json::from_str(&read(&dir.join(&cp).join("inspect.json"))).unwrap();
    assert_eq!(inspect["Name"], format!("/{cp}"));
    assert!(read(&dir.join(&cp).join("container.log")).contains(minikind_contract::BOOT_COMPLETE));
    // kube-proxy's rules are in the flavour the node chose; both files are written.
    let rules = read(&dir.join(&cp).join("iptables-legacy.txt"))
        + &read(&dir.join(&cp).join("iptables-nft.txt"));
    assert!(rules.contains("KUBE-SERVICES"), "{rules}");
    assert!(rules.contains("DOCKER_OUTPUT"), "{rules}");
    assert!(read(&dir.join(&cp).join("resolv.conf")).contains("nameserver"));
    assert!(read(&dir.join(&cp).join("resolv.conf.original")).contains("127.0.0.11"));
    assert!(read(&dir.join(&cp).join("network.txt")).contains("# ip route"));
    assert!(read(&dir.join("objects/pods.yaml")).contains("coredns"));
    assert!(read(&dir.join("objects/configmaps.yaml")).contains("Corefile"));
    assert!(!dir.join("objects/secrets.yaml").exists());
    assert!(read(&dir.join("coredns/Corefile")).contains("kubernetes cluster.local"));
    let coredns_logs: Vec<_> = std::fs::read_dir(dir.join("pods"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kube-system_coredns-")
        })
        .collect();
    assert_eq!(coredns_logs.len(), 2, "one folder per CoreDNS replica");
    for d in coredns_logs {
        assert!(
            d.path().join("coredns.log").is_file(),
            "{}",
            d.path().display()
        );
    }
    if dir.join("errors.txt").exists() {
        panic!(
            "parts missing from a healthy cluster:\n{}",
            read(&dir.join("errors.txt"))
        );
    }

    // The same folder again: refused, nothing of it touched.
    let before = read(&dir.join("coredns/Corefile"));
    let r = cluster.minikind(&["export", "logs", dir.to_str().unwrap()]);
    assert!(!r.ok && r.stderr.contains("is not empty"), "{}", r.stderr);
    assert_eq!(read(&dir.join("coredns/Corefile")), before);

    // A tar.
    let packed = scratch.path().join("packed");
    let out = cluster.minikind_ok(&["export", "logs", packed.to_str().unwrap(), "--archive"]);
    assert_eq!(last_line(&out), format!("{}.tar", packed.display()));
    assert!(!packed.exists(), "the folder goes once packed");
    let mut archive = tar::Archive::new(std::fs::File::open(last_line(&out)).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&format!("packed/{cp}/container.log")),
        "{names:?}"
    );

    // export kubeconfig into a file of its own: context current, kubectl works with it.
    let kubeconfig = scratch.path().join("kubeconfig");
    cluster.minikind_ok(&[
        "export",
        "kubeconfig",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    let text = read(&kubeconfig);
    assert!(
        text.contains(&format!("current-context: minikind-{}", cluster.name)),
        "{text}"
    );
    let nodes = minikind_test_support::nodes_through(&kubeconfig).unwrap();
    assert!(nodes.contains(&format!("node/{cp}")), "{nodes}");
}

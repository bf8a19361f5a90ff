//! `minikind dns conformance` on a real two-node cluster (issue 17, item 2): every test of
//! kubernetes' test/e2e/network/dns.go passes, reported under its upstream name in the table and
//! the JUnit file, and every namespace the run made is gone afterwards; two prober images give
//! every lookup from a container of each (upstream's pair: a glibc and a
//! musl image); an external name the
//! lab upstream does not serve makes the external-resolution test fail with exit code 1 and a
//! trace in the JSON (through `--kubeconfig`/`--context`: the pod's side only). Hermetic:
//! internal network, lab upstream.

use std::time::Duration;

use minikind_test_support::images::{HostImages, glibc_probe_image, musl_probe_image};
use minikind_test_support::{Cluster, eventually};
use serde_json::Value;

const GLIBC_PROBER: &str = "minikind-e2e/glibc-prober:1";
const MUSL_PROBER: &str = "minikind-e2e/musl-prober:1";

/// Namespaces the runs made (`dns-<n>-<run>`) that still exist.
fn conformance_namespaces(c: &Cluster) -> Vec<String> {
    c.minikind_ok(&["get", "namespaces"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("dns-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn dns_conformance_passes_on_minikind_reports_upstream_names_and_cleans_up() {
    let c = Cluster::create(
        "e2e-dnsconf",
        "nodes:\n- role: control-plane\n- role: worker\nnetworking:\n  internal: true\n\
         dns:\n  upstream: lab\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("conformance.xml");

    let r = c.minikind(&[
        "dns",
        "conformance",
        "--parallel",
        "8",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("\n0 failed") || r.stdout.contains(" 0 failed\n"),
        "{}",
        r.stdout
    );
    for name in [
        "=== [sig-network] DNS should provide DNS for the cluster [Conformance]",
        "=== [sig-network] DNS should provide DNS for ExternalName services [Conformance]",
        "=== [sig-network] DNS should support configurable pod resolv.conf",
        "=== [sig-network] DNS HostNetwork should resolve DNS of partial qualified names for \
         services on hostNetwork pods with dnsPolicy: ClusterFirstWithHostNet [LinuxOnly]",
    ] {
        assert!(r.stdout.contains(name), "{name} missing:\n{}", r.stdout);
    }
    // The lookups the tests are made of: SRV of a named port, PTR of a ClusterIP, /etc/hosts
    // through getent, the CNAME of an ExternalName service.
    for row in ["SRV", "PTR", "getent", "CNAME"] {
        assert!(
            r.stdout
                .lines()
                .any(|l| l.contains(row) && l.contains(" pass ")),
            "no passing {row} row:\n{}",
            r.stdout
        );
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("name=\"minikind dns conformance\""), "{xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
    let classes: std::collections::BTreeSet<&str> = xml
        .split("classname=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(classes.len(), 16, "{classes:?}");
    assert!(classes.iter().all(|c| c.starts_with("[sig-network] DNS ")));
    eventually(
        "the run's namespaces to be deleted",
        Duration::from_secs(60),
        || conformance_namespaces(&c).is_empty().then_some(()),
    );

    // Upstream's two probers, a glibc and a musl image (getent from each C library, ISC's dig
    // in both): one querier container per image, every lookup of every test made from each,
    // and all pass.
    let _images = HostImages::new(&[GLIBC_PROBER, MUSL_PROBER]);
    glibc_probe_image(GLIBC_PROBER);
    musl_probe_image(MUSL_PROBER);
    c.minikind_ok(&["load", "docker-image", GLIBC_PROBER, MUSL_PROBER]);
    let r = c.minikind(&[
        "dns",
        "conformance",
        "--parallel",
        "8",
        "--image",
        GLIBC_PROBER,
        "--image",
        MUSL_PROBER,
        "-o",
        "json",
    ]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    let failed: Vec<&Value> = results.iter().filter(|o| o["passed"] != true).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let from = |container: &str| {
        results
            .iter()
            .filter(|o| {
                o["from"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("({container})"))
            })
            .count()
    };
    let (glibc, musl) = (from("glibc-prober"), from("musl-prober"));
    assert!(
        glibc > 0 && glibc == musl && glibc + musl == results.len(),
        "glibc {glibc}, musl {musl}, all {}",
        results.len()
    );
    let tests: std::collections::BTreeSet<&str> =
        results.iter().filter_map(|o| o["test"].as_str()).collect();
    assert_eq!(tests.len(), 16, "{tests:?}");
    for via in ["getent", "dig"] {
        assert!(
            results.iter().any(|o| o["tool"] == via
                && o["from"].as_str().unwrap().ends_with("(musl-prober)")),
            "no {via} lookup from the musl prober"
        );
    }
    eventually(
        "the prober run's namespaces to be deleted",
        Duration::from_secs(60),
        || conformance_namespaces(&c).is_empty().then_some(()),
    );

    // Through the kubeconfig: a name the lab upstream does not serve fails the external test.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, c.minikind_ok(&["get", "kubeconfig"])).unwrap();
    let r = minikind_test_support::minikind(&[
        "dns",
        "conformance",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        &format!("minikind-{}", c.name),
        "--focus",
        "[Provider:GCE]",
        "--external-names",
        "www.example.test,nope.example.test",
        "--timeout",
        "5s",
        "-o",
        "json",
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("DNS checks failed"), "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    let failed: Vec<&Value> = results.iter().filter(|o| o["passed"] == false).collect();
    assert_eq!(failed.len(), 2, "udp and tcp: {}", r.stdout);
    for f in failed {
        assert_eq!(f["name"], "nope.example.test");
        assert_eq!(
            f["test"],
            "[sig-network] DNS should provide DNS for the cluster [Provider:GCE]"
        );
        assert!(f["message"].as_str().unwrap().contains("NXDOMAIN"), "{f}");
        assert!(
            f["trace"]["notes"][0]
                .as_str()
                .unwrap()
                .contains("kubeconfig only"),
            "{f}"
        );
    }
    assert!(
        results
            .iter()
            .any(|o| o["name"] == "www.example.test" && o["passed"] == true)
    );
    eventually(
        "the failed run's namespace to be deleted",
        Duration::from_secs(60),
        || conformance_namespaces(&c).is_empty().then_some(()),
    );
}

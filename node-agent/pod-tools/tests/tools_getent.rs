//! getent hosts / ahostsv4 against a hosts file and a fake DNS server on loopback.

mod tools_support;

use minikind_pod_tools::getent;
use tools_support::{FakeDns, cluster_zone};

fn getent(files: &tools_support::Files, args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = getent::run(&args, &files.env, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

const HOSTS: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
    10.244.1.5\tweb-0.web.default.svc.cluster.local\tweb-0\n";
const POD: &str =
    "search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

#[test]
fn tools_getent_hosts_file_first() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(POD, HOSTS);
    let (code, out, _) = getent(&files, &["hosts", "web-0"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "10.244.1.5      web-0.web.default.svc.cluster.local web-0\n"
        )
    );
    // hosts asks IPv6 first: localhost has ::1 in the file.
    let (_, out, _) = getent(&files, &["hosts", "localhost"]);
    assert_eq!(
        out,
        "::1             localhost ip6-localhost ip6-loopback\n"
    );
    let (_, out, _) = getent(&files, &["ahostsv4", "localhost"]);
    assert_eq!(
        out,
        "127.0.0.1       STREAM localhost\n127.0.0.1       DGRAM  \n127.0.0.1       RAW    \n"
    );
}

#[test]
fn tools_getent_dns_with_search_list() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(POD, HOSTS);
    let (code, out, _) = getent(&files, &["hosts", "kubernetes.default"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "10.96.0.1       kubernetes.default.svc.cluster.local\n"
    );
    // glibc order: AAAA over the whole search list first, then A.
    let questions = server.questions();
    assert_eq!(
        questions[0],
        "kubernetes.default.default.svc.cluster.local. AAAA udp"
    );
    assert_eq!(
        questions[4],
        "kubernetes.default.default.svc.cluster.local. A udp"
    );
    assert_eq!(questions[5], "kubernetes.default.svc.cluster.local. A udp");

    let (_, out, _) = getent(&files, &["ahostsv4", "alias.example.test"]);
    assert_eq!(
        out,
        "192.0.2.10      STREAM www.example.test\n192.0.2.10      DGRAM  \n192.0.2.10      RAW    \n"
    );
    let (_, out, _) = getent(&files, &["hosts", "alias.example.test"]);
    assert_eq!(out, "2001:db8::10    www.example.test alias.example.test\n");
    let (_, out, _) = getent(&files, &["hosts", "10.96.0.1"]);
    assert_eq!(
        out,
        "10.96.0.1       kubernetes.default.svc.cluster.local\n"
    );
}

#[test]
fn tools_getent_not_found_and_usage() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(POD, HOSTS);
    let (code, out, _) = getent(&files, &["hosts", "nothing-here"]);
    assert_eq!((code, out.as_str()), (2, ""));
    let (code, _, err) = getent(&files, &["passwd", "root"]);
    assert_eq!(code, 1);
    assert_eq!(err, "Unknown database: passwd\n");
    let (code, _, err) = getent(&files, &[]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Usage: getent"));
    // ahostsv4 of an address is the address itself.
    let (_, out, _) = getent(&files, &["ahostsv4", "10.1.2.3"]);
    assert!(
        out.starts_with("10.1.2.3        STREAM 10.1.2.3\n"),
        "{out}"
    );
}

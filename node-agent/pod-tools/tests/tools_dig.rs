//! dig against a fake DNS server on loopback.

mod tools_support;

use minikind_pod_tools::dig;
use tools_support::{FakeDns, cluster_zone};

fn dig(files: &tools_support::Files, args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let code = dig::run(&args, &files.env, &mut out);
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn tools_dig_full_output_like_bind() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files("", "");
    let (code, out) = dig(&files, &["www.example.test"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: "),
        "{out}"
    );
    assert!(
        out.contains(";; flags: qr aa rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0"),
        "{out}"
    );
    assert!(
        out.contains(";; QUESTION SECTION:\n;www.example.test.\t\tIN\tA\n"),
        "{out}"
    );
    assert!(
        out.contains(";; ANSWER SECTION:\nwww.example.test.\t30\tIN\tA\t192.0.2.10\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            ";; SERVER: 127.0.0.1#{}(127.0.0.1) (UDP)",
            server.addr.port()
        )),
        "{out}"
    );
    assert!(out.contains(";; MSG SIZE  rcvd: "), "{out}");
    assert_eq!(server.questions(), vec!["www.example.test. A udp"]);
}

#[test]
fn tools_dig_short_server_and_port() {
    let server = FakeDns::start(cluster_zone());
    // The resolv.conf names a dead server; @server and -p win.
    let files = tools_support::files("nameserver 127.0.0.1\n", "");
    let port = server.addr.port().to_string();
    let (code, out) = dig(
        &files,
        &["@127.0.0.1", "-p", &port, "alias.example.test", "+short"],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "www.example.test.\n192.0.2.10\n");
    let (_, out) = dig(
        &files,
        &[
            "@127.0.0.1",
            "-p",
            &port,
            "www.example.test",
            "AAAA",
            "+short",
        ],
    );
    assert_eq!(out, "2001:db8::10\n");
    let (_, out) = dig(
        &files,
        &["@127.0.0.1", "-p", &port, "-x", "10.96.0.1", "+short"],
    );
    assert_eq!(out, "kubernetes.default.svc.cluster.local.\n");
}

#[test]
fn tools_dig_noall_answer_and_types() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files("", "");
    let (_, out) = dig(
        &files,
        &[
            "+noall",
            "+answer",
            "SRV",
            "_http._tcp.busybox-svc.default.svc.cluster.local",
        ],
    );
    assert_eq!(
        out,
        "_http._tcp.busybox-svc.default.svc.cluster.local.\t30\tIN\tSRV\t0 100 1234 busybox-svc.default.svc.cluster.local.\n"
    );
    let (_, out) = dig(
        &files,
        &["dns-version.cluster.local", "TXT", "+noall", "+answer"],
    );
    assert_eq!(
        out,
        "dns-version.cluster.local.\t28800\tIN\tTXT\t\"1.1.0\"\n"
    );
}

#[test]
fn tools_dig_search_applies_ndots() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(
        "search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
        "",
    );
    let (code, out) = dig(&files, &["+search", "+short", "kubernetes"]);
    assert_eq!((code, out.as_str()), (0, "10.96.0.1\n"));
    let (_, out) = dig(&files, &["+search", "+short", "www.example.test"]);
    assert_eq!(out, "192.0.2.10\n");
    let questions = server.questions();
    assert_eq!(
        questions,
        vec![
            "kubernetes.default.svc.cluster.local. A udp",
            "www.example.test.default.svc.cluster.local. A udp",
            "www.example.test.svc.cluster.local. A udp",
            "www.example.test.cluster.local. A udp",
            "www.example.test. A udp",
        ]
    );
    // Without +search the name is asked as is.
    let (_, out) = dig(&files, &["kubernetes", "+noall", "+comments"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
}

#[test]
fn tools_dig_tcp_and_truncation_fallback() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files("", "");
    let (_, out) = dig(&files, &["+tcp", "www.example.test"]);
    assert!(out.contains("(TCP)"), "{out}");
    let (_, out) = dig(&files, &["big.example.test", "+short"]);
    assert_eq!(out, ";; Truncated, retrying in TCP mode.\n192.0.2.20\n");
    assert_eq!(
        server.questions(),
        vec![
            "www.example.test. A tcp",
            "big.example.test. A udp",
            "big.example.test. A tcp"
        ]
    );
}

#[test]
fn tools_dig_no_server_and_bad_arguments() {
    // A loopback UDP port with nothing behind it.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    drop(socket);
    let files = tools_support::files("nameserver 127.0.0.1\n", "");
    let (code, out) = dig(
        &files,
        &["-p", &port, "+time=1", "+tries=1", "x.example.test"],
    );
    assert_eq!(code, 9, "{out}");
    assert!(out.contains(";; no servers could be reached"), "{out}");
    let (code, out) = dig(&files, &["+bogus", "x"]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("Invalid option: +bogus\nUsage: dig"),
        "{out}"
    );
    let missing = tools_support::Files {
        env: minikind_pod_tools::ToolEnv {
            resolv_conf: files.dir.path().join("nope"),
            hosts: files.dir.path().join("nope"),
            dns_port: 53,
        },
        dir: tempfile::tempdir().unwrap(),
    };
    let (code, out) = dig(&missing, &["x"]);
    assert_eq!(code, 10);
    assert!(out.contains("nope"), "{out}");
}

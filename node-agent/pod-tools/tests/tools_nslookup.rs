//! nslookup (busybox's output) against a fake DNS server on loopback.

mod tools_support;

use minikind_pod_tools::nslookup;
use tools_support::{FakeDns, cluster_zone};

fn nslookup(files: &tools_support::Files, args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let code = nslookup::run(&args, &files.env, &mut out);
    (code, String::from_utf8(out).unwrap())
}

const POD: &str =
    "search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

#[test]
fn tools_nslookup_service_name_through_search_list() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(POD, "");
    let (code, out) = nslookup(&files, &["busybox-svc"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        format!(
            "Server:\t\t127.0.0.1\nAddress:\t127.0.0.1:{}\n\nName:\tbusybox-svc.default.svc.cluster.local\nAddress: 10.96.123.4\n\n",
            server.addr.port()
        )
    );
    // Another namespace's service is found only as svc.ns (seed 003).
    let (code, out) = nslookup(&files, &["web"]);
    assert_eq!(code, 1);
    assert!(
        out.ends_with("** server can't find web: NXDOMAIN\n\n"),
        "{out}"
    );
    let (code, out) = nslookup(&files, &["web.hogehoge"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Name:\tweb.hogehoge.svc.cluster.local\nAddress: 10.96.81.224\n"),
        "{out}"
    );
}

#[test]
fn tools_nslookup_types_cname_ptr_and_aaaa() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files("", "");
    let (_, out) = nslookup(
        &files,
        &[
            "-type=SRV",
            "_http._tcp.busybox-svc.default.svc.cluster.local",
        ],
    );
    assert!(out.contains("_http._tcp.busybox-svc.default.svc.cluster.local\tservice = 0 100 1234 busybox-svc.default.svc.cluster.local.\n"), "{out}");
    let (_, out) = nslookup(&files, &["alias.example.test"]);
    assert!(out.contains("alias.example.test\tcanonical name = www.example.test\nName:\twww.example.test\nAddress: 192.0.2.10\n"), "{out}");
    assert!(
        out.contains("Name:\twww.example.test\nAddress: 2001:db8::10\n"),
        "{out}"
    );
    let (_, out) = nslookup(&files, &["10.96.0.1"]);
    assert!(
        out.contains("1.0.96.10.in-addr.arpa\tname = kubernetes.default.svc.cluster.local\n"),
        "{out}"
    );
}

#[test]
fn tools_nslookup_server_argument_and_failures() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files("", "");
    let (code, out) = nslookup(&files, &["broken.example.test"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("** server can't find broken.example.test: SERVFAIL"),
        "{out}"
    );
    let (code, out) = nslookup(&files, &["-type=TXT", "www.example.test"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("*** Can't find www.example.test: No answer"),
        "{out}"
    );
    let (code, out) = nslookup(&files, &[]);
    assert_eq!(code, 1);
    assert!(out.starts_with("Usage: nslookup"), "{out}");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = format!("-port={}", socket.local_addr().unwrap().port());
    drop(socket);
    let (code, out) = nslookup(
        &files,
        &[
            &port,
            "-timeout=1",
            "-retry=0",
            "x.example.test",
            "127.0.0.1",
        ],
    );
    assert_eq!(code, 1);
    assert!(out.contains("no servers could be reached"), "{out}");
}

#[test]
fn tools_nslookup_marks_forwarded_answers() {
    let server = FakeDns::start(cluster_zone().forwarded());
    let files = server.files("", "");
    let (code, out) = nslookup(&files, &["www.example.test"]);
    assert_eq!(code, 0);
    assert!(
        out.ends_with(
            "Non-authoritative answer:\nName:\twww.example.test\nAddress: 192.0.2.10\n\n\
             Non-authoritative answer:\nName:\twww.example.test\nAddress: 2001:db8::10\n\n"
        ),
        "{out}"
    );
}

//! `dig +showsearch` and `nslookup -debug`: every exchange of the search-list walk, with the
//! server that answered, the client port and id the server saw, the code and the time — seed
//! 001's ndots demo (`abc`, `abc.123`, `abc.123.def` at ndots 2 and 5) against a fake server.

mod tools_support;

use std::time::Duration;

use minikind_pod_tools::attempt::{Attempt, AttemptResult, parse_line};
use minikind_pod_tools::transport::Transport;
use minikind_pod_tools::{dig, nslookup};
use tools_support::{FakeDns, Files, cluster_zone};

const POD_SEARCH: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n";

fn run(
    tool: fn(&[String], &minikind_pod_tools::ToolEnv, &mut dyn std::io::Write) -> i32,
    files: &Files,
    args: &[&str],
) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let code = tool(&args, &files.env, &mut out);
    (code, String::from_utf8(out).unwrap())
}

/// The attempt lines of a tool's output, checked to be numbered 1, 2, 3, …
fn attempts(out: &str) -> Vec<Attempt> {
    let parsed: Vec<(usize, Attempt)> = out.lines().filter_map(parse_line).collect();
    for (i, (n, _)) in parsed.iter().enumerate() {
        assert_eq!(*n, i + 1, "attempts are numbered in order:\n{out}");
    }
    parsed.into_iter().map(|(_, a)| a).collect()
}

fn names(attempts: &[Attempt]) -> Vec<&str> {
    attempts.iter().map(|a| a.name.as_str()).collect()
}

fn rcodes(attempts: &[Attempt]) -> Vec<&str> {
    attempts.iter().map(|a| a.rcode().unwrap_or("-")).collect()
}

#[test]
fn tools_search_attempts_seed_001_ndots_5() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(&format!("{POD_SEARCH}options ndots:5\n"), "");
    let (code, out) = run(dig::run, &files, &["+showsearch", "+short", "abc"]);
    assert_eq!(code, 0, "{out}");
    let tried = attempts(&out);
    assert_eq!(
        names(&tried),
        vec![
            "abc.default.svc.cluster.local.",
            "abc.svc.cluster.local.",
            "abc.cluster.local.",
            "abc.",
        ],
        "{out}"
    );
    assert_eq!(rcodes(&tried), vec!["NXDOMAIN"; 4]);
    // Every attempt names the server that answered and the client port and id the server saw:
    // exactly what a query log line shows, so the exchange can be found in it.
    let seen = server.received();
    assert_eq!(seen.len(), 4);
    for (a, r) in tried.iter().zip(&seen) {
        assert_eq!(a.server, server.addr, "{out}");
        assert_eq!(a.transport, Transport::Udp);
        assert_eq!(a.local, Some(r.client), "{out}");
        assert_eq!(a.id, r.id, "{out}");
        assert_eq!(a.name, r.name);
        assert_eq!(a.rtype, "A");
    }
    // Three dots are still fewer than five: the same walk, the name as is last.
    let (_, out) = run(dig::run, &files, &["+showsearch", "abc.123.def"]);
    assert_eq!(
        names(&attempts(&out)),
        vec![
            "abc.123.def.default.svc.cluster.local.",
            "abc.123.def.svc.cluster.local.",
            "abc.123.def.cluster.local.",
            "abc.123.def.",
        ]
    );
    // The final reply is still printed in full after the walk.
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(
        out.contains(&format!(
            ";; SERVER: 127.0.0.1#{}(127.0.0.1) (UDP)",
            server.addr.port()
        )),
        "{out}"
    );
}

#[test]
fn tools_search_attempts_seed_001_ndots_2() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(&format!("{POD_SEARCH}options ndots:2\n"), "");
    // One dot: fewer than two, the search list first.
    let (_, out) = run(dig::run, &files, &["+showsearch", "+short", "abc.123"]);
    assert_eq!(
        names(&attempts(&out)),
        vec![
            "abc.123.default.svc.cluster.local.",
            "abc.123.svc.cluster.local.",
            "abc.123.cluster.local.",
            "abc.123.",
        ],
        "{out}"
    );
    // Two dots: enough, the name as is first.
    let (_, out) = run(dig::run, &files, &["+showsearch", "+short", "abc.123.def"]);
    assert_eq!(
        names(&attempts(&out)),
        vec![
            "abc.123.def.",
            "abc.123.def.default.svc.cluster.local.",
            "abc.123.def.svc.cluster.local.",
            "abc.123.def.cluster.local.",
        ],
        "{out}"
    );
    // +ndots on the command line wins over resolv.conf, as in dig.
    let (_, out) = run(
        dig::run,
        &files,
        &["+showsearch", "+ndots=1", "+short", "abc.123"],
    );
    assert_eq!(attempts(&out)[0].name, "abc.123.", "{out}");
}

#[test]
fn tools_search_attempts_stop_at_the_answer_and_time_it() {
    let pause = Duration::from_millis(150);
    let server = FakeDns::start(cluster_zone().slow("www.example.test", pause));
    let files = server.files(&format!("{POD_SEARCH}options ndots:5\n"), "");
    let (code, out) = run(
        dig::run,
        &files,
        &["+showsearch", "+short", "www.example.test"],
    );
    assert_eq!(code, 0, "{out}");
    let tried = attempts(&out);
    assert_eq!(
        rcodes(&tried),
        vec!["NXDOMAIN", "NXDOMAIN", "NXDOMAIN", "NOERROR"],
        "{out}"
    );
    let last = tried.last().unwrap();
    assert_eq!(last.name, "www.example.test.");
    assert!(
        matches!(
            last.result,
            AttemptResult::Reply {
                answers: 1,
                truncated: false,
                ..
            }
        ),
        "{out}"
    );
    // The time is the exchange's own: the slow name took the server's pause, the others not.
    assert!(last.elapsed >= pause, "{out}");
    assert!(tried[0].elapsed < pause, "{out}");
    assert!(out.ends_with("192.0.2.10\n"), "{out}");
    // Without the option nothing of this is printed.
    let (_, plain) = run(dig::run, &files, &["+search", "+short", "www.example.test"]);
    assert_eq!(plain, "192.0.2.10\n");
}

#[test]
fn tools_search_attempts_show_truncation_and_failures() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files("", "");
    let (_, out) = run(
        dig::run,
        &files,
        &["+showsearch", "+short", "big.example.test"],
    );
    let tried = attempts(&out);
    assert_eq!(tried.len(), 2, "{out}");
    assert!(
        matches!(
            tried[0].result,
            AttemptResult::Reply {
                truncated: true,
                ..
            }
        ),
        "{out}"
    );
    assert_eq!(
        (tried[0].transport, tried[1].transport),
        (Transport::Udp, Transport::Tcp)
    );
    let seen = server.received();
    assert_eq!(
        tried[1].local,
        Some(seen[1].client),
        "the TCP client port too"
    );

    // A port nobody serves: each try is an attempt that failed, and dig gives up with 9.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port().to_string();
    drop(socket);
    let dead = tools_support::files("nameserver 127.0.0.1\n", "");
    let (code, out) = run(
        dig::run,
        &dead,
        &["-p", &port, "+time=1", "+tries=2", "+showsearch", "x.test."],
    );
    assert_eq!(code, 9, "{out}");
    let tried = attempts(&out);
    assert_eq!(tried.len(), 2, "{out}");
    for a in &tried {
        assert!(matches!(a.result, AttemptResult::Failed { .. }), "{out}");
        assert_eq!(a.server.port().to_string(), port);
    }
    assert!(!out.contains("communications error"), "said once: {out}");
}

#[test]
fn tools_search_attempts_nslookup_debug_walks_like_glibc() {
    let server = FakeDns::start(cluster_zone());
    let files = server.files(&format!("{POD_SEARCH}options ndots:5\n"), "");
    let (code, out) = run(nslookup::run, &files, &["-debug", "busybox-svc"]);
    assert_eq!(code, 0, "{out}");
    let tried = attempts(&out);
    // A: found at the first name. AAAA: that name has no AAAA (NODATA), so the walk goes on
    // to the end, as glibc's does.
    assert_eq!(
        tried
            .iter()
            .map(|a| format!("{} {} {}", a.rtype, a.name, a.rcode().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            "A busybox-svc.default.svc.cluster.local. NOERROR",
            "AAAA busybox-svc.default.svc.cluster.local. NOERROR",
            "AAAA busybox-svc.svc.cluster.local. NXDOMAIN",
            "AAAA busybox-svc.cluster.local. NXDOMAIN",
            "AAAA busybox-svc. NXDOMAIN",
        ],
        "{out}"
    );
    let seen = server.received();
    for (a, r) in tried.iter().zip(&seen) {
        assert_eq!((a.local, a.id), (Some(r.client), r.id));
    }
    // The lines come before busybox's usual output, which is unchanged.
    assert!(
        out.contains("\nName:\tbusybox-svc.default.svc.cluster.local\nAddress: 10.96.123.4\n"),
        "{out}"
    );
    let first_attempt = out.find(";; attempt 1:").unwrap();
    assert!(first_attempt < out.find("Name:").unwrap(), "{out}");

    // One type: the seed's `abc.123` at ndots 2, every name NXDOMAIN.
    let files = server.files(&format!("{POD_SEARCH}options ndots:2\n"), "");
    let (code, out) = run(nslookup::run, &files, &["-debug", "-type=A", "abc.123"]);
    assert_eq!(code, 1);
    assert_eq!(
        names(&attempts(&out)),
        vec![
            "abc.123.default.svc.cluster.local.",
            "abc.123.svc.cluster.local.",
            "abc.123.cluster.local.",
            "abc.123.",
        ],
        "{out}"
    );
    assert!(
        out.contains("** server can't find abc.123: NXDOMAIN"),
        "{out}"
    );
    let (_, quiet) = run(nslookup::run, &files, &["-type=A", "abc.123"]);
    assert!(attempts(&quiet).is_empty(), "{quiet}");
}

//! `minikind dns test -f CHECKS.yaml` on a real one-node cluster (issue 17, item 1): a checks
//! file mixing passing checks — `kubernetes.default`'s service IP, names of the hermetic lab
//! upstream (one over TCP, one from an existing pod, one NXDOMAIN within a deadline, one from a
//! probe pod with its own dnsPolicy/dnsConfig) — with one check expecting a wrong answer. The
//! run exits non-zero, prints the table, writes a JUnit file with exactly that failure and its
//! trace, and leaves no probe pod behind; the same file through `--kubeconfig` prints JSON whose
//! failure carries a trace from the pod's side only; Ctrl-C during a check deletes its probe pod
//! and exits 130. Hermetic: internal network, lab upstream.

use std::process::Stdio;
use std::time::Duration;

use minikind_test_support::{Cluster, eventually, example, minikind, minikind_command};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use quick_xml::Reader;
use quick_xml::events::Event;
use quick_xml::name::QName;
use serde_json::Value;

const CHECKS: &str = "\
checks:
- name: kubernetes.default.svc.cluster.local
  type: A
  expect: {answers: [10.96.0.1]}
- name: www.example.test
  expect: {rcode: NOERROR}
- name: www.example.test
  protocol: tcp
  from: {pod: busybox}
  expect: {answers: [192.0.2.10]}
- name: nope.example.test
  expect: {rcode: NXDOMAIN, within: 20s}
- name: kubernetes.default
  search: true
  from:
    dnsPolicy: None
    dnsConfig:
      nameservers: [10.96.0.10]
      searches: [svc.cluster.local]
      options: [{name: ndots, value: '2'}]
  expect: {answers: [10.96.0.1]}
- name: www.example.test
  timeout: 4s
  expect: {answers: [192.0.2.99]}
";

/// A testcase of the JUnit file.
struct Case {
    name: String,
    /// Its failure's message, if it failed.
    failure: Option<String>,
    system_out: String,
}

/// The JUnit file read with an XML parser (so it must be well-formed): the root's `tests` and
/// `failures` attributes and the testcases.
struct Junit {
    tests: String,
    failures: String,
    cases: Vec<Case>,
}

fn read_junit(xml: &str) -> Junit {
    let mut reader = Reader::from_str(xml);
    let mut junit = Junit {
        tests: String::new(),
        failures: String::new(),
        cases: Vec::new(),
    };
    let attr = |e: &quick_xml::events::BytesStart, key: &str| -> Option<String> {
        e.attributes()
            .filter_map(Result::ok)
            .find(|a| a.key.as_ref() == key.as_bytes())
            .map(|a| a.unescape_value().unwrap().into_owned())
    };
    loop {
        let (e, start) = match reader
            .read_event()
            .expect("the JUnit file is well-formed XML")
        {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::Eof => break,
            _ => continue,
        };
        match e.name().as_ref() {
            b"testsuites" => {
                junit.tests = attr(&e, "tests").unwrap();
                junit.failures = attr(&e, "failures").unwrap();
            }
            b"testcase" => junit.cases.push(Case {
                name: attr(&e, "name").unwrap(),
                failure: None,
                system_out: String::new(),
            }),
            b"failure" => junit.cases.last_mut().unwrap().failure = attr(&e, "message"),
            b"system-out" if start => {
                let raw = reader.read_text(QName(b"system-out")).unwrap();
                junit.cases.last_mut().unwrap().system_out =
                    quick_xml::escape::unescape(&raw).unwrap().into_owned();
            }
            _ => {}
        }
    }
    junit
}

#[test]
fn dns_test_runs_a_checks_file_reports_the_failure_with_its_trace_and_cleans_up() {
    let c = Cluster::create(
        "e2e-dnstest",
        "networking:\n  internal: true\ndns:\n  upstream: lab\n",
    );
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-003-dns-walkthrough/busybox.yaml"),
    ]);
    c.wait_pod_ready("default", "busybox");
    let dir = tempfile::tempdir().unwrap();
    let checks = dir.path().join("checks.yaml");
    std::fs::write(&checks, CHECKS).unwrap();
    let junit = dir.path().join("junit.xml");

    let r = c.minikind(&[
        "dns",
        "test",
        "-f",
        checks.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("1 of 6 DNS checks failed"),
        "{}",
        r.stderr
    );
    let out = &r.stdout;
    let rows: Vec<&str> = out.lines().take(7).collect();
    assert!(
        rows[0].starts_with("CHECK") && rows[0].contains("PROTO"),
        "{out}"
    );
    for (i, (name, proto, result)) in [
        ("kubernetes.default.svc.cluster.local", "udp", "pass"),
        ("www.example.test", "udp", "pass"),
        ("www.example.test", "tcp", "pass"),
        ("nope.example.test", "udp", "pass"),
        ("kubernetes.default", "udp", "pass"),
        ("www.example.test", "udp", "FAIL"),
    ]
    .iter()
    .enumerate()
    {
        let row: Vec<&str> = rows[i + 1].split_whitespace().collect();
        assert_eq!(
            (row[0], row[1], row[3], row[4], row[5]),
            (i.to_string().as_str(), *name, "A", *proto, *result),
            "{out}"
        );
    }
    assert!(rows[3].contains("default/busybox"), "{out}");
    assert!(
        out.contains(
            "--- FAIL checks[5] www.example.test A udp: expected answers [192.0.2.99], got \
             NOERROR [192.0.2.10]"
        ),
        "{out}"
    );
    // The failure's trace: the attempt, and the hops a minikind cluster's nodes show.
    assert!(
        out.contains("www.example.test. A to 10.96.0.10#53 (UDP)"),
        "{out}"
    );
    assert!(out.contains("KUBE-SERVICES"), "{out}");
    assert!(out.ends_with("5 passed, 1 failed\n"), "{out}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    let junit = read_junit(&xml);
    assert_eq!(
        (junit.tests.as_str(), junit.failures.as_str()),
        ("6", "1"),
        "{xml}"
    );
    assert_eq!(junit.cases.len(), 6, "{xml}");
    let failed: Vec<&Case> = junit.cases.iter().filter(|c| c.failure.is_some()).collect();
    assert_eq!(failed.len(), 1, "{xml}");
    assert_eq!(failed[0].name, "checks[5] www.example.test A udp");
    assert!(
        failed[0].failure.as_deref().unwrap().contains("192.0.2.99"),
        "{xml}"
    );
    assert!(
        failed[0]
            .system_out
            .contains("www.example.test. A to 10.96.0.10#53"),
        "{xml}"
    );
    assert_eq!(junit.cases[2].name, "checks[2] www.example.test A tcp");

    // No probe pod is left.
    let probes = || {
        let r = c.minikind(&[
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=minikind-dns-test",
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&r.stdout).ok()?;
        v["items"].as_array().map(Vec::len)
    };
    eventually("the probe pods deleted", Duration::from_secs(30), || {
        (probes()? == 0).then_some(())
    });

    // Any cluster, by kubeconfig: the same checks, as JSON; the trace stops at the pod's side.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, c.minikind_ok(&["get", "kubeconfig"])).unwrap();
    let r = minikind(&[
        "dns",
        "test",
        "-f",
        checks.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("-o json is not JSON ({e}):\n{}", r.stdout));
    assert_eq!(
        (v["passed"].as_u64(), v["failed"].as_u64()),
        (Some(5), Some(1))
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    let failed = &results[5];
    assert_eq!(failed["passed"], false);
    assert_eq!(failed["reply"]["answers"][0], "192.0.2.10");
    let trace = &failed["trace"];
    assert!(
        trace["resolv_conf"]["nameservers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "10.96.0.10"),
        "{trace}"
    );
    assert_eq!(trace["attempts"][0]["name"], "www.example.test.", "{trace}");
    assert!(
        trace["notes"][0]
            .as_str()
            .unwrap()
            .contains("iptables rules and logs cannot be read"),
        "{trace}"
    );
    assert_eq!(trace["attempts"][0]["hops"][0]["hop"], "stop", "{trace}");
    eventually("the probe pods deleted", Duration::from_secs(30), || {
        (probes()? == 0).then_some(())
    });

    // Ctrl-C while a check is still retrying: the probe pod is deleted all the same, and the
    // exit code is the shell's 128 + SIGINT.
    let slow = dir.path().join("slow.yaml");
    std::fs::write(
        &slow,
        "checks:\n- name: www.example.test\n  timeout: 2m\n  expect: {answers: [192.0.2.99]}\n",
    )
    .unwrap();
    let child = minikind_command()
        .args([
            "dns",
            "test",
            "-f",
            slow.to_str().unwrap(),
            "--name",
            &c.name,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("a probe pod made", Duration::from_secs(60), || {
        (probes()? == 1).then_some(())
    });
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    // Its `sleep` would last minutes: only the command's cleanup removes it this soon.
    eventually("the probe pod deleted", Duration::from_secs(30), || {
        (probes()? == 0).then_some(())
    });
}

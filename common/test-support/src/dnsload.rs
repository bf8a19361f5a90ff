//! DNS from inside a pod's (or node's) network namespace, as the benchmarks and measuring
//! tests ask it: the test thread enters the namespace (`/proc/<node pid>/root/run/netns/…`
//! for a pod, `/proc/<node pid>/ns/net` for a node), so nothing but the DNS path is timed and
//! no packet leaves the host's own namespace. Queries are built and read on the wire (header,
//! one question): only the id, the rcode and the answer count matter here.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Cluster, docker};

/// The network namespace of a pod (by its uid) on `node`, seen from the host.
pub fn pod_netns(node: &str, pod_uid: &str) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/root/run/netns/mk-{pod_uid}",
        node_pid(node)
    ))
}

/// The node container's own network namespace, seen from the host.
pub fn node_netns(node: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", node_pid(node)))
}

fn node_pid(node: &str) -> String {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", node])
        .stdout
        .trim()
        .to_string();
    assert!(
        !pid.is_empty() && pid != "0",
        "node {node} has no running process"
    );
    pid
}

/// The network namespace of pod `name` in `default`, once Ready.
pub fn ready_pod_netns(c: &Cluster, name: &str) -> (PathBuf, serde_json::Value) {
    let pod = c.wait_pod_ready("default", name);
    let uid = pod["metadata"]["uid"]
        .as_str()
        .expect("pod uid")
        .to_string();
    let node = pod["spec"]["nodeName"]
        .as_str()
        .expect("pod scheduled")
        .to_string();
    (pod_netns(&node, &uid), pod)
}

/// Runs `work` on a thread that has joined the network namespace at `path`.
pub fn in_netns<T: Send + 'static>(path: &Path, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let f = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
        work()
    })
    .join()
    .expect("the namespace thread")
}

/// A query for `name` (dotted, trailing dot optional), type A, RD set.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        assert!(
            !label.is_empty() && label.len() < 64,
            "bad name {name:?} for a query"
        );
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// What a reply's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    /// 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, …
    pub rcode: u8,
    pub answers: u16,
}

impl Reply {
    pub fn parse(wire: &[u8]) -> Option<Reply> {
        let h = wire.get(..12)?;
        (h[2] & 0x80 != 0).then(|| Reply {
            id: u16::from_be_bytes([h[0], h[1]]),
            rcode: h[3] & 0x0f,
            answers: u16::from_be_bytes([h[6], h[7]]),
        })
    }
}

/// A UDP socket with a 2 s read timeout.
pub fn socket() -> UdpSocket {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("binding a UDP socket");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("setting the timeout");
    sock
}

/// One exchange on `sock`: the reply and its round trip, `None` on timeout.
pub fn ask(sock: &UdpSocket, server: SocketAddr, id: u16, name: &str) -> Option<(Duration, Reply)> {
    let q = query(id, name);
    let start = Instant::now();
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        match Reply::parse(&buf[..n]) {
            Some(r) if r.id == id => return Some((start.elapsed(), r)),
            _ => continue, // a late reply to an earlier, timed-out query
        }
    }
}

/// Each name asked once, in order, from one socket (`fresh`: a new socket, so a new source
/// port, per query, as a resolver library does per lookup); the round trips of the replies
/// for which `ok` holds.
pub fn latencies(
    server: SocketAddr,
    names: &[String],
    fresh: bool,
    ok: impl Fn(&Reply) -> bool,
) -> Vec<Duration> {
    let mut sock = socket();
    let mut out = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if fresh {
            sock = socket();
        }
        if let Some((rtt, r)) = ask(&sock, server, i as u16, n)
            && ok(&r)
        {
            out.push(rtt);
        }
    }
    out
}

/// A NOERROR reply with an answer.
pub fn answered(r: &Reply) -> bool {
    r.rcode == 0 && r.answers > 0
}

/// p50, p99 and max of `samples` (sorted here), `None` when empty.
pub fn percentiles(mut samples: Vec<Duration>) -> Option<(Duration, Duration, Duration, usize)> {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    let last = *samples.last()?;
    Some((at(0.5), at(0.99), last, samples.len()))
}

/// `what: p50 … ms, p99 … ms, max … ms (n=…)`.
pub fn report(what: &str, samples: Vec<Duration>) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match percentiles(samples) {
        None => format!("{what}: no answers"),
        Some((p50, p99, max, n)) => format!(
            "{what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={n})",
            ms(p50),
            ms(p99),
            ms(max)
        ),
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct Load {
    pub qps: f64,
    /// Queries with no reply within 2 s, or whose reply failed `ok`.
    pub lost: u64,
    /// Every answered query's round trip under load.
    pub rtts: Vec<Duration>,
}

/// Closed-loop load as dnsperf runs it (`-c clients`, one query in flight per client): each
/// client thread in `netns` asks `names` round-robin for `seconds`.
pub fn load(
    netns: &Path,
    server: SocketAddr,
    names: &[String],
    clients: usize,
    seconds: u64,
    ok: fn(&Reply) -> bool,
) -> Load {
    let lost = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (netns, names, lost) = (netns.to_path_buf(), names.to_vec(), lost.clone());
            std::thread::spawn(move || {
                in_netns(&netns, move || {
                    let sock = socket();
                    let end = Instant::now() + Duration::from_secs(seconds);
                    let mut rtts = Vec::new();
                    let mut i = c;
                    while Instant::now() < end {
                        i += 1;
                        let name = &names[i % names.len()];
                        match ask(&sock, server, i as u16, name) {
                            Some((rtt, r)) if ok(&r) => rtts.push(rtt),
                            _ => {
                                lost.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    rtts
                })
            })
        })
        .collect();
    let mut rtts = Vec::new();
    for t in threads {
        rtts.extend(t.join().expect("a load client"));
    }
    let secs = start.elapsed().as_secs_f64();
    Load {
        qps: rtts.len() as f64 / secs,
        lost: lost.load(Ordering::Relaxed),
        rtts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_replies_on_the_wire() {
        let q = query(0x1234, "kubernetes.default.svc.cluster.local.");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(q[12], 10);
        assert_eq!(&q[13..23], b"kubernetes");
        assert_eq!(&q[q.len() - 5..], &[0, 0, 1, 0, 1]);
        // Not a reply (QR clear), then an NXDOMAIN reply with no answer.
        assert_eq!(Reply::parse(&q), None);
        let mut r = q.clone();
        r[2] |= 0x80;
        r[3] = 0x83;
        assert_eq!(
            Reply::parse(&r),
            Some(Reply {
                id: 0x1234,
                rcode: 3,
                answers: 0
            })
        );
        assert_eq!(Reply::parse(&r[..5]), None);
    }

    #[test]
    fn percentiles_of_samples() {
        let ms = Duration::from_millis;
        let (p50, p99, max, n) = percentiles((1..=100).map(ms).collect()).unwrap();
        assert_eq!((p50, p99, max, n), (ms(51), ms(99), ms(100), 100));
        assert!(percentiles(Vec::new()).is_none());
        assert_eq!(report("x", Vec::new()), "x: no answers");
    }
}

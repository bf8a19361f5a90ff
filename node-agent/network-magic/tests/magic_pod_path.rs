//! The network magic end to end on real kernel paths: a "node" network namespace with
//! Docker's embedded-DNS rules and a resolver on 127.0.0.11, a "pod" namespace behind a veth.
//! Before the magic the pod cannot reach the resolver (127.0.0.11 is its own loopback, the
//! host IP is not redirected); after it, UDP and TCP queries to the host IP reach the resolver
//! through PREROUTING → DOCKER_OUTPUT → DNAT (route_localnet), and so does the node itself.
//! Both namespaces are private to the test; nothing on the host is touched.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use minikind_iptables::{Commands, Flavour};
use minikind_network_magic::{self as network_magic, MagicOptions};
use minikind_pod_tools::client;
use minikind_pod_tools::transport::Transport;

const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const UDP_PORT: u16 = 41553;
const TCP_PORT: u16 = 38405;
const ANSWER: Ipv4Addr = Ipv4Addr::new(10, 11, 12, 13);

fn sh(command: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn reply_to(query: &[u8]) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.queries = query.queries.clone();
    let q = query.queries.first()?;
    reply.add_answer(Record::from_rdata(
        q.name().clone(),
        600,
        RData::A(A(ANSWER)),
    ));
    reply.to_vec().ok()
}

/// The embedded resolver stand-in on 127.0.0.11 (UDP and TCP), serving until the test ends.
fn start_resolver() {
    let udp = UdpSocket::bind(("127.0.0.11", UDP_PORT)).expect("binding 127.0.0.11 (udp)");
    let tcp = TcpListener::bind(("127.0.0.11", TCP_PORT)).expect("binding 127.0.0.11 (tcp)");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            if let Some(reply) = reply_to(&buf[..n]) {
                let _ = udp.send_to(&reply, from);
            }
        }
    });
    std::thread::spawn(move || {
        for mut stream in tcp.incoming().flatten() {
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).is_err() {
                continue;
            }
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if stream.read_exact(&mut body).is_err() {
                continue;
            }
            if let Some(reply) = reply_to(&body) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend(reply);
                let _ = stream.write_all(&framed);
            }
        }
    });
}

/// Asks `server` for `x.example.test` A; the answer's address, or the error text.
fn ask(server: Ipv4Addr, port: u16, transport: Transport) -> Result<Ipv4Addr, String> {
    let query = client::build_query(
        client::parse_name("x.example.test").unwrap(),
        RecordType::A,
        false,
    );
    let reply = client::exchange(
        SocketAddr::from((server, port)),
        &query,
        transport,
        Duration::from_millis(700),
    )
    .map_err(|e| e.to_string())?;
    match reply.response.answers.first().map(|r| &r.data) {
        Some(RData::A(a)) => Ok(a.0),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

#[derive(Debug)]
struct PodView {
    before_host_ip: Result<Ipv4Addr, String>,
    before_loopback: Result<Ipv4Addr, String>,
    after_udp: Result<Ipv4Addr, String>,
    after_tcp: Result<Ipv4Addr, String>,
    after_loopback: Result<Ipv4Addr, String>,
}

#[test]
fn magic_pod_reaches_embedded_resolver_only_with_the_magic() {
    // A prerequisite of the suite (README): missing, the test fails rather than skips.
    assert!(
        nix::unistd::geteuid().is_root() && std::path::Path::new("/usr/sbin/iptables-nft").exists(),
        "cannot run: needs root and iptables-nft"
    );
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.11\noptions ndots:0\n").unwrap();
    let opts = MagicOptions {
        resolv_conf_path: resolv.clone(),
        host_ip: Some(HOST_IP),
        host_name: None,
        hosts_path: dir.path().join("hosts"),
        iptables: Commands::in_dir(Path::new("/usr/sbin"), Some(Flavour::Nft)),
        ..MagicOptions::default()
    };

    let node = std::thread::spawn(move || -> Option<(PodView, Result<Ipv4Addr, String>)> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        sh("ip link set lo up");
        sh("ip link add mk-node type veth peer name mk-pod");
        sh("ip addr add 10.99.0.1/24 dev mk-node && ip link set mk-node up");
        sh("ip route add default via 10.99.0.2 dev mk-node");
        start_resolver();
        // Docker's rules for the resolver (libnetwork's setupIptablesNAT).
        for rule in [
            "-t nat -N DOCKER_OUTPUT",
            "-t nat -I OUTPUT -d 127.0.0.11 -j DOCKER_OUTPUT",
            "-t nat -N DOCKER_POSTROUTING",
            "-t nat -I POSTROUTING -d 127.0.0.11 -j DOCKER_POSTROUTING",
            &format!(
                "-t nat -I DOCKER_OUTPUT -d 127.0.0.11 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:{UDP_PORT}"
            ),
            &format!(
                "-t nat -I DOCKER_POSTROUTING -s 127.0.0.11 -p udp --sport {UDP_PORT} -j SNAT --to-source :53"
            ),
            &format!(
                "-t nat -I DOCKER_OUTPUT -d 127.0.0.11 -p tcp --dport 53 -j DNAT --to-destination 127.0.0.11:{TCP_PORT}"
            ),
            &format!(
                "-t nat -I DOCKER_POSTROUTING -s 127.0.0.11 -p tcp --sport {TCP_PORT} -j SNAT --to-source :53"
            ),
        ] {
            sh(&format!("iptables-nft {rule}"));
        }
        // The node itself reaches the resolver through Docker's OUTPUT rules already.
        assert_eq!(
            ask(Ipv4Addr::new(127, 0, 0, 11), 53, Transport::Udp),
            Ok(ANSWER)
        );

        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (before_tx, before_rx) = mpsc::channel::<()>();
        let pod = std::thread::spawn(move || -> Option<PodView> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            tid_tx.send(nix::unistd::gettid().as_raw()).ok()?;
            go_rx.recv().ok()?;
            sh("ip link set lo up");
            sh("ip addr add 10.99.0.2/24 dev mk-pod && ip link set mk-pod up");
            sh("ip route add default via 10.99.0.1 dev mk-pod");
            let before_host_ip = ask(HOST_IP, 53, Transport::Udp);
            let before_loopback = ask(Ipv4Addr::new(127, 0, 0, 11), 53, Transport::Udp);
            before_tx.send(()).ok()?;
            go_rx.recv().ok()?;
            Some(PodView {
                before_host_ip,
                before_loopback,
                after_udp: ask(HOST_IP, 53, Transport::Udp),
                after_tcp: ask(HOST_IP, 53, Transport::Tcp),
                after_loopback: ask(Ipv4Addr::new(127, 0, 0, 11), 53, Transport::Udp),
            })
        });
        let tid = tid_rx.recv().ok()?;
        sh(&format!("ip link set mk-pod netns {tid}"));
        go_tx.send(()).ok()?;
        before_rx.recv().ok()?;
        // The node's boot: route_localnet (this namespace starts with it off), then the magic.
        let report = network_magic::boot(&opts).expect("booting the node");
        assert!(report.rules_changed);
        go_tx.send(()).ok()?;
        let view = pod.join().ok()??;
        // The node's patched resolv.conf names the host IP, which must work from the node too.
        let node_after = ask(HOST_IP, 53, Transport::Udp);
        Some((view, node_after))
    });
    let Some((view, node_after)) = node.join().expect("node thread") else {
        panic!("cannot run: unshare(CLONE_NEWNET) not permitted (the suite runs as root)");
    };
    assert!(view.before_host_ip.is_err(), "{view:?}");
    assert!(view.before_loopback.is_err(), "{view:?}");
    assert_eq!(view.after_udp, Ok(ANSWER), "{view:?}");
    assert_eq!(view.after_tcp, Ok(ANSWER), "{view:?}");
    // 127.0.0.11 stays the pod's own loopback: the black hole the magic works around.
    assert!(view.after_loopback.is_err(), "{view:?}");
    assert_eq!(node_after, Ok(ANSWER));
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "nameserver 192.0.2.1\noptions ndots:0\n"
    );
}

//! Packet-level check of the synced rules: a client in a second network namespace (a "pod"
//! behind a veth) reaches a TCP and a UDP listener of the node through the service's cluster
//! IP (PREROUTING → KUBE-SERVICES → KUBE-SVC → KUBE-SEP DNAT, replies un-NATed by conntrack),
//! and a service without endpoints refuses the connection at once (filter REJECT).

mod kube_proxy_common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use kube_proxy_common::*;

const NS: &str = "default";

/// What the client saw.
#[derive(Debug)]
struct ClientResults {
    tcp: Result<String, String>,
    udp: Result<(String, SocketAddr), String>,
    closed: Result<(), std::io::ErrorKind>,
}

/// The client: moves its thread into a new network namespace, waits for its veth end, then
/// configures it and talks to the cluster IPs.
fn client(tid_tx: mpsc::Sender<i32>, go: mpsc::Receiver<()>) -> ClientResults {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("client namespace");
    tid_tx
        .send(nix::unistd::gettid().as_raw())
        .expect("sending tid");
    go.recv().expect("waiting for the veth");
    // Commands started from this thread run in its namespace.
    run("ip", &["link", "set", "lo", "up"]);
    run("ip", &["addr", "add", "10.0.0.2/24", "dev", "kpclient"]);
    run("ip", &["link", "set", "kpclient", "up"]);
    run("ip", &["route", "add", "default", "via", "10.0.0.1"]);

    let timeout = Duration::from_secs(3);
    let tcp = TcpStream::connect_timeout(&"10.96.100.50:80".parse().unwrap(), timeout)
        .and_then(|mut s| {
            s.set_read_timeout(Some(timeout))?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })
        .map_err(|e| e.to_string());
    let udp = UdpSocket::bind("10.0.0.2:0")
        .and_then(|s| {
            s.set_read_timeout(Some(timeout))?;
            s.send_to(b"ping", "10.96.100.50:53")?;
            let mut buf = [0u8; 128];
            let (n, from) = s.recv_from(&mut buf)?;
            Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
        })
        .map_err(|e| e.to_string());
    let closed = TcpStream::connect_timeout(&"10.96.100.51:80".parse().unwrap(), timeout)
        .map(|_| ())
        .map_err(|e| e.kind());
    ClientResults { tcp, udp, closed }
}

#[test]
fn kube_proxy_cluster_ip_reaches_the_endpoint_from_another_namespace() {
    let c = nft();
    isolated(&c.clone(), || async move {
        // The node side: a veth to the client, the endpoint address on lo, forwarding on (the
        // REJECT for the closed service sits in FORWARD).
        run(
            "ip",
            &[
                "link", "add", "kpnode", "type", "veth", "peer", "name", "kpclient",
            ],
        );
        run("ip", &["addr", "add", "10.0.0.1/24", "dev", "kpnode"]);
        run("ip", &["link", "set", "kpnode", "up"]);
        run("ip", &["addr", "add", "10.244.0.5/32", "dev", "lo"]);
        // The service range leaves through an "uplink" (as through a node's eth0), not back
        // out of the client's link: there the kernel would answer with a redirect and, on
        // this kernel, not with REJECT's port-unreachable.
        run(
            "ip",
            &[
                "link", "add", "kpup0", "type", "veth", "peer", "name", "kpup1",
            ],
        );
        run("ip", &["link", "set", "kpup0", "up"]);
        run("ip", &["link", "set", "kpup1", "up"]);
        run("ip", &["route", "add", "10.96.0.0/16", "dev", "kpup0"]);
        run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);

        let tcp = tokio::net::TcpListener::bind("10.244.0.5:8080")
            .await
            .expect("TCP listener on the endpoint");
        let tcp_server = tokio::spawn(async move {
            let (mut conn, peer) = tcp.accept().await.expect("accept");
            let msg = format!("hello {} from 10.244.0.5:8080\n", peer.ip());
            tokio::io::AsyncWriteExt::write_all(&mut conn, msg.as_bytes())
                .await
                .expect("write");
        });
        let udp = tokio::net::UdpSocket::bind("10.244.0.5:5353")
            .await
            .expect("UDP listener on the endpoint");
        let udp_server = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, peer) = udp.recv_from(&mut buf).await.expect("recv");
            assert_eq!(&buf[..n], b"ping");
            udp.send_to(b"pong", peer).await.expect("send");
        });

        let lab = Lab::start(c.clone(), std::time::Duration::from_secs(30)).await;
        lab.service(
            NS,
            "echo",
            "10.96.100.50",
            &[("http", "TCP", 80), ("dns", "UDP", 53)],
        )
        .await;
        lab.slice(
            NS,
            "echo",
            &["10.244.0.5"],
            &[],
            &[("http", "TCP", 8080), ("dns", "UDP", 5353)],
        )
        .await;
        lab.service(NS, "closed", "10.96.100.51", &[("http", "TCP", 80)])
            .await;
        let cc = c.clone();
        eventually(10, "echo's DNATs and closed's REJECT", move || {
            let nat = dump(&cc, "nat");
            let filter = dump(&cc, "filter");
            let ready = nat.contains("--to-destination 10.244.0.5:8080")
                && nat.contains("--to-destination 10.244.0.5:5353")
                && filter.contains("default/closed:http has no endpoints");
            ready.then_some(()).ok_or(format!("{nat}\n{filter}"))
        })
        .await;

        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let client = std::thread::spawn(move || client(tid_tx, go_rx));
        let tid = tokio::task::spawn_blocking(move || tid_rx.recv().expect("client tid"))
            .await
            .unwrap();
        run(
            "ip",
            &["link", "set", "kpclient", "netns", &tid.to_string()],
        );
        go_tx.send(()).unwrap();
        let results = tokio::task::spawn_blocking(move || client.join().expect("client thread"))
            .await
            .unwrap();

        assert_eq!(
            results.tcp.as_deref(),
            Ok("hello 10.0.0.2 from 10.244.0.5:8080\n"),
            "{results:?}"
        );
        let (reply, from) = results.udp.as_ref().expect("a UDP reply");
        assert_eq!(reply, "pong");
        // conntrack turned the reply's source back into the service address.
        assert_eq!(from.to_string(), "10.96.100.50:53");
        assert_eq!(
            results.closed,
            Err(std::io::ErrorKind::ConnectionRefused),
            "the REJECT answers at once: {results:?}"
        );
        tcp_server.await.expect("TCP server");
        udp_server.await.expect("UDP server");
        lab.shutdown().await;
    });
}

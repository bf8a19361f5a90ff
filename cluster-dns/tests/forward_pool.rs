//! forward's connection reuse (coredns plugin/pkg/proxy/persistent.go): how many connections
//! an upstream accepts per 1,000 forwarded queries, over TCP and UDP, with `expire`, and
//! when the upstream closes connections itself.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use support::dns::*;

async fn forward_server(
    upstream: SocketAddr,
    options: &str,
) -> (SocketAddr, std::sync::Arc<minikind_cluster_dns::Instance>) {
    let p = free_port();
    let cf = format!(".:{p} {{\n bind 127.0.0.1\n forward . {upstream} {{\n{options}\n }}\n}}\n");
    let (inst, _) = start_server(&cf).await;
    (SocketAddr::from(([127, 0, 0, 1], p)), inst)
}

/// `n` A queries from `clients` concurrent clients (each sequential), all answered.
async fn ask_many(s: SocketAddr, n: usize, clients: usize, tcp_client: bool) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(clients) {
                let m = q(s, &format!("n{i}.example.org."), RecordType::A, tcp_client).await;
                assert_eq!(m.metadata.response_code, ResponseCode::NoError, "query {i}");
                assert_eq!(m.answers.len(), 1, "query {i}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_tcp_reuses_one_connection_per_query_in_flight() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let (s, _i) = forward_server(up.addr, "  force_tcp").await;
    ask_many(s, 1000, 1, false).await;
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1000);
    let sequential = up.tcp_conns.load(Ordering::SeqCst);
    println!("force_tcp, 1 client: {sequential} TCP connections per 1000 queries");
    assert_eq!(sequential, 1, "sequential queries share one connection");

    // Eight clients at once: at most one connection per query in flight.
    ask_many(s, 1000, 8, false).await;
    let concurrent = up.tcp_conns.load(Ordering::SeqCst) - sequential;
    println!("force_tcp, 8 clients: {concurrent} new TCP connections per 1000 queries");
    assert!(concurrent <= 8, "{concurrent} connections for 8 clients");
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        0,
        "force_tcp never uses UDP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_sockets_are_reused_too() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let (s, _i) = forward_server(up.addr, "").await;
    ask_many(s, 1000, 1, false).await;
    let sources = up.udp_sources.lock().expect("lock").len();
    println!("udp, 1 client: {sources} UDP sockets per 1000 queries");
    assert_eq!(sources, 1, "sequential queries leave from one socket");
    // A TCP client's query goes out over TCP (the client's transport), on its own pool.
    ask_many(s, 100, 1, true).await;
    assert_eq!(up.tcp_conns.load(Ordering::SeqCst), 1);
    assert_eq!(up.udp_sources.lock().expect("lock").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_closes_idle_connections_instead_of_reusing_them() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let (s, _i) = forward_server(up.addr, "  force_tcp\n  expire 30ms").await;
    for i in 0..5 {
        q(s, &format!("e{i}.example.org."), RecordType::A, false).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert_eq!(
        up.tcp_conns.load(Ordering::SeqCst),
        5,
        "each query after an idle period longer than expire dials anew"
    );
    let (s2, _i2) = forward_server(up.addr, "  force_tcp\n  expire 10s").await;
    let before = up.tcp_conns.load(Ordering::SeqCst);
    for i in 0..5 {
        q(s2, &format!("k{i}.example.org."), RecordType::A, false).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert_eq!(up.tcp_conns.load(Ordering::SeqCst) - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_is_redialled_not_failed() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    up.close_after_answer.store(true, Ordering::SeqCst);
    let (s, _i) = forward_server(up.addr, "  force_tcp").await;
    for i in 0..20 {
        let m = q(s, &format!("c{i}.example.org."), RecordType::A, false).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "query {i}");
        // Let the close arrive before the next query takes the pooled connection.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 20);
    assert_eq!(up.tcp_conns.load(Ordering::SeqCst), 20);
}

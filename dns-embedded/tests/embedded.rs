//! The embedded resolver on loopback, with fake upstream servers the tests start themselves.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use minikind_dns_embedded::embedded::forward::{
    FORWARD_TIMEOUT, MAX_EXTERNAL_SERVERS, MAX_IN_FLIGHT,
};
use minikind_dns_embedded::exchange::exchange;
use minikind_dns_embedded::querylog::QueryLog;
use minikind_dns_embedded::wire::{Names, encode};
use minikind_dns_embedded::{
    ContainerNames, EmbeddedConfig, EmbeddedResolver, NamesTable, NetworkNames,
};
use minikind_dns_log::Proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Fake upstreams

type Behaviour = Arc<dyn Fn(&Message, Proto) -> Option<Message> + Send + Sync>;

/// A programmable upstream on 127.0.0.1 (UDP and TCP on one port) that records what it saw.
struct FakeUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Proto, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeUpstream {
    async fn start(delay: Duration, behaviour: Behaviour) -> Self {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let udp = Arc::new(udp);
        let (s1, b1) = (seen.clone(), behaviour.clone());
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let (n, from) = udp.recv_from(&mut buf).await.unwrap();
                let msg = Message::from_vec(&buf[..n]).unwrap();
                s1.lock()
                    .unwrap()
                    .push((Proto::Udp, msg.queries[0].name().to_ascii()));
                let (udp, b1) = (udp.clone(), b1.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(reply) = b1(&msg, Proto::Udp) {
                        let _ = udp.send_to(&reply.to_vec().unwrap(), from).await;
                    }
                });
            }
        });
        let (s2, b2) = (seen.clone(), behaviour);
        let tcp_task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = tcp.accept().await.unwrap();
                let (s2, b2) = (s2.clone(), b2.clone());
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    stream.read_exact(&mut buf).await.unwrap();
                    let msg = Message::from_vec(&buf).unwrap();
                    s2.lock()
                        .unwrap()
                        .push((Proto::Tcp, msg.queries[0].name().to_ascii()));
                    tokio::time::sleep(delay).await;
                    if let Some(reply) = b2(&msg, Proto::Tcp) {
                        let bytes = reply.to_vec().unwrap();
                        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&bytes);
                        let _ = stream.write_all(&framed).await;
                    }
                    // Keep the connection until the client is done.
                    let _ = stream.read(&mut len).await;
                });
            }
        });
        Self {
            addr,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    /// Answers every A query with `ip`.
    async fn answering(ip: Ipv4Addr) -> Self {
        Self::start(Duration::ZERO, Arc::new(move |q, _| Some(reply_a(q, ip)))).await
    }

    /// Replies with `rcode` and nothing else.
    async fn rcode(rcode: ResponseCode) -> Self {
        Self::start(
            Duration::ZERO,
            Arc::new(move |q, _| {
                let mut r = empty_reply(q);
                r.metadata.response_code = rcode;
                Some(r)
            }),
        )
        .await
    }

    /// Never replies.
    async fn silent() -> Self {
        Self::start(Duration::ZERO, Arc::new(|_, _| None)).await
    }

    fn seen(&self) -> Vec<(Proto, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn empty_reply(q: &Message) -> Message {
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_queries(q.queries.iter().cloned());
    r
}

fn reply_a(q: &Message, ip: Ipv4Addr) -> Message {
    let mut r = empty_reply(q);
    r.add_answer(Record::from_rdata(
        q.queries[0].name().clone(),
        30,
        RData::A(A(ip)),
    ));
    r
}

// ---------------------------------------------------------------------------------------------
// Resolver set-up

fn lab_names() -> NamesTable {
    let mut containers = vec![
        ContainerNames {
            name: "lab-control-plane".into(),
            id: Some("4f1e2d3c4b5a69788796a5b4c3d2e1f0".into()),
            hostname: Some("cp.internal".into()),
            aliases: vec!["api".into()],
            ipv4: Some("172.18.0.2".parse().unwrap()),
            ipv6: Some("fc00:f853:ccd:e793::2".parse().unwrap()),
        },
        ContainerNames {
            name: "lab-worker".into(),
            ipv4: Some("172.18.0.3".parse().unwrap()),
            ..Default::default()
        },
    ];
    // 60 containers behind one alias: more addresses than fit in 512 bytes.
    for i in 0..60u8 {
        containers.push(ContainerNames {
            name: format!("web-{i}"),
            aliases: vec!["web".into()],
            ipv4: Some(Ipv4Addr::new(172, 18, 1, i + 1)),
            ..Default::default()
        });
    }
    NamesTable {
        networks: vec![NetworkNames {
            network: "minikind-lab".into(),
            containers,
        }],
    }
}

struct Setup {
    resolver: EmbeddedResolver,
    log: mpsc::UnboundedReceiver<String>,
}

async fn resolver_with(servers: &[SocketAddr], tweak: impl FnOnce(&mut EmbeddedConfig)) -> Setup {
    let (tx, log) = mpsc::unbounded_channel();
    let mut config = EmbeddedConfig {
        listen_ip: "127.0.0.1".parse().unwrap(),
        servers: servers.to_vec(),
        log: QueryLog::Channel(tx),
        ..Default::default()
    };
    tweak(&mut config);
    let resolver = EmbeddedResolver::start(config, &lab_names())
        .await
        .expect("resolver starts on loopback");
    Setup { resolver, log }
}

async fn resolver(servers: &[SocketAddr]) -> Setup {
    resolver_with(servers, |_| {}).await
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

impl Setup {
    async fn ask(&self, proto: Proto, name: &str, qtype: RecordType) -> Message {
        self.ask_msg(proto, &query(name, qtype, None)).await
    }

    async fn ask_msg(&self, proto: Proto, msg: &Message) -> Message {
        let addr = match proto {
            Proto::Udp => self.resolver.udp_addr(),
            Proto::Tcp => self.resolver.tcp_addr(),
        };
        exchange(addr, proto, msg, TIMEOUT)
            .await
            .expect("resolver replies")
    }
}

fn ipv4s(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .map(|ip| ip.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Local names

#[tokio::test]
async fn listens_on_two_distinct_random_ports() {
    let s = resolver(&[]).await;
    assert_ne!(s.resolver.udp_addr().port(), 0);
    assert_ne!(s.resolver.tcp_addr().port(), 0);
    let rules = s.resolver.rules().unwrap();
    assert_eq!(rules.udp_port, s.resolver.udp_addr().port());
    assert_eq!(rules.tcp_port, s.resolver.tcp_addr().port());
}

#[tokio::test]
async fn every_name_form_answers_with_ttl_600_ra_and_no_aa() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let s = resolver(&[upstream.addr]).await;
    for name in [
        "lab-control-plane.",
        "LAB-CONTROL-PLANE.",
        "Lab-Control-Plane.Minikind-Lab.",
        "4f1e2d3c4b5a.",
        "cp.internal.",
        "api.",
        "api.minikind-lab.",
    ] {
        for proto in [Proto::Udp, Proto::Tcp] {
            let r = s.ask(proto, name, RecordType::A).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(r.metadata.recursion_available, "{name}: RA set");
            assert!(!r.metadata.authoritative, "{name}: AA not set");
            assert_eq!(ipv4s(&r), vec!["172.18.0.2"], "{name} {proto:?}");
            assert_eq!(r.answers[0].ttl, 600);
            assert_eq!(
                r.answers[0].name.to_ascii(),
                name,
                "the query's spelling is kept"
            );
        }
    }
    let r = s
        .ask(Proto::Udp, "lab-control-plane.", RecordType::AAAA)
        .await;
    assert_eq!(ipv4s(&r), vec!["fc00:f853:ccd:e793::2"]);
    assert!(
        upstream.seen().is_empty(),
        "local names are never forwarded"
    );
}

#[tokio::test]
async fn missing_family_is_nodata_and_not_forwarded() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let s = resolver(&[upstream.addr]).await;
    let r = s.ask(Proto::Udp, "lab-worker.", RecordType::AAAA).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    assert!(upstream.seen().is_empty());
}

#[tokio::test]
async fn answers_are_shuffled() {
    let s = resolver(&[]).await;
    let q = query("web.", RecordType::A, Some(4096));
    let mut orders = HashSet::new();
    for _ in 0..10 {
        let r = s.ask_msg(Proto::Udp, &q).await;
        let ips = ipv4s(&r);
        assert_eq!(ips.len(), 60);
        orders.insert(ips);
    }
    assert!(
        orders.len() > 1,
        "ten answers of 60 addresses all came in one order"
    );
}

#[tokio::test]
async fn local_answers_truncate_to_512_edns_size_and_65535_on_tcp() {
    let s = resolver(&[]).await;
    let plain = s.ask(Proto::Udp, "web.", RecordType::A).await;
    assert!(plain.metadata.truncation);
    assert!(plain.to_vec().unwrap().len() <= 512);
    // Names are written in full as Docker writes them: 12 header + 9 question + 25 × 19-byte
    // records = 496 bytes; a 26th would not fit, so Docker's client gets exactly 25 too.
    assert_eq!(plain.answers.len(), 25);

    let small_edns = s
        .ask_msg(Proto::Udp, &query("web.", RecordType::A, Some(700)))
        .await;
    assert!(small_edns.metadata.truncation);
    let len = small_edns.to_vec().unwrap().len();
    assert!(len <= 700 && len > 512, "{len}");

    let big_edns = s
        .ask_msg(Proto::Udp, &query("web.", RecordType::A, Some(4096)))
        .await;
    assert!(!big_edns.metadata.truncation);
    assert_eq!(big_edns.answers.len(), 60);

    let tcp = s.ask(Proto::Tcp, "web.", RecordType::A).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 60);
}

#[tokio::test]
async fn ptr_of_a_container_is_local_and_unknown_ptr_is_forwarded() {
    let upstream = FakeUpstream::rcode(ResponseCode::NXDomain).await;
    let s = resolver(&[upstream.addr]).await;
    let r = s
        .ask(Proto::Udp, "3.0.18.172.in-addr.arpa.", RecordType::PTR)
        .await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data.to_string(), "lab-worker.minikind-lab.");
    assert_eq!(r.answers[0].ttl, 600);
    assert!(upstream.seen().is_empty());

    let r = s
        .ask(Proto::Udp, "77.0.18.172.in-addr.arpa.", RecordType::PTR)
        .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        upstream.seen(),
        vec![(Proto::Udp, "77.0.18.172.in-addr.arpa.".to_string())]
    );
}

#[tokio::test]
async fn names_table_can_be_replaced_while_serving() {
    let s = resolver(&[]).await;
    let r = s.ask(Proto::Udp, "lab-worker2.", RecordType::A).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::ServFail,
        "unknown, no servers"
    );
    let mut table = lab_names();
    table.networks[0].containers.push(ContainerNames {
        name: "lab-worker2".into(),
        ipv4: Some("172.18.0.4".parse().unwrap()),
        ..Default::default()
    });
    s.resolver.names().replace(&table);
    let r = s.ask(Proto::Udp, "lab-worker2.", RecordType::A).await;
    assert_eq!(ipv4s(&r), vec!["172.18.0.4"]);
}

#[tokio::test]
async fn ndots_guard_keeps_single_labels_local() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 1)).await;
    let s = resolver_with(&[upstream.addr], |c| c.ndots_guard = true).await;
    let r = s.ask(Proto::Udp, "nginx.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    let r = s
        .ask(Proto::Udp, "nginx.example.test.", RecordType::A)
        .await;
    assert_eq!(ipv4s(&r), vec!["192.0.2.1"]);
    assert_eq!(upstream.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Forwarding

#[tokio::test]
async fn forwarding_keeps_the_clients_transport() {
    let upstream = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 10)).await;
    let s = resolver(&[upstream.addr]).await;
    let udp = s.ask(Proto::Udp, "www.example.test.", RecordType::A).await;
    let tcp = s.ask(Proto::Tcp, "www.example.test.", RecordType::A).await;
    assert_eq!(ipv4s(&udp), vec!["192.0.2.10"]);
    assert_eq!(ipv4s(&tcp), vec!["192.0.2.10"]);
    assert_eq!(
        udp.answers[0].ttl, 30,
        "forwarded answers are passed on unchanged"
    );
    assert_eq!(
        upstream.seen(),
        vec![
            (Proto::Udp, "www.example.test.".to_string()),
            (Proto::Tcp, "www.example.test.".to_string())
        ]
    );
}

#[tokio::test]
async fn servfail_and_refused_move_on_to_the_next_server_in_order() {
    let refused = FakeUpstream::rcode(ResponseCode::Refused).await;
    let servfail = FakeUpstream::rcode(ResponseCode::ServFail).await;
    let good = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 20)).await;
    let s = resolver(&[refused.addr, servfail.addr, good.addr]).await;
    let r = s.ask(Proto::Udp, "x.example.test.", RecordType::A).await;
    assert_eq!(ipv4s(&r), vec!["192.0.2.20"]);
    for server in [&refused, &servfail, &good] {
        assert_eq!(server.seen().len(), 1);
    }
}

#[tokio::test]
async fn nxdomain_is_returned_as_is() {
    let nx = FakeUpstream::rcode(ResponseCode::NXDomain).await;
    let good = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 20)).await;
    let s = resolver(&[nx.addr, good.addr]).await;
    let r = s.ask(Proto::Udp, "nope.example.test.", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(good.seen().is_empty());
}

#[tokio::test]
async fn only_three_servers_are_tried_and_none_answering_is_servfail() {
    let mut failing = Vec::new();
    for _ in 0..MAX_EXTERNAL_SERVERS {
        failing.push(FakeUpstream::rcode(ResponseCode::ServFail).await);
    }
    let fourth = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 4)).await;
    let mut servers: Vec<SocketAddr> = failing.iter().map(|f| f.addr).collect();
    servers.push(fourth.addr);
    let s = resolver(&servers).await;
    assert_eq!(s.resolver.servers().len(), 3);
    for proto in [Proto::Udp, Proto::Tcp] {
        let r = s.ask(proto, "x.example.test.", RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert!(r.metadata.recursion_available);
        assert_eq!(r.queries.len(), 1, "the question is echoed");
    }
    assert!(fourth.seen().is_empty(), "a fourth server is never used");
    for f in &failing {
        assert_eq!(f.seen().len(), 2);
    }
}

#[tokio::test]
async fn a_silent_server_times_out_and_the_next_one_answers() {
    assert_eq!(
        FORWARD_TIMEOUT,
        Duration::from_secs(4),
        "Docker's timeout per server"
    );
    assert_eq!(MAX_IN_FLIGHT, 1024);
    let silent = FakeUpstream::silent().await;
    let good = FakeUpstream::answering(Ipv4Addr::new(192, 0, 2, 30)).await;
    let timeout = Duration::from_millis(1000);
    let s = resolver_with(&[silent.addr, good.addr], |c| c.forward_timeout = timeout).await;
    for proto in [Proto::Udp, Proto::Tcp] {
        let start = Instant::now();
        let r = s.ask(proto, "slow.example.test.", RecordType::A).await;
        let elapsed = start.elapsed();
        assert_eq!(ipv4s(&r), vec!["192.0.2.30"], "{proto:?}");
        assert!(elapsed >= timeout, "{proto:?} answered after {elapsed:?}");
    }
    assert_eq!(silent.seen().len(), 2);
}

#[tokio::test]
async fn truncated_upstream_reply_is_passed_on_for_a_tcp_retry() {
    let upstream = FakeUpstream::start(
        Duration::ZERO,
        Arc::new(|q, proto| {
            let mut r = reply_a(q, Ipv4Addr::new(192, 0, 2, 40));
            if proto == Proto::Udp {
                r.answers.clear();
                r.metadata.truncation = true;
            }
            Some(r)
        }),
    )
    .await;
    let s = resolver(&[upstream.addr]).await;
    let udp = s.ask(Proto::Udp, "big.example.test.", RecordType::A).await;
    assert!(udp.metadata.truncation);
    assert!(udp.answers.is_empty());
    let tcp = s.ask(Proto::Tcp, "big.example.test.", RecordType::A).await;
    assert_eq!(ipv4s(&tcp), vec!["192.0.2.40"]);
}

#[tokio::test]
async fn queries_beyond_the_in_flight_limit_are_refused() {
    let slow = FakeUpstream::start(
        Duration::from_millis(2000),
        Arc::new(|q, _| Some(reply_a(q, Ipv4Addr::new(192, 0, 2, 50)))),
    )
    .await;
    let s = Arc::new(resolver_with(&[slow.addr], |c| c.max_in_flight = 2).await);
    let mut pending = Vec::new();
    for i in 0..2 {
        let s = s.clone();
        pending.push(tokio::spawn(async move {
            s.ask(Proto::Udp, &format!("q{i}.example.test."), RecordType::A)
                .await
        }));
    }
    // Let both reach the upstream before the third arrives.
    let deadline = Instant::now() + TIMEOUT;
    while slow.seen().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let start = Instant::now();
    let third = s.ask(Proto::Udp, "q2.example.test.", RecordType::A).await;
    assert_eq!(third.metadata.response_code, ResponseCode::Refused);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "refused at once, not after the upstream"
    );
    for p in pending {
        assert_eq!(ipv4s(&p.await.unwrap()), vec!["192.0.2.50"]);
    }
    // Capacity is back once they finished.
    let again = s.ask(Proto::Udp, "q3.example.test.", RecordType::A).await;
    assert_eq!(again.metadata.response_code, ResponseCode::NoError);
}

// ---------------------------------------------------------------------------------------------
// Logging

#[tokio::test]
async fn each_query_is_logged_in_coredns_format() {
    let upstream = FakeUpstream::rcode(ResponseCode::NXDomain).await;
    let mut s = resolver(&[upstream.addr]).await;
    let q = query("lab-worker.", RecordType::A, None);
    let r = s.ask_msg(Proto::Udp, &q).await;
    let line = tokio::time::timeout(TIMEOUT, s.log.recv())
        .await
        .unwrap()
        .unwrap();
    let expected = format!(
        " - {} \"A IN lab-worker. udp {} false 512\" NOERROR qr,rd,ra {} ",
        q.metadata.id,
        q.to_vec().unwrap().len(),
        encode(&r, Names::Uncompressed).unwrap().len()
    );
    assert!(line.starts_with("[INFO] 127.0.0.1:"), "{line}");
    assert!(line.contains(&expected), "{line}\nexpected {expected}");

    s.ask(Proto::Tcp, "gone.example.test.", RecordType::AAAA)
        .await;
    let line = tokio::time::timeout(TIMEOUT, s.log.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        line.contains("\"AAAA IN gone.example.test. tcp ")
            && line.contains(" false 65535\" NXDOMAIN qr,rd,ra "),
        "{line}"
    );
}

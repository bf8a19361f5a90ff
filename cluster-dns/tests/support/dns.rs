//! Test-side DNS: a client over UDP/TCP, free ports, and scriptable fake upstreams on loopback.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// A port free for both UDP and TCP on 127.0.0.1 right now. Picked at random below the
/// kernel's ephemeral range, so the sockets other tests open with port 0 cannot take it
/// between this check and the server's bind.
pub fn free_port() -> u16 {
    loop {
        let port: u16 = rand_port();
        let Ok(_u) = std::net::UdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn rand_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    20000 + (h.finish() % 12000) as u16
}

pub fn query_msg(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    let mut q = Query::query(Name::from_ascii(name).expect("name"), qtype);
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

pub async fn udp_raw(server: SocketAddr, wire: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    s.send_to(wire, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, s.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn tcp_raw(server: SocketAddr, wire: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).await.expect("connect");
    let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    s.write_all(&framed).await.expect("write");
    let len = tokio::time::timeout(Duration::from_secs(10), s.read_u16())
        .await
        .expect("tcp timeout")
        .expect("read len");
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf).await.expect("read body");
    buf
}

/// Sends a query and parses the reply (panics with the question on no answer).
pub async fn ask(server: SocketAddr, m: &Message, tcp: bool) -> (Message, usize) {
    let wire = m.to_vec().expect("encode");
    let out = if tcp {
        tcp_raw(server, &wire).await
    } else {
        udp_raw(server, &wire, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no UDP reply to {:?}", m.queries))
    };
    (Message::from_vec(&out).expect("decode reply"), out.len())
}

pub async fn q(server: SocketAddr, name: &str, qtype: RecordType, tcp: bool) -> Message {
    ask(server, &query_msg(name, qtype, None), tcp).await.0
}

/// Records as `name type rdata` text, sorted.
pub fn rrs(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

/// How a fake upstream answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// `A 192.0.2.10` for every A query (NOERROR, RA set), NXDOMAIN for everything else;
    /// `chain.example.org` is a CNAME to `real.example.org` (A 192.0.2.11, AAAA 2001:db8::11).
    Answer,
    Silent,
    ServFail,
    Refused,
    /// UDP replies carry TC and no answer; TCP answers fully.
    Truncate,
    /// Answers after a delay.
    Slow(u64),
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub tcp_conns: Arc<AtomicUsize>,
    /// Distinct source addresses UDP queries came from (one per client socket).
    pub udp_sources: Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>,
    /// Closes every TCP connection after its first answer (an upstream that does not keep
    /// connections open).
    pub close_after_answer: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn upstream_reply(req: &Message, b: Behaviour, tcp: bool) -> Message {
    let mut m = Message::response(req.metadata.id, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.queries = req.queries.clone();
    match b {
        Behaviour::ServFail => m.metadata.response_code = ResponseCode::ServFail,
        Behaviour::Refused => m.metadata.response_code = ResponseCode::Refused,
        Behaviour::Truncate if !tcp => m.metadata.truncation = true,
        _ => {
            let q = &req.queries[0];
            let chained = q.name.to_ascii().eq_ignore_ascii_case("chain.example.org.");
            if chained && matches!(q.query_type, RecordType::A | RecordType::AAAA) {
                // `chain` is a CNAME to `real`, which has both families.
                let real = Name::from_ascii("real.example.org.").expect("name");
                m.add_answer(Record::from_rdata(
                    q.name.clone(),
                    300,
                    RData::CNAME(hickory_proto::rr::rdata::CNAME(real.clone())),
                ));
                let rdata = if q.query_type == RecordType::A {
                    RData::A(A::new(192, 0, 2, 11))
                } else {
                    RData::AAAA(hickory_proto::rr::rdata::AAAA(
                        "2001:db8::11".parse().expect("address"),
                    ))
                };
                m.add_answer(Record::from_rdata(real, 300, rdata));
            } else if q.query_type == RecordType::A {
                m.add_answer(Record::from_rdata(
                    q.name.clone(),
                    300,
                    RData::A(A::new(192, 0, 2, 10)),
                ));
            } else if q.query_type == RecordType::NS {
                // health checks: NOERROR, empty
            } else {
                m.metadata.response_code = ResponseCode::NXDomain;
            }
        }
    }
    m
}

impl FakeUpstream {
    pub async fn start(b: Behaviour) -> FakeUpstream {
        // UDP and TCP on one port: retry until the TCP side of the UDP's port is free too.
        let (udp, tcp, addr) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (Arc::new(udp), tcp, addr);
            }
        };
        Self::serve(b, udp, tcp, addr)
    }

    /// On a given address (UDP and TCP), e.g. port 53 in a test's own network namespace.
    pub async fn start_at(b: Behaviour, addr: SocketAddr) -> FakeUpstream {
        let udp = Arc::new(UdpSocket::bind(addr).await.expect("bind udp"));
        let tcp = TcpListener::bind(addr).await.expect("bind tcp");
        Self::serve(b, udp, tcp, addr)
    }

    fn serve(
        b: Behaviour,
        udp: Arc<UdpSocket>,
        tcp: TcpListener,
        addr: SocketAddr,
    ) -> FakeUpstream {
        let (uq, tq) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tcp_conns = Arc::new(AtomicUsize::new(0));
        let udp_sources = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let close_after_answer = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        let uq2 = uq.clone();
        let sources = udp_sources.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                uq2.fetch_add(1, Ordering::SeqCst);
                sources.lock().expect("lock").insert(from);
                let udp = udp.clone();
                tokio::spawn(async move {
                    match b {
                        Behaviour::Silent => return,
                        Behaviour::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                        _ => {}
                    }
                    let out = upstream_reply(&req, b, false).to_vec().expect("encode");
                    let _ = udp.send_to(&out, from).await;
                });
            }
        }));
        let tq2 = tq.clone();
        let (conns2, close2) = (tcp_conns.clone(), close_after_answer.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                conns2.fetch_add(1, Ordering::SeqCst);
                let close = close2.clone();
                let tq = tq2.clone();
                tokio::spawn(async move {
                    while let Ok(len) = s.read_u16().await {
                        let mut buf = vec![0u8; len as usize];
                        if s.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let Ok(req) = Message::from_vec(&buf) else {
                            return;
                        };
                        tq.fetch_add(1, Ordering::SeqCst);
                        if b == Behaviour::Silent {
                            continue;
                        }
                        let out = upstream_reply(&req, b, true).to_vec().expect("encode");
                        let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&out);
                        if s.write_all(&framed).await.is_err() {
                            return;
                        }
                        if close.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                });
            }
        }));
        FakeUpstream {
            addr,
            udp_queries: uq,
            tcp_queries: tq,
            tcp_conns,
            udp_sources,
            close_after_answer,
            tasks,
        }
    }

    pub fn queries(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst) + self.tcp_queries.load(Ordering::SeqCst)
    }
}

/// Starts cluster-dns from Corefile text on loopback, with the loop hook collecting messages.
pub async fn start_server(
    corefile: &str,
) -> (
    Arc<minikind_cluster_dns::Instance>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let fatal = Arc::new(std::sync::Mutex::new(Vec::new()));
    let f2 = fatal.clone();
    let opts = minikind_cluster_dns::Options {
        dns_port: 53,
        fatal: Arc::new(move |m: &str| f2.lock().expect("lock").push(m.to_string())),
        udp_workers: 2,
        banner: false,
    };
    let inst = minikind_cluster_dns::Instance::start_text(corefile, opts)
        .await
        .expect("server starts");
    (inst, fatal)
}

/// A plain HTTP GET on loopback: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

//! A fake DNS server on loopback for the tool tests: UDP and TCP on one port, a fixed zone,
//! NXDOMAIN for unknown names, CNAME chasing, optional truncation over UDP and slow names, and a
//! log of the questions it received with the client's address and id (to check search-list
//! expansion and what the tools report about each exchange).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

#[derive(Default, Clone)]
pub struct Zone {
    records: HashMap<String, Vec<Record>>,
    truncate_udp: HashSet<String>,
    servfail: HashSet<String>,
    /// Names answered only after a pause.
    slow: HashMap<String, Duration>,
    /// Answer without the AA bit, as a forwarding resolver does.
    forwarded: bool,
}

fn key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

impl Zone {
    pub fn add(mut self, name: &str, ttl: u32, data: RData) -> Self {
        let record = Record::from_rdata(Name::from_ascii(key(name)).unwrap(), ttl, data);
        self.records.entry(key(name)).or_default().push(record);
        self
    }
    pub fn a(self, name: &str, ip: [u8; 4]) -> Self {
        self.add(name, 30, RData::A(A::new(ip[0], ip[1], ip[2], ip[3])))
    }
    pub fn aaaa(self, name: &str, ip: &str) -> Self {
        self.add(name, 30, RData::AAAA(AAAA(ip.parse().unwrap())))
    }
    pub fn cname(self, name: &str, target: &str) -> Self {
        self.add(
            name,
            30,
            RData::CNAME(CNAME(Name::from_ascii(key(target)).unwrap())),
        )
    }
    pub fn ptr(self, name: &str, target: &str) -> Self {
        self.add(
            name,
            30,
            RData::PTR(PTR(Name::from_ascii(key(target)).unwrap())),
        )
    }
    pub fn srv(self, name: &str, port: u16, target: &str) -> Self {
        self.add(
            name,
            30,
            RData::SRV(SRV::new(
                0,
                100,
                port,
                Name::from_ascii(key(target)).unwrap(),
            )),
        )
    }
    pub fn txt(self, name: &str, text: &str) -> Self {
        self.add(name, 28800, RData::TXT(TXT::new(vec![text.to_string()])))
    }
    pub fn truncated_over_udp(mut self, name: &str) -> Self {
        self.truncate_udp.insert(key(name));
        self
    }
    pub fn forwarded(mut self) -> Self {
        self.forwarded = true;
        self
    }
    pub fn servfail(mut self, name: &str) -> Self {
        self.servfail.insert(key(name));
        self
    }
    /// Answers `name` (whatever the type) after `pause`.
    pub fn slow(mut self, name: &str, pause: Duration) -> Self {
        self.slow.insert(key(name), pause);
        self
    }

    fn pause_for(&self, query: &Message) -> Option<Duration> {
        let q = query.queries.first()?;
        self.slow.get(&key(&q.name().to_string())).copied()
    }

    fn answer(&self, query: &Message, udp: bool) -> Message {
        let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
        reply.metadata.message_type = MessageType::Response;
        reply.metadata.authoritative = !self.forwarded;
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.queries = query.queries.clone();
        let Some(q) = query.queries.first() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        let mut name = key(&q.name().to_string());
        if self.servfail.contains(&name) {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply;
        }
        if udp && self.truncate_udp.contains(&name) {
            reply.metadata.truncation = true;
            return reply;
        }
        if !self.records.contains_key(&name) {
            reply.metadata.response_code = ResponseCode::NXDomain;
            return reply;
        }
        for _ in 0..8 {
            let Some(records) = self.records.get(&name) else {
                break;
            };
            let wanted: Vec<Record> = records
                .iter()
                .filter(|r| r.record_type() == q.query_type())
                .cloned()
                .collect();
            if !wanted.is_empty() {
                reply.answers.extend(wanted);
                break;
            }
            let Some(cname) = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME)
            else {
                break;
            };
            reply.answers.push(cname.clone());
            let RData::CNAME(target) = &cname.data else {
                break;
            };
            name = key(&target.0.to_string());
        }
        reply
    }
}

/// One query as the server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub name: String,
    pub rtype: RecordType,
    pub transport: &'static str,
    pub client: SocketAddr,
    pub id: u16,
}

type QuestionLog = Mutex<Vec<Received>>;

pub struct FakeDns {
    pub addr: SocketAddr,
    log: Arc<QuestionLog>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    pub fn start(zone: Zone) -> Self {
        // UDP and TCP on the same port: retry until a free pair is found.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let zone = Arc::new(zone);
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();

        let udp_thread = {
            let (zone, log, stop) = (zone.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    record(&log, &query, "udp", from);
                    if let Some(pause) = zone.pause_for(&query) {
                        std::thread::sleep(pause);
                    }
                    let reply = zone.answer(&query, true).to_vec().unwrap();
                    let _ = udp.send_to(&reply, from);
                }
            })
        };
        let tcp_thread = {
            let (zone, log, stop) = (zone.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut stream, from)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(2)))
                        .unwrap();
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut body).is_err() {
                        continue;
                    }
                    let Ok(query) = Message::from_vec(&body) else {
                        continue;
                    };
                    record(&log, &query, "tcp", from);
                    if let Some(pause) = zone.pause_for(&query) {
                        std::thread::sleep(pause);
                    }
                    let reply = zone.answer(&query, false).to_vec().unwrap();
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend(reply);
                    let _ = stream.write_all(&framed);
                }
            })
        };
        Self {
            addr,
            log,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    /// The questions received, as `name type transport`.
    pub fn questions(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.rtype, r.transport))
            .collect()
    }

    /// The queries received, with the client address and id.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Files with a resolv.conf naming this server (its port goes in `ToolEnv::dns_port`).
    pub fn files(&self, resolv_extra: &str, hosts: &str) -> Files {
        let mut f = files(
            &format!("nameserver {}\n{resolv_extra}", self.addr.ip()),
            hosts,
        );
        f.env.dns_port = self.addr.port();
        f
    }
}

fn record(log: &QuestionLog, query: &Message, transport: &'static str, client: SocketAddr) {
    if let Some(q) = query.queries.first() {
        log.lock().unwrap().push(Received {
            name: q.name().to_string(),
            rtype: q.query_type(),
            transport,
            client,
            id: query.metadata.id,
        });
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A temporary resolv.conf and hosts file.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub env: minikind_pod_tools::ToolEnv,
}

pub fn files(resolv_conf: &str, hosts: &str) -> Files {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("resolv.conf"), resolv_conf).unwrap();
    std::fs::write(dir.path().join("hosts"), hosts).unwrap();
    let env = minikind_pod_tools::ToolEnv {
        resolv_conf: dir.path().join("resolv.conf"),
        hosts: dir.path().join("hosts"),
        dns_port: 53,
    };
    Files { dir, env }
}

/// The zone the tests share: a small cluster.
pub fn cluster_zone() -> Zone {
    Zone::default()
        .a("kubernetes.default.svc.cluster.local", [10, 96, 0, 1])
        .a("busybox-svc.default.svc.cluster.local", [10, 96, 123, 4])
        .srv(
            "_http._tcp.busybox-svc.default.svc.cluster.local",
            1234,
            "busybox-svc.default.svc.cluster.local",
        )
        .a("web.hogehoge.svc.cluster.local", [10, 96, 81, 224])
        .a("www.example.test", [192, 0, 2, 10])
        .aaaa("www.example.test", "2001:db8::10")
        .cname("alias.example.test", "www.example.test")
        .txt("dns-version.cluster.local", "1.1.0")
        .ptr(
            "1.0.96.10.in-addr.arpa",
            "kubernetes.default.svc.cluster.local",
        )
        .a("big.example.test", [192, 0, 2, 20])
        .truncated_over_udp("big.example.test")
        .servfail("broken.example.test")
}

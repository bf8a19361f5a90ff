//! DNS listeners: UDP (one SO_REUSEPORT socket per worker) and TCP on each address, the zone →
//! server block selection (longest zone wins), and the checks before any plugin runs
//! (FORMERR, NOTIMP, BADVERS, REFUSED for no zone or a class other than IN).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use ipnet::IpNet;
use minikind_dns_log::{Proto, rcode_name};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::chain::{Block, Pending};
use crate::corefile::address::address_from_reverse;
use crate::dnsmsg::{Reply, Request, encode, finalize, finalize_wire, formerr_for, in_zone};
use crate::metrics::registry;

/// The blocks reachable on one listening address, longest zone first.
pub struct ZoneTable {
    pub entries: Vec<(String, Option<IpNet>, Arc<Block>)>,
    /// Shown as the "to" side of the loop message and in logs (`:53` for a wildcard bind).
    pub display: String,
}

impl ZoneTable {
    pub fn new(mut entries: Vec<(String, Option<IpNet>, Arc<Block>)>, display: String) -> Self {
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        ZoneTable { entries, display }
    }

    /// The block serving a name: the longest zone containing it (reverse zones written as a
    /// CIDR also require the address to be inside the network).
    pub fn select(&self, qname_lc: &str) -> Option<(&str, &Arc<Block>)> {
        for (zone, net, block) in &self.entries {
            if !in_zone(qname_lc, zone) {
                continue;
            }
            if let Some(net) = net {
                match address_from_reverse(qname_lc) {
                    Some(ip) if net.contains(&ip) => {}
                    _ => continue,
                }
            }
            return Some((zone.as_str(), block));
        }
        None
    }
}

/// A swappable zone table (reload replaces it without closing sockets).
pub type SharedTable = Arc<RwLock<Arc<ZoneTable>>>;

/// What serving a packet without waiting gave.
pub enum Step {
    /// Nothing to send.
    Drop,
    /// The reply, ready for the wire.
    Done(Vec<u8>),
    /// Needs the network (forward, CNAME chase): finish with [`Later::run`].
    Later(Box<Later>),
}

/// A query whose answer needs an await.
pub struct Later {
    req: Request,
    block: Arc<Block>,
    zone: String,
    listener: String,
    pending: Pending,
    started: Instant,
}

impl Later {
    pub async fn run(self) -> Vec<u8> {
        let reply = self
            .block
            .finish(&self.req, &self.listener, self.pending)
            .await;
        complete(&self.block, &self.zone, &self.req, reply, self.started)
    }
}

/// Parses and checks a packet and runs the synchronous part of the chain.
pub fn prepare(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Step {
    if buf.len() < 12 || buf[2] & 0x80 != 0 {
        return Step::Drop;
    }
    if let Some(step) = crate::fastpath::serve(table, buf, client, local, proto) {
        return step;
    }
    prepare_decoded(table, buf, client, local, proto, true)
}

/// The general path: decodes the packet, checks it, and runs the chain from its start (or,
/// with `with_cache` false, from the plugin after the cache, whose miss the caller counted).
pub fn prepare_decoded(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
    with_cache: bool,
) -> Step {
    let started = Instant::now();
    let msg = match Message::from_vec(buf) {
        Ok(m) => m,
        Err(_) => return formerr_for(buf).map_or(Step::Drop, Step::Done),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Step::Drop;
    }
    if msg.metadata.op_code != OpCode::Query {
        let mut m = Message::response(msg.metadata.id, msg.metadata.op_code);
        m.metadata.response_code = ResponseCode::NotImp;
        m.queries = msg.queries.clone();
        return Step::Done(encode(&m));
    }
    let edns_version = msg.edns.as_ref().map(|e| e.version()).unwrap_or(0);
    let Some(req) = Request::new(msg, client, local, proto, buf.len()) else {
        return formerr_for(buf).map_or(Step::Drop, Step::Done);
    };
    if edns_version > 0 {
        let m = req.reply_rcode(ResponseCode::BADVERS);
        return Step::Done(finalize(&req, m));
    }
    let selected = table.select(&req.qname_lc);
    let Some((zone, block)) = selected.filter(|_| req.qclass == DNSClass::IN) else {
        let m = req.reply_rcode(ResponseCode::Refused);
        return Step::Done(finalize(&req, m));
    };
    let served = if with_cache {
        block.serve_sync(&req, &table.display)
    } else {
        block.serve_uncached(&req)
    };
    match served {
        Ok(reply) => Step::Done(complete(block, zone, &req, reply, started)),
        Err(pending) => Step::Later(Box::new(Later {
            req,
            block: block.clone(),
            zone: zone.to_string(),
            listener: table.display.clone(),
            pending,
            started,
        })),
    }
}

/// Serves one packet; None means drop it.
pub async fn handle_packet(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Option<Vec<u8>> {
    match prepare(table, buf, client, local, proto) {
        Step::Drop => None,
        Step::Done(v) => Some(v),
        Step::Later(l) => Some(l.run().await),
    }
}

/// Finalizes a reply for the wire, with the errors, log and prometheus plugins' side effects.
fn complete(block: &Block, zone: &str, req: &Request, reply: Reply, started: Instant) -> Vec<u8> {
    let rcode = reply.msg.metadata.response_code;
    if let (Some(e), Some(err)) = (&block.errors, &reply.error) {
        e.report(
            u16::from(rcode),
            &req.qname.to_ascii(),
            &req.qtype.to_string(),
            err,
        );
    }
    let log_copy = block.log.as_ref().map(|_| reply.message());
    let out = match reply.wire {
        Some(w) => finalize_wire(req, w),
        None => finalize(req, reply.msg),
    };
    let took = started.elapsed();
    if let (Some(l), Some(m)) = (&block.log, log_copy) {
        l.log(req, &m, out.len(), took);
    }
    if block.prometheus.is_some() {
        let asked = Asked {
            client: req.client,
            proto: req.proto,
            qtype: req.qtype,
            size: req.size,
        };
        record_metrics(block, zone, &asked, rcode, reply.plugin, out.len(), took);
    }
    out
}

/// What the request metrics are labelled and measured with.
pub(crate) struct Asked {
    pub client: SocketAddr,
    pub proto: Proto,
    pub qtype: RecordType,
    pub size: usize,
}

pub(crate) fn record_metrics(
    block: &Block,
    zone: &str,
    req: &Asked,
    rcode: ResponseCode,
    plugin: &str,
    rsize: usize,
    took: Duration,
) {
    let r = registry();
    let family = if req.client.is_ipv4() { "1" } else { "2" };
    let qtype = req.qtype.to_string();
    let server = block.server.as_str();
    r.requests
        .with(&[server, zone, "", req.proto.as_str(), family, &qtype])
        .inc();
    r.responses
        .with(&[server, zone, "", &rcode_name(u16::from(rcode)), plugin])
        .inc();
    r.request_duration
        .with(&[server, zone, "", &qtype])
        .observe_duration(took);
    r.request_size
        .with(&[server, zone, "", req.proto.as_str()])
        .observe(req.size);
    r.response_size
        .with(&[server, zone, "", req.proto.as_str()])
        .observe(rsize);
}

/// A bound address with its UDP worker threads and TCP task.
pub struct Listener {
    pub addr: SocketAddr,
    pub table: SharedTable,
    tasks: Vec<JoinHandle<()>>,
    _udp: crate::udp::UdpWorkers,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_port(true)?;
    s.set_recv_buffer_size(4 << 20).ok();
    // Blocking: the worker threads wait in recvmmsg itself (see udp.rs).
    s.bind(&addr.into())?;
    Ok(s)
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

impl Listener {
    /// Binds UDP and TCP on `addr` and starts serving with `table`.
    pub fn bind(
        addr: SocketAddr,
        table: SharedTable,
        udp_workers: usize,
    ) -> std::io::Result<Listener> {
        let tcp = TcpListener::from_std(tcp_listener(addr)?)?;
        let mut socks = Vec::new();
        for _ in 0..udp_workers.max(1) {
            socks.push(udp_socket(addr)?);
        }
        let udp = crate::udp::UdpWorkers::start(socks, table.clone())?;
        let tasks = vec![tokio::spawn(tcp_loop(tcp, table.clone()))];
        Ok(Listener {
            addr,
            table,
            tasks,
            _udp: udp,
        })
    }
}

async fn tcp_loop(listener: TcpListener, table: SharedTable) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok((s, c)) => (s, unmap(c)),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let table = table.clone();
        tokio::spawn(async move {
            let (mut rd, wr) = stream.into_split();
            let wr = Arc::new(tokio::sync::Mutex::new(wr));
            loop {
                // Idle connections are closed after 10 s, as CoreDNS does.
                let len = match tokio::time::timeout(Duration::from_secs(10), rd.read_u16()).await {
                    Ok(Ok(l)) => l as usize,
                    _ => return,
                };
                let mut buf = vec![0u8; len];
                if tokio::time::timeout(Duration::from_secs(10), rd.read_exact(&mut buf))
                    .await
                    .is_err()
                {
                    return;
                }
                let t = match table.read() {
                    Ok(g) => g.clone(),
                    Err(_) => return,
                };
                let wr = wr.clone();
                // Pipelined queries are answered as each is ready.
                tokio::spawn(async move {
                    if let Some(out) = handle_packet(&t, &buf, client, local, Proto::Tcp).await {
                        let mut framed = Vec::with_capacity(out.len() + 2);
                        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
                        framed.extend_from_slice(&out);
                        let _ = wr.lock().await.write_all(&framed).await;
                    }
                });
            }
        });
    }
}

/// IPv4 clients of a dual-stack socket appear as `::ffff:a.b.c.d`; report them as IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        a => a,
    }
}

/// The text shown for a listening address: `:53` for a wildcard, else `ip:port`.
pub fn display_addr(ip: Option<IpAddr>, port: u16) -> String {
    match ip {
        None => format!(":{port}"),
        Some(ip) if ip.is_unspecified() => format!(":{port}"),
        Some(IpAddr::V6(v)) => format!("[{v}]:{port}"),
        Some(ip) => format!("{ip}:{port}"),
    }
}

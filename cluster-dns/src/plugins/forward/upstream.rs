//! One upstream server: exchanging a query over UDP or TCP on pooled connections, and the
//! health check that runs after a failure until the server answers again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use minikind_dns_log::Proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::pool::{Conn, Pool};
use crate::metrics::registry;

/// How long one health check may take (coredns plugin/pkg/proxy/health.go's
/// `hcReadTimeout` and `hcWriteTimeout`).
const HC_TIMEOUT: Duration = Duration::from_secs(1);

/// The query with a fresh id on the wire: (wire, the fresh id, the largest UDP reply it
/// allows, the client's id).
fn encode(query: &Message) -> Result<(Vec<u8>, u16, usize, u16), String> {
    let mut q = query.clone();
    let client_id = q.metadata.id;
    let id: u16 = rand::random();
    q.metadata.id = id;
    let wire = q.to_vec().map_err(|e| format!("encoding the query: {e}"))?;
    Ok((wire, id, udp_size(&q), client_id))
}

/// The largest UDP reply a query allows: its EDNS size, else 512.
fn udp_size(q: &Message) -> usize {
    q.edns
        .as_ref()
        .map(|e| e.max_payload())
        .unwrap_or(512)
        .max(512) as usize
}

pub struct Upstream {
    pub addr: SocketAddr,
    fails: AtomicU32,
    checking: AtomicBool,
    sweeping: AtomicBool,
    pool: Pool,
    hc: HealthCheck,
}

/// How the health check asks (coredns plugin/pkg/proxy/health.go): `<domain> IN NS` every
/// `interval`, over TCP when the forward has `force_tcp`.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    pub domain: String,
    pub recursion_desired: bool,
    pub proto: Proto,
}

/// Why one exchange on a connection failed.
enum ConnError {
    /// The peer had closed a pooled connection (EOF, reset, broken pipe before any reply):
    /// CoreDNS's `ErrCachedClosed`, retried on a fresh connection and not counted as a failure.
    Closed,
    Other(String),
}

impl ConnError {
    fn from_io(cached: bool, what: String, e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        if cached && matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe) {
            ConnError::Closed
        } else {
            ConnError::Other(format!("{what}: {e}"))
        }
    }
}

impl Upstream {
    pub fn new(addr: SocketAddr, expire: Duration, hc: HealthCheck) -> Self {
        Upstream {
            addr,
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
            sweeping: AtomicBool::new(false),
            pool: Pool::new(expire),
            hc,
        }
    }

    /// Down once more health checks failed in a row than `max_fails` (0 disables).
    pub fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) > max_fails
    }

    pub fn fails(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    /// How this upstream's health is checked.
    pub fn health_check(&self) -> &HealthCheck {
        &self.hc
    }

    /// Idle pooled connections of a transport.
    pub fn idle_conns(&self, proto: Proto) -> usize {
        self.pool.idle(proto)
    }

    /// Sends `query` (with a fresh id) on a pooled connection, or a new one, and returns the
    /// reply with the query's id. The connection goes back to the pool after a complete
    /// exchange and is closed after any error (coredns plugin/pkg/proxy/connect.go).
    pub async fn exchange(
        self: &Arc<Self>,
        query: &Message,
        proto: Proto,
        timeout: Duration,
    ) -> Result<Message, String> {
        let (wire, id, size, client_id) = encode(query)?;
        let fut = async {
            loop {
                let (mut conn, cached) = match self.pool.take(proto) {
                    Some(c) => {
                        self.count_conn(true, proto);
                        (c, true)
                    }
                    None => {
                        self.count_conn(false, proto);
                        (self.dial(proto).await?, false)
                    }
                };
                match self.exchange_on(&mut conn, cached, &wire, id, size).await {
                    Ok(m) => {
                        self.pool.put(conn);
                        self.start_sweeper();
                        return Ok(m);
                    }
                    // The upstream closed an idle connection: try again on a new one.
                    Err(ConnError::Closed) => continue,
                    Err(ConnError::Other(e)) => return Err(e),
                }
            }
        };
        let mut m = match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(format!(
                    "read {} {}: i/o timeout",
                    proto.as_str(),
                    self.addr
                ));
            }
        };
        m.metadata.id = client_id;
        Ok(m)
    }

    fn count_conn(&self, hit: bool, proto: Proto) {
        let r = registry();
        let family = if hit {
            &r.proxy_conn_cache_hits
        } else {
            &r.proxy_conn_cache_misses
        };
        family
            .with(&["forward", &self.addr.to_string(), proto.as_str()])
            .inc();
    }

    async fn dial(&self, proto: Proto) -> Result<Conn, String> {
        let dial_err = |e: std::io::Error| format!("dial {} {}: {e}", proto.as_str(), self.addr);
        match proto {
            Proto::Udp => {
                let bind: SocketAddr = if self.addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let sock = UdpSocket::bind(bind).await.map_err(dial_err)?;
                sock.connect(self.addr).await.map_err(dial_err)?;
                Ok(Conn::Udp(sock))
            }
            Proto::Tcp => Ok(Conn::Tcp(
                TcpStream::connect(self.addr).await.map_err(dial_err)?,
            )),
        }
    }

    async fn exchange_on(
        &self,
        conn: &mut Conn,
        cached: bool,
        wire: &[u8],
        id: u16,
        size: usize,
    ) -> Result<Message, ConnError> {
        let io = |what: &str, e| ConnError::from_io(cached, format!("{what} {}", self.addr), e);
        let bad = |e| ConnError::Other(format!("bad reply from {}: {e}", self.addr));
        match conn {
            Conn::Udp(sock) => {
                sock.send(wire).await.map_err(|e| io("write udp", e))?;
                // As large as the reply may be (the size the query advertises): a 64 KiB
                // buffer per query in flight would bloat the heap under load.
                let mut buf = vec![0u8; size];
                loop {
                    let n = sock.recv(&mut buf).await.map_err(|e| io("read udp", e))?;
                    if n < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                        continue; // a stray or late datagram
                    }
                    return Message::from_vec(&buf[..n]).map_err(bad);
                }
            }
            Conn::Tcp(s) => {
                let mut framed = Vec::with_capacity(wire.len() + 2);
                framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
                framed.extend_from_slice(wire);
                s.write_all(&framed).await.map_err(|e| io("write tcp", e))?;
                loop {
                    let len = s.read_u16().await.map_err(|e| io("read tcp", e))? as usize;
                    let mut buf = vec![0u8; len];
                    s.read_exact(&mut buf)
                        .await
                        .map_err(|e| io("read tcp", e))?;
                    if len < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                        continue; // an out-of-order reply
                    }
                    return Message::from_vec(&buf).map_err(bad);
                }
            }
        }
    }

    /// Closes idle connections every `expire` while any are pooled (one sweeper at a time; a
    /// weak handle, so an upstream dropped by a reload stops it).
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let every = self.pool.expire();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(me) = weak.upgrade() else { return };
                if me.pool.sweep() == 0 {
                    me.sweeping.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// One health check: `<domain> IN NS`; any reply counts as healthy.
    /// Its own connection, not a pooled one, as CoreDNS's health checker has its own client.
    async fn check_once(&self) -> bool {
        let mut m = Message::query();
        m.metadata.recursion_desired = self.hc.recursion_desired;
        let name = Name::from_ascii(&self.hc.domain).unwrap_or_else(|_| Name::root());
        m.add_query(Query::query(name, RecordType::NS));
        let Ok((wire, id, size, _)) = encode(&m) else {
            return false;
        };
        let proto = self.hc.proto;
        let once = async {
            let mut conn = self.dial(proto).await.ok()?;
            self.exchange_on(&mut conn, false, &wire, id, size)
                .await
                .ok()
        };
        matches!(tokio::time::timeout(HC_TIMEOUT, once).await, Ok(Some(_)))
    }

    /// Starts checking every interval until the upstream answers (once at a time); each failed
    /// check counts towards `max_fails`.
    pub fn start_health_check(self: &Arc<Self>) {
        if self.checking.swap(true, Ordering::AcqRel) {
            return;
        }
        // A weak handle: a forward dropped by a reload stops its checks.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                if me.check_once().await {
                    me.fails.store(0, Ordering::Relaxed);
                    me.checking.store(false, Ordering::Release);
                    return;
                }
                me.fails.fetch_add(1, Ordering::Relaxed);
                registry()
                    .forward_healthcheck_failures
                    .with(&[&me.addr.to_string()])
                    .inc();
                let interval = me.hc.interval;
                drop(me);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

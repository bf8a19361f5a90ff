//! One upstream server: exchanging a query over UDP or TCP, and the health check that runs
//! after a failure until the server answers again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use minikind_dns_log::Proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::metrics::registry;

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
    hc_interval: Duration,
    hc_domain: String,
    hc_rd: bool,
}

impl Upstream {
    pub fn new(addr: SocketAddr, hc_interval: Duration, hc_domain: String, hc_rd: bool) -> Self {
        Upstream {
            addr,
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
            hc_interval,
            hc_domain,
            hc_rd,
        }
    }

    /// Down once more health checks failed in a row than `max_fails` (0 disables).
    pub fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) > max_fails
    }

    pub fn fails(&self) -> u32 {
        self.fails.load(Ordering::Relaxed)
    }

    /// Sends `query` (with a fresh id) and returns the reply with the query's id.
    pub async fn exchange(
        &self,
        query: &Message,
        proto: Proto,
        timeout: Duration,
    ) -> Result<Message, String> {
        let mut q = query.clone();
        let client_id = q.metadata.id;
        let id: u16 = rand::random();
        q.metadata.id = id;
        let wire = q.to_vec().map_err(|e| format!("encoding the query: {e}"))?;
        let fut = async {
            match proto {
                Proto::Udp => self.exchange_udp(&wire, id, udp_size(&q)).await,
                Proto::Tcp => self.exchange_tcp(&wire, id).await,
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

    async fn exchange_udp(&self, wire: &[u8], id: u16, size: usize) -> Result<Message, String> {
        let bind: SocketAddr = if self.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("dial udp {}: {e}", self.addr))?;
        sock.connect(self.addr)
            .await
            .map_err(|e| format!("dial udp {}: {e}", self.addr))?;
        sock.send(wire)
            .await
            .map_err(|e| format!("write udp {}: {e}", self.addr))?;
        // As large as the reply may be (the size the query advertises): a 64 KiB buffer per
        // query in flight would bloat the heap under load.
        let mut buf = vec![0u8; size];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| format!("read udp {}: {e}", self.addr))?;
            if n < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue; // a stray or late datagram
            }
            return Message::from_vec(&buf[..n])
                .map_err(|e| format!("bad reply from {}: {e}", self.addr));
        }
    }

    async fn exchange_tcp(&self, wire: &[u8], id: u16) -> Result<Message, String> {
        let mut s = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("dial tcp {}: {e}", self.addr))?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(wire);
        s.write_all(&framed)
            .await
            .map_err(|e| format!("write tcp {}: {e}", self.addr))?;
        loop {
            let len =
                s.read_u16()
                    .await
                    .map_err(|e| format!("read tcp {}: {e}", self.addr))? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf)
                .await
                .map_err(|e| format!("read tcp {}: {e}", self.addr))?;
            if len < 2 || u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue;
            }
            return Message::from_vec(&buf)
                .map_err(|e| format!("bad reply from {}: {e}", self.addr));
        }
    }

    /// One health check: `<domain> IN NS`; any reply counts as healthy.
    async fn check_once(&self) -> bool {
        let mut m = Message::query();
        m.metadata.recursion_desired = self.hc_rd;
        let name = Name::from_ascii(&self.hc_domain).unwrap_or_else(|_| Name::root());
        m.add_query(Query::query(name, RecordType::NS));
        self.exchange(&m, Proto::Udp, Duration::from_secs(1))
            .await
            .is_ok()
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
                let interval = me.hc_interval;
                drop(me);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

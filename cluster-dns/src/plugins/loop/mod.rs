//! `loop`: detects forwarding loops. At start the server sends itself
//! `HINFO <random>.<random>.<zone>`; if that query comes back through the chain more than twice
//! the upstream sends our own queries back to us, and the server stops with CoreDNS's fatal
//! message (`Loop (<from> -> <to>) detected for zone "<zone>"`) (coredns plugin/loop/loop.go,
//! setup.go).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::corefile::{CorefileError, Directive};
use crate::dnsmsg::Request;

pub struct Loop {
    pub zone: String,
    /// Lower-case probe name.
    pub qname: String,
    seen: AtomicU32,
    disabled: AtomicBool,
}

impl Loop {
    pub fn parse(d: &Directive, block_zones: &[String]) -> Result<Self, CorefileError> {
        if !d.args.is_empty() || !d.block.is_empty() {
            return Err(d.err("takes no arguments"));
        }
        let zone = block_zones.first().cloned().unwrap_or_else(|| ".".into());
        let a: u64 = rand::random::<u64>() >> 1;
        let b: u64 = rand::random::<u64>() >> 1;
        let qname = if zone == "." {
            format!("{a}.{b}.")
        } else {
            format!("{a}.{b}.{zone}")
        };
        Ok(Loop {
            zone,
            qname,
            seen: AtomicU32::new(0),
            disabled: AtomicBool::new(false),
        })
    }

    /// Counts the probe; Some(message) when a loop is proven.
    pub fn observe(&self, req: &Request, listener: &str) -> Option<String> {
        if req.qtype != RecordType::HINFO
            || self.disabled.load(Ordering::Relaxed)
            || req.qname_lc != self.qname
        {
            return None;
        }
        let n = self.seen.fetch_add(1, Ordering::AcqRel) + 1;
        if n > 2 {
            return Some(format!(
                "Loop ({} -> {}) detected for zone \"{}\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
                req.client, listener, self.zone, self.qname
            ));
        }
        None
    }

    pub fn reset(&self) {
        self.seen.store(0, Ordering::Release);
    }

    pub fn disable(&self) {
        self.disabled.store(true, Ordering::Release);
    }

    /// How long the start-up probing goes on at most.
    pub const PROBE_WINDOW: Duration = Duration::from_secs(30);

    /// Sends the probe to the block's own listener at `target` until something answers
    /// ([`Loop::PROBE_WINDOW`] at most), then disables the check.
    pub async fn probe_until_answered(&self, target: SocketAddr) {
        let deadline = Instant::now() + Self::PROBE_WINDOW;
        while Instant::now() < deadline {
            if probe(target, &self.qname).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.disable();
                return;
            }
            self.reset();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.disable();
    }
}

/// One loop probe over UDP; Ok when any reply came back within 2 s.
async fn probe(target: SocketAddr, qname: &str) -> anyhow::Result<()> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(qname)?, RecordType::HINFO));
    let sock = tokio::net::UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await?;
    sock.send_to(&m.to_vec()?, target).await?;
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await??;
    Ok(())
}

//! `loop`: detects forwarding loops. At start the server sends itself
//! `HINFO <random>.<random>.<zone>`; if that query comes back through the chain more than twice
//! the upstream sends our own queries back to us, and the server stops with CoreDNS's fatal
//! message (`Loop (<from> -> <to>) detected for zone "<zone>"`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::rr::RecordType;

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
}

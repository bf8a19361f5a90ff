//! `cache [TTL] [ZONES...] { success|denial CAP [TTL] [MINTTL]; prefetch N [DUR] [PCT%];
//! serve_stale [DUR]; servfail DUR; disable success|denial; keepttl }`.
//! A success and a denial cache (9984 entries each by default, random eviction), TTLs capped,
//! negative answers cached only when they carry an SOA, SERVFAIL cached briefly.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_proto::op::Message;

use crate::corefile::{CorefileError, Directive, address::normalize_zone};
use crate::dnsmsg::{Request, in_zone};
use crate::metrics::{Counter, registry};
use crate::pkg::slots::Slots;
use crate::pkg::wire::{self, WireEntry};

const DEFAULT_CAP: usize = 9984;
const SHARDS: usize = 64;

#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub zones: Vec<String>,
    pub success_cap: usize,
    pub success_max_ttl: Duration,
    pub success_min_ttl: Duration,
    pub denial_cap: usize,
    pub denial_max_ttl: Duration,
    pub denial_min_ttl: Duration,
    pub prefetch: usize,
    pub prefetch_window: Duration,
    pub prefetch_pct: u32,
    pub serve_stale: Option<Duration>,
    pub servfail_ttl: Duration,
    pub disable_success: bool,
    pub disable_denial: bool,
    pub keepttl: bool,
}

impl CacheOptions {
    pub fn parse(d: &Directive, block_zones: &[String]) -> Result<Self, CorefileError> {
        let mut o = CacheOptions {
            zones: Vec::new(),
            success_cap: DEFAULT_CAP,
            success_max_ttl: Duration::from_secs(3600),
            success_min_ttl: Duration::from_secs(5),
            denial_cap: DEFAULT_CAP,
            denial_max_ttl: Duration::from_secs(1800),
            denial_min_ttl: Duration::from_secs(5),
            prefetch: 0,
            prefetch_window: Duration::from_secs(60),
            prefetch_pct: 10,
            serve_stale: None,
            servfail_ttl: Duration::from_secs(5),
            disable_success: false,
            disable_denial: false,
            keepttl: false,
        };
        let mut args = d.args.iter().peekable();
        if let Some(t) = args.peek()
            && let Ok(ttl) = t.text.parse::<u64>()
        {
            if ttl == 0 {
                return Err(t.err("plugin/cache: cache TTL can not be zero"));
            }
            o.success_max_ttl = Duration::from_secs(ttl);
            o.denial_max_ttl = Duration::from_secs(ttl);
            args.next();
        }
        for z in args {
            o.zones
                .push(normalize_zone(&z.text).map_err(|e| z.err(format!("plugin/cache: {e}")))?);
        }
        if o.zones.is_empty() {
            o.zones = block_zones.to_vec();
        }
        for line in &d.block {
            let a = line.arg_strs();
            let bad = |m: String| line.err(format!("plugin/cache: {}: {m}", line.name.text));
            let num = |s: &str| {
                s.parse::<u64>()
                    .map_err(|_| bad(format!("'{s}' is not a number")))
            };
            match line.name.text.as_str() {
                kind @ ("success" | "denial") => {
                    if a.is_empty() || a.len() > 3 {
                        return Err(bad("needs CAPACITY [TTL] [MINTTL]".into()));
                    }
                    let cap = num(a[0])? as usize;
                    let max = a
                        .get(1)
                        .map(|s| num(s))
                        .transpose()?
                        .map(Duration::from_secs);
                    let min = a
                        .get(2)
                        .map(|s| num(s))
                        .transpose()?
                        .map(Duration::from_secs);
                    if kind == "success" {
                        o.success_cap = cap;
                        o.success_max_ttl = max.unwrap_or(o.success_max_ttl);
                        o.success_min_ttl = min.unwrap_or(o.success_min_ttl);
                    } else {
                        o.denial_cap = cap;
                        o.denial_max_ttl = max.unwrap_or(o.denial_max_ttl);
                        o.denial_min_ttl = min.unwrap_or(o.denial_min_ttl);
                    }
                }
                "prefetch" => {
                    let Some(n) = a.first() else {
                        return Err(bad("needs AMOUNT".into()));
                    };
                    o.prefetch = num(n)?.max(1) as usize;
                    for extra in &a[1..] {
                        if let Some(p) = extra.strip_suffix('%') {
                            let p = num(p)?;
                            if !(10..=90).contains(&p) {
                                return Err(bad("percentage must be in range [10, 90]".into()));
                            }
                            o.prefetch_pct = p as u32;
                        } else {
                            o.prefetch_window = crate::util::parse_duration(extra).map_err(bad)?;
                        }
                    }
                }
                "serve_stale" => {
                    let dur = match a.first() {
                        Some(d) => crate::util::parse_duration(d).map_err(bad)?,
                        None => Duration::from_secs(3600),
                    };
                    if let Some(mode) = a.get(1)
                        && *mode != "immediate"
                    {
                        return Err(bad(format!(
                            "refresh mode '{mode}' is not supported (only immediate)"
                        )));
                    }
                    o.serve_stale = Some(dur);
                }
                "servfail" => match a.as_slice() {
                    [d] => {
                        let d = crate::util::parse_duration(d).map_err(bad)?;
                        if d > Duration::from_secs(300) {
                            return Err(bad(
                                "caching SERVFAIL responses over 5 minutes is not permitted".into(),
                            ));
                        }
                        o.servfail_ttl = d;
                    }
                    _ => return Err(bad("needs one duration".into())),
                },
                "disable" => match a.first() {
                    Some(&"success") => o.disable_success = true,
                    Some(&"denial") => o.disable_denial = true,
                    _ => return Err(bad("expects success or denial".into())),
                },
                "keepttl" => o.keepttl = true,
                other => return Err(line.err(format!("plugin/cache: unknown property '{other}'"))),
            }
        }
        Ok(o)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Success,
    Denial,
}

struct Entry {
    wire: Arc<WireEntry>,
    stored: Instant,
    /// TTL the entry was stored with.
    ttl: Duration,
    hits_in_window: usize,
    window_start: Instant,
}

struct Shard {
    map: Slots<Entry>,
}

/// One of the two caches.
struct Store {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    kind: Kind,
}

impl Store {
    fn new(cap: usize, kind: Kind) -> Self {
        let per_shard = cap.div_ceil(SHARDS).max(1);
        Store {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: Slots::default(),
                    })
                })
                .collect(),
            per_shard,
            kind,
        }
    }
    fn shard(&self, key: u64) -> &Mutex<Shard> {
        &self.shards[(key as usize) % SHARDS]
    }
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }
}

pub struct Cache {
    pub opts: CacheOptions,
    success: Store,
    denial: Store,
    hasher: std::collections::hash_map::RandomState,
    server: String,
    zones_label: String,
    counters: Counters,
}

/// The cache's metric series, looked up once (on first use, so a series appears only when it
/// counts something, as in CoreDNS).
#[derive(Default)]
struct Counters {
    hits_success: OnceLock<Arc<Counter>>,
    hits_denial: OnceLock<Arc<Counter>>,
    misses: OnceLock<Arc<Counter>>,
}

/// The parts of a query the cache looks at, and how to shape a hit for the asker.
pub struct Asker<'a> {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// The question name on the wire, spelled as the asker did.
    pub qname_wire: &'a [u8],
}

/// What a lookup found.
pub enum Hit {
    /// A fresh answer on the wire with its rcode (and whether it is due for a prefetch).
    Fresh(Vec<u8>, u8, bool),
    /// An expired answer served under `serve_stale` (refresh it).
    Stale(Vec<u8>, u8),
}

impl Cache {
    pub fn new(opts: CacheOptions, server: &str) -> Self {
        let zones_label = opts.zones.join(",");
        Cache {
            success: Store::new(opts.success_cap, Kind::Success),
            denial: Store::new(opts.denial_cap, Kind::Denial),
            opts,
            hasher: Default::default(),
            server: server.to_string(),
            zones_label,
            counters: Counters::default(),
        }
    }

    fn key(&self, req: &Request) -> u64 {
        self.key_of(
            &req.qname_lc,
            u16::from(req.qtype),
            req.do_bit,
            req.msg.metadata.checking_disabled,
        )
    }

    /// The key of a question: lower-case name, type, DO and CD bits.
    pub fn key_of(&self, qname_lc: &str, qtype: u16, do_bit: bool, cd: bool) -> u64 {
        let mut h = self.hasher.build_hasher();
        qname_lc.hash(&mut h);
        qtype.hash(&mut h);
        do_bit.hash(&mut h);
        cd.hash(&mut h);
        h.finish()
    }

    pub fn applies(&self, req: &Request) -> bool {
        self.applies_to(&req.qname_lc)
    }

    pub fn applies_to(&self, qname_lc: &str) -> bool {
        self.opts.zones.iter().any(|z| in_zone(qname_lc, z))
    }

    /// Looks the query up; on a hit returns the reply shaped for this request.
    /// `balance` shuffles the address records (the loadbalance plugin).
    pub fn get(&self, req: &Request, balance: bool) -> Option<Hit> {
        let mut qname = Vec::with_capacity(req.qname_lc.len() + 1);
        wire::name_wire(&req.qname, &mut qname);
        let md = &req.msg.metadata;
        let asker = Asker {
            id: md.id,
            rd: md.recursion_desired,
            cd: md.checking_disabled,
            qname_wire: &qname,
        };
        self.get_key(self.key(req), &asker, balance)
    }

    /// [`Cache::get`] for a query known by its key and header.
    pub fn get_key(&self, key: u64, asker: &Asker, balance: bool) -> Option<Hit> {
        let now = Instant::now();
        for store in [&self.success, &self.denial] {
            let Ok(mut shard) = store.shard(key).lock() else {
                continue;
            };
            let Some(e) = shard.map.get_mut(&key) else {
                continue;
            };
            let age = now.saturating_duration_since(e.stored);
            if age >= e.ttl {
                let stale_ok = self.opts.serve_stale.is_some_and(|s| age < e.ttl + s);
                if !stale_ok {
                    shard.map.remove(&key);
                    continue;
                }
                let m = shape(asker, &e.wire, 0, balance, true);
                let rc = e.wire.rcode();
                drop(shard);
                self.count_hit(store.kind);
                registry()
                    .cache_served_stale
                    .with(&[&self.server, &self.zones_label, ""])
                    .inc();
                return Some(Hit::Stale(m, rc));
            }
            let left = (e.ttl - age).as_secs() as u32;
            if now.saturating_duration_since(e.window_start) > self.opts.prefetch_window {
                e.window_start = now;
                e.hits_in_window = 0;
            }
            e.hits_in_window += 1;
            let prefetch = self.opts.prefetch > 0
                && e.hits_in_window >= self.opts.prefetch
                && (e.ttl - age).as_secs_f64()
                    <= e.ttl.as_secs_f64() * self.opts.prefetch_pct as f64 / 100.0;
            let ttl = if self.opts.keepttl { u32::MAX } else { left };
            let m = shape(asker, &e.wire, ttl, balance, true);
            let rc = e.wire.rcode();
            drop(shard);
            self.count_hit(store.kind);
            return Some(Hit::Fresh(m, rc, prefetch));
        }
        self.counters
            .misses
            .get_or_init(|| {
                registry()
                    .cache_misses
                    .with(&[&self.server, &self.zones_label, ""])
            })
            .inc();
        None
    }

    fn count_hit(&self, kind: Kind) {
        let (cell, k) = if kind == Kind::Success {
            (&self.counters.hits_success, "success")
        } else {
            (&self.counters.hits_denial, "denial")
        };
        cell.get_or_init(|| {
            registry()
                .cache_hits
                .with(&[&self.server, k, &self.zones_label, ""])
        })
        .inc();
    }

    /// Stores a reply if its kind is cacheable, returning it on the wire for this request
    /// (encoded once for both); `balance` shuffles the address records.
    pub fn put(&self, req: &Request, m: &Message, balance: bool) -> Option<Vec<u8>> {
        if m.metadata.truncation || !self.applies(req) {
            return None;
        }
        // Plugin replies carry the request's question and no OPT: encode them as they are.
        let encoded = if m.edns.is_none() && m.queries == req.msg.queries {
            m.to_vec()
        } else {
            let mut stored = m.clone();
            stored.edns = None;
            stored.queries = req.msg.queries.clone();
            stored.to_vec()
        };
        let entry = Arc::new(encoded.ok().and_then(WireEntry::new)?);
        self.put_encoded(req, entry, balance)
    }

    /// [`Cache::put`] for a reply already encoded as the cache keeps it (the request's question,
    /// no OPT).
    pub fn put_encoded(
        &self,
        req: &Request,
        entry: Arc<WireEntry>,
        balance: bool,
    ) -> Option<Vec<u8>> {
        if !self.applies(req) {
            return None;
        }
        let mut qname = Vec::with_capacity(req.qname_lc.len() + 1);
        wire::name_wire(&req.qname, &mut qname);
        let md = &req.msg.metadata;
        let asker = Asker {
            id: md.id,
            rd: md.recursion_desired,
            cd: md.checking_disabled,
            qname_wire: &qname,
        };
        self.put_entry(self.key(req), entry, &asker, balance)
    }

    /// Stores an encoded reply (one question, no OPT) under `key` if its kind is cacheable,
    /// returning it shaped for the asker.
    pub fn put_entry(
        &self,
        key: u64,
        entry: Arc<WireEntry>,
        asker: &Asker,
        balance: bool,
    ) -> Option<Vec<u8>> {
        let (kind, ttl) = self.classify(&entry.meta)?;
        let store = if kind == Kind::Success {
            &self.success
        } else {
            &self.denial
        };
        let out = shape(asker, &entry, u32::MAX, balance, false);
        let now = Instant::now();
        let Ok(mut shard) = store.shard(key).lock() else {
            return None;
        };
        let entry = Entry {
            wire: entry,
            stored: now,
            ttl,
            hits_in_window: 0,
            window_start: now,
        };
        if shard.map.insert(key, entry, store.per_shard) {
            drop(shard);
            let k = if kind == Kind::Success {
                "success"
            } else {
                "denial"
            };
            registry()
                .cache_evictions
                .with(&[&self.server, k, &self.zones_label, ""])
                .inc();
        }
        Some(out)
    }

    /// Which cache keeps a reply and for how long; None if it is not cached.
    fn classify(&self, m: &wire::Meta) -> Option<(Kind, Duration)> {
        const NOERROR: u8 = 0;
        const SERVFAIL: u8 = 2;
        const NXDOMAIN: u8 = 3;
        if m.truncated {
            return None;
        }
        let secs = |t: Option<u32>| Duration::from_secs(t.unwrap_or(5) as u64);
        let success = || {
            (
                Kind::Success,
                clamp(
                    secs(m.min_ttl),
                    self.opts.success_min_ttl,
                    self.opts.success_max_ttl,
                ),
            )
        };
        let denial = || {
            (
                Kind::Denial,
                clamp(
                    secs(m.soa_min_ttl),
                    self.opts.denial_min_ttl,
                    self.opts.denial_max_ttl,
                ),
            )
        };
        let (kind, ttl) = match m.rcode {
            NOERROR if m.answers > 0 => success(),
            NOERROR if m.soa_in_authority => denial(),
            NOERROR if m.ns_in_authority => success(),
            NXDOMAIN if m.soa_in_authority => denial(),
            SERVFAIL if !self.opts.servfail_ttl.is_zero() => (Kind::Denial, self.opts.servfail_ttl),
            _ => return None,
        };
        if (kind == Kind::Success && self.opts.disable_success)
            || (kind == Kind::Denial && self.opts.disable_denial)
        {
            return None;
        }
        Some((kind, ttl))
    }

    /// Updates the entries gauges (called when metrics are scraped).
    pub fn report_entries(&self) {
        let r = registry();
        r.cache_entries
            .with(&[&self.server, "success", &self.zones_label, ""])
            .set(self.success.len() as f64);
        r.cache_entries
            .with(&[&self.server, "denial", &self.zones_label, ""])
            .set(self.denial.len() as f64);
    }

    pub fn count_prefetch(&self) {
        registry()
            .cache_prefetch
            .with(&[&self.server, &self.zones_label, ""])
            .inc();
    }

    pub fn len(&self) -> usize {
        self.success.len() + self.denial.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn clamp(d: Duration, min: Duration, max: Duration) -> Duration {
    d.max(min).min(max)
}

/// A cached reply for one asker: its id and question spelling, AA set for hits (as CoreDNS
/// does, so clients that drop non-authoritative replies still accept it), TTLs counted down.
fn shape(asker: &Asker, e: &WireEntry, ttl: u32, balance: bool, aa: bool) -> Vec<u8> {
    e.reply(
        asker.id,
        asker.rd,
        asker.cd,
        aa,
        asker.qname_wire,
        ttl,
        balance,
    )
}

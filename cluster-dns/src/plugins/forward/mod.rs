//! `forward FROM TO... { options }`: sends queries to upstream servers with CoreDNS's policies,
//! health checks, concurrency limit and deadline, over connections kept per upstream and
//! reused until idle for `expire` (`pool`).

mod pool;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use minikind_dns_log::{Proto, rcode_name};
use rand::seq::SliceRandom;

use crate::corefile::{CorefileError, Directive, address::normalize_zone};
use crate::dnsmsg::{Reply, Request, in_zone};
use crate::metrics::registry;
pub use upstream::{HealthCheck, Upstream};

/// Overall time a query may spend across upstreams.
const DEADLINE: Duration = Duration::from_secs(5);
const MAX_UPSTREAMS: usize = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

#[derive(Debug, Clone)]
pub struct ForwardOptions {
    pub from: String,
    pub except: Vec<String>,
    pub to: Vec<SocketAddr>,
    pub policy: Policy,
    pub max_fails: u32,
    pub health_check: Duration,
    pub hc_recursion_desired: bool,
    pub hc_domain: String,
    pub force_tcp: bool,
    pub prefer_udp: bool,
    pub expire: Duration,
    pub max_concurrent: Option<usize>,
    pub next: Vec<ResponseCode>,
    pub failfast_all_unhealthy: bool,
    /// Per-attempt read timeout.
    pub read_timeout: Duration,
}

impl ForwardOptions {
    pub fn parse(d: &Directive) -> Result<Self, CorefileError> {
        let args = d.arg_strs();
        if args.len() < 2 {
            return Err(d.err("needs FROM and at least one TO address"));
        }
        let from =
            normalize_zone(args[0]).map_err(|e| d.args[0].err(format!("plugin/forward: {e}")))?;
        let mut to = Vec::new();
        for (i, a) in args[1..].iter().enumerate() {
            let tok = &d.args[i + 1];
            to.extend(parse_to(a).map_err(|e| tok.err(format!("plugin/forward: {e}")))?);
        }
        if to.is_empty() {
            return Err(d.err("no upstream addresses (an empty resolv.conf?)"));
        }
        if to.len() > MAX_UPSTREAMS {
            return Err(d.err(format!(
                "more than {MAX_UPSTREAMS} TOs configured: {}",
                to.len()
            )));
        }
        let mut o = ForwardOptions {
            from,
            except: Vec::new(),
            to,
            policy: Policy::Random,
            max_fails: 2,
            health_check: Duration::from_millis(500),
            hc_recursion_desired: true,
            hc_domain: ".".into(),
            force_tcp: false,
            prefer_udp: false,
            expire: Duration::from_secs(10),
            max_concurrent: None,
            next: Vec::new(),
            failfast_all_unhealthy: false,
            read_timeout: Duration::from_secs(2),
        };
        for line in &d.block {
            let a = line.arg_strs();
            let bad = |m: String| line.err(format!("plugin/forward: {}: {m}", line.name.text));
            match line.name.text.as_str() {
                "except" => {
                    if a.is_empty() {
                        return Err(bad("needs zones".into()));
                    }
                    for z in a {
                        o.except.push(normalize_zone(z).map_err(bad)?);
                    }
                }
                "force_tcp" => o.force_tcp = true,
                "prefer_udp" => o.prefer_udp = true,
                "max_fails" => o.max_fails = one_num(&a).map_err(bad)? as u32,
                "expire" => o.expire = one_dur(&a).map_err(bad)?,
                "health_check" => {
                    let Some(first) = a.first() else {
                        return Err(bad("needs a duration".into()));
                    };
                    o.health_check = crate::util::parse_duration(first).map_err(bad)?;
                    let mut i = 1;
                    while i < a.len() {
                        match a[i] {
                            "no_rec" => o.hc_recursion_desired = false,
                            "domain" => {
                                let z = a
                                    .get(i + 1)
                                    .ok_or_else(|| bad("domain needs a name".into()))?;
                                o.hc_domain = normalize_zone(z).map_err(bad)?;
                                i += 1;
                            }
                            other => {
                                return Err(bad(format!("unknown health_check option '{other}'")));
                            }
                        }
                        i += 1;
                    }
                }
                "policy" => {
                    o.policy = match a.as_slice() {
                        ["random"] => Policy::Random,
                        ["round_robin"] => Policy::RoundRobin,
                        ["sequential"] => Policy::Sequential,
                        _ => return Err(bad("expects random, round_robin or sequential".into())),
                    }
                }
                "max_concurrent" => {
                    let n = one_num(&a).map_err(bad)?;
                    if n == 0 {
                        return Err(bad("must be positive".into()));
                    }
                    o.max_concurrent = Some(n as usize);
                }
                "next" => {
                    for r in a {
                        o.next.push(match r.to_ascii_uppercase().as_str() {
                            "NXDOMAIN" => ResponseCode::NXDomain,
                            "SERVFAIL" => ResponseCode::ServFail,
                            "REFUSED" => ResponseCode::Refused,
                            "NOERROR" => ResponseCode::NoError,
                            other => return Err(bad(format!("unknown rcode '{other}'"))),
                        });
                    }
                }
                "failfast_all_unhealthy_upstreams" => o.failfast_all_unhealthy = true,
                "tls" | "tls_servername" => {
                    return Err(bad(
                        "DNS over TLS upstreams are not supported by cluster-dns".into(),
                    ));
                }
                other => {
                    return Err(line.err(format!("plugin/forward: unknown property '{other}'")));
                }
            }
        }
        if o.force_tcp && o.prefer_udp {
            return Err(d.err("force_tcp and prefer_udp are mutually exclusive"));
        }
        Ok(o)
    }
}

fn one_num(a: &[&str]) -> Result<u64, String> {
    match a {
        [n] => n.parse().map_err(|_| format!("'{n}' is not a number")),
        _ => Err("needs one number".into()),
    }
}

fn one_dur(a: &[&str]) -> Result<Duration, String> {
    match a {
        [d] => crate::util::parse_duration(d),
        _ => Err("needs one duration".into()),
    }
}

/// An upstream: `IP`, `IP:PORT`, `dns://IP[:PORT]`, `[v6]:PORT`, or a resolv.conf path whose
/// `nameserver` lines are the upstreams.
pub fn parse_to(s: &str) -> Result<Vec<SocketAddr>, String> {
    let s = s.strip_prefix("dns://").unwrap_or(s);
    if s.contains("://") {
        return Err(format!("unsupported upstream transport in '{s}'"));
    }
    if s.starts_with('/') || s.starts_with('.') {
        let text = std::fs::read_to_string(s).map_err(|e| format!("reading {s}: {e}"))?;
        let mut out = Vec::new();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            if w.next() == Some("nameserver")
                && let Some(ip) = w.next()
            {
                let ip = ip.split('%').next().unwrap_or(ip);
                if let Ok(ip) = ip.parse::<std::net::IpAddr>() {
                    out.push(SocketAddr::new(ip, 53));
                }
            }
        }
        return Ok(out);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, 53)]);
    }
    s.parse::<SocketAddr>()
        .map(|a| vec![a])
        .map_err(|_| format!("'{s}' is not an IP address, IP:port or file"))
}

pub struct Forward {
    pub opts: ForwardOptions,
    pub upstreams: Vec<Arc<Upstream>>,
    inflight: AtomicUsize,
    rr: AtomicUsize,
}

struct InflightGuard<'a>(&'a AtomicUsize);
impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Forward {
    pub fn new(opts: ForwardOptions) -> Self {
        let upstreams = opts
            .to
            .iter()
            .map(|a| {
                Arc::new(Upstream::new(
                    *a,
                    opts.expire,
                    HealthCheck {
                        interval: opts.health_check,
                        domain: opts.hc_domain.clone(),
                        recursion_desired: opts.hc_recursion_desired,
                        // coredns plugin/forward/setup.go: with force_tcp the checks use TCP.
                        proto: if opts.force_tcp {
                            Proto::Tcp
                        } else {
                            Proto::Udp
                        },
                    },
                ))
            })
            .collect();
        Forward {
            opts,
            upstreams,
            inflight: AtomicUsize::new(0),
            rr: AtomicUsize::new(0),
        }
    }

    /// True if this forward handles the name.
    pub fn handles(&self, qname_lc: &str) -> bool {
        in_zone(qname_lc, &self.opts.from) && !self.opts.except.iter().any(|e| in_zone(qname_lc, e))
    }

    fn list(&self) -> Vec<Arc<Upstream>> {
        let mut l = self.upstreams.clone();
        match self.opts.policy {
            Policy::Random => l.shuffle(&mut rand::rng()),
            Policy::RoundRobin => {
                let n = self.rr.fetch_add(1, Ordering::Relaxed) % l.len().max(1);
                l.rotate_left(n);
            }
            Policy::Sequential => {}
        }
        l
    }

    /// Forwards the query; the reply carries the upstream's answer or SERVFAIL/REFUSED with the
    /// reason.
    pub async fn serve(&self, req: &Request) -> Option<Reply> {
        if let Some(max) = self.opts.max_concurrent {
            if self.inflight.fetch_add(1, Ordering::AcqRel) >= max {
                self.inflight.fetch_sub(1, Ordering::AcqRel);
                registry().forward_max_concurrent_rejects.with(&[]).inc();
                return Some(Reply::err(
                    req.reply_rcode(ResponseCode::Refused),
                    "forward",
                    format!("concurrent queries exceeded maximum {max}"),
                ));
            }
        } else {
            self.inflight.fetch_add(1, Ordering::AcqRel);
        }
        let _guard = InflightGuard(&self.inflight);

        let deadline = Instant::now() + DEADLINE;
        let list = self.list();
        let mut force_tcp = self.opts.force_tcp;
        let mut fails = 0usize;
        let mut i = 0usize;
        let mut last_err: Option<String> = None;
        while Instant::now() < deadline {
            if i >= list.len() {
                i = 0;
                fails = 0;
            }
            let mut up = list[i].clone();
            i += 1;
            if up.down(self.opts.max_fails) {
                fails += 1;
                if fails < self.upstreams.len() {
                    continue;
                }
                if self.opts.failfast_all_unhealthy {
                    break;
                }
                // All look dead: the health checks may be what is broken; try one at random.
                registry().forward_healthcheck_broken.with(&[]).inc();
                let mut l = self.upstreams.clone();
                l.shuffle(&mut rand::rng());
                up = l[0].clone();
            }
            let proto = if force_tcp {
                Proto::Tcp
            } else if self.opts.prefer_udp {
                Proto::Udp
            } else {
                req.proto
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self.opts.read_timeout.min(remaining);
            let started = Instant::now();
            let to = up.addr.to_string();
            registry().forward_requests.with(&[&to]).inc();
            match up.exchange(&req.msg, proto, timeout).await {
                Ok(ret) => {
                    let rc = rcode_name(u16::from(ret.metadata.response_code));
                    registry().forward_responses.with(&[&to, &rc]).inc();
                    registry()
                        .forward_request_duration
                        .with(&[&to, &rc])
                        .observe_duration(started.elapsed());
                    if ret.metadata.truncation && !force_tcp && self.opts.prefer_udp {
                        force_tcp = true;
                        i -= 1;
                        continue;
                    }
                    if !matches_question(req, &ret) {
                        return Some(Reply::new(
                            req.reply_rcode(ResponseCode::FormErr),
                            "forward",
                        ));
                    }
                    if self.opts.next.contains(&ret.metadata.response_code) {
                        return None;
                    }
                    return Some(Reply::new(ret, "forward"));
                }
                Err(e) => {
                    if self.opts.max_fails != 0 {
                        up.start_health_check();
                    }
                    last_err = Some(e);
                    if fails < self.upstreams.len() {
                        continue;
                    }
                    break;
                }
            }
        }
        let err = last_err.unwrap_or_else(|| "no healthy proxies".into());
        Some(Reply::err(
            req.reply_rcode(ResponseCode::ServFail),
            "forward",
            err,
        ))
    }
}

/// The reply must be for the question asked (name compared without case).
fn matches_question(req: &Request, ret: &Message) -> bool {
    match ret.queries.first() {
        Some(q) => q.query_type == req.qtype && crate::dnsmsg::lower_fqdn(&q.name) == req.qname_lc,
        None => ret.metadata.response_code != ResponseCode::NoError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(text: &str) -> Forward {
        let cf = crate::corefile::parse_str(text, "Corefile", None, &|_| None).unwrap();
        let d = cf.blocks[0]
            .directives
            .iter()
            .find(|d| d.name.text == "forward")
            .unwrap();
        Forward::new(ForwardOptions::parse(d).unwrap())
    }

    #[test]
    fn health_checks_use_tcp_under_force_tcp() {
        let f = forward(". {\n forward . 10.0.0.1 {\n  force_tcp\n  expire 3s\n }\n}\n");
        assert_eq!(f.upstreams[0].health_check().proto, Proto::Tcp);
        assert_eq!(f.opts.expire, Duration::from_secs(3));
        let f = forward(". {\n forward . 10.0.0.1\n}\n");
        assert_eq!(f.upstreams[0].health_check().proto, Proto::Udp);
        assert_eq!(f.opts.expire, Duration::from_secs(10), "CoreDNS's default");
    }

    #[test]
    fn to_addresses() {
        assert_eq!(
            parse_to("8.8.8.8").unwrap(),
            vec!["8.8.8.8:53".parse().unwrap()]
        );
        assert_eq!(
            parse_to("dns://127.0.0.1:5300").unwrap(),
            vec!["127.0.0.1:5300".parse().unwrap()]
        );
        assert_eq!(
            parse_to("[::1]:53").unwrap(),
            vec!["[::1]:53".parse().unwrap()]
        );
        assert!(parse_to("tls://1.1.1.1").is_err());
        assert!(parse_to("nonsense").is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(&p, "search x\nnameserver 10.0.0.1\n# nameserver 1.1.1.1\nnameserver fe80::1%eth0\noptions ndots:5\n").unwrap();
        let got = parse_to(p.to_str().unwrap()).unwrap();
        assert_eq!(
            got,
            vec![
                "10.0.0.1:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}

//! `hosts [FILE [ZONES...]] { ADDRESS NAMES...; ttl N; no_reverse; reload DUR; fallthrough [ZONES] }`:
//! answers from a hosts file plus inline entries, with PTRs made from the same entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::corefile::address::{address_from_reverse, normalize_zone};
use crate::corefile::{CorefileError, Directive};
use crate::dnsmsg::{Request, in_zone};

#[derive(Debug, Clone)]
pub struct HostsOptions {
    pub file: Option<PathBuf>,
    pub zones: Vec<String>,
    pub inline: Vec<(IpAddr, Vec<String>)>,
    pub ttl: u32,
    pub no_reverse: bool,
    pub reload: Duration,
    pub fallthrough: Option<Vec<String>>,
}

impl HostsOptions {
    pub fn parse(d: &Directive, block_zones: &[String]) -> Result<Self, CorefileError> {
        let args = d.arg_strs();
        let file = Some(PathBuf::from(args.first().copied().unwrap_or("/etc/hosts")));
        let mut zones = Vec::new();
        for (i, z) in args.iter().enumerate().skip(1) {
            zones.push(normalize_zone(z).map_err(|e| d.args[i].err(format!("plugin/hosts: {e}")))?);
        }
        if zones.is_empty() {
            zones = block_zones.to_vec();
        }
        let mut o = HostsOptions {
            file,
            zones,
            inline: Vec::new(),
            ttl: 3600,
            no_reverse: false,
            reload: Duration::from_secs(5),
            fallthrough: None,
        };
        for line in &d.block {
            let a = line.arg_strs();
            let bad = |m: String| line.err(format!("plugin/hosts: {}: {m}", line.name.text));
            match line.name.text.as_str() {
                "ttl" => match a.as_slice() {
                    [t] => {
                        let v: u32 = t
                            .parse()
                            .map_err(|_| bad(format!("'{t}' is not a number")))?;
                        if v == 0 || v > 65535 {
                            return Err(bad("ttl must be in range [1, 65535]".into()));
                        }
                        o.ttl = v;
                    }
                    _ => return Err(bad("needs one number".into())),
                },
                "no_reverse" => o.no_reverse = true,
                "reload" => match a.as_slice() {
                    [t] => o.reload = crate::util::parse_duration(t).map_err(bad)?,
                    _ => return Err(bad("needs one duration".into())),
                },
                "fallthrough" => {
                    let mut z = Vec::new();
                    for x in a {
                        z.push(normalize_zone(x).map_err(bad)?);
                    }
                    o.fallthrough = Some(z);
                }
                addr => match addr.split('%').next().unwrap_or(addr).parse::<IpAddr>() {
                    Ok(ip) if !a.is_empty() => o
                        .inline
                        .push((ip, a.iter().map(|n| lower_fqdn_str(n)).collect())),
                    _ => {
                        return Err(line.err(format!(
                            "plugin/hosts: unknown property or invalid inline entry '{addr}'"
                        )));
                    }
                },
            }
        }
        Ok(o)
    }
}

fn lower_fqdn_str(n: &str) -> String {
    let n = n.trim_end_matches('.').to_ascii_lowercase();
    format!("{n}.")
}

#[derive(Default, Debug)]
struct Table {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

impl Table {
    fn add(&mut self, ip: IpAddr, name: &str) {
        let v = self.by_name.entry(name.to_string()).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
        let n = self.by_addr.entry(ip).or_default();
        if !n.iter().any(|x| x == name) {
            n.push(name.to_string());
        }
    }
}

/// Parses hosts-file text (comments, several names per line, zone ids dropped).
fn parse_hosts(text: &str, table: &mut Table) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut w = line.split_whitespace();
        let Some(addr) = w.next() else { continue };
        let Ok(ip) = addr.split('%').next().unwrap_or(addr).parse::<IpAddr>() else {
            continue;
        };
        for name in w {
            table.add(ip, &lower_fqdn_str(name));
        }
    }
}

pub struct Hosts {
    pub opts: HostsOptions,
    table: RwLock<(Table, Option<SystemTime>, Instant)>,
}

impl Hosts {
    pub fn new(opts: HostsOptions) -> Self {
        let h = Hosts {
            opts,
            table: RwLock::new((Table::default(), None, Instant::now())),
        };
        h.load();
        h
    }

    fn load(&self) {
        let mut t = Table::default();
        for (ip, names) in &self.opts.inline {
            for n in names {
                t.add(*ip, n);
            }
        }
        let mut mtime = None;
        if let Some(f) = &self.opts.file {
            if let Ok(meta) = std::fs::metadata(f) {
                mtime = meta.modified().ok();
            }
            if let Ok(text) = std::fs::read_to_string(f) {
                parse_hosts(&text, &mut t);
            }
        }
        crate::metrics::registry()
            .hosts_entries
            .with(&[])
            .set(t.by_name.len() as f64);
        if let Ok(mut g) = self.table.write() {
            *g = (t, mtime, Instant::now());
        }
    }

    /// Re-reads the file when the reload period passed and it changed.
    fn maybe_reload(&self) {
        if self.opts.reload.is_zero() {
            return;
        }
        let due = self
            .table
            .read()
            .map(|g| g.2.elapsed() >= self.opts.reload)
            .unwrap_or(false);
        if !due {
            return;
        }
        let current = self
            .opts
            .file
            .as_ref()
            .and_then(|f| std::fs::metadata(f).ok())
            .and_then(|m| m.modified().ok());
        let changed = self.table.read().map(|g| g.1 != current).unwrap_or(false);
        if changed {
            self.load();
        } else if let Ok(mut g) = self.table.write() {
            g.2 = Instant::now();
        }
    }

    /// Answers from the table; None means the next plugin should try (fallthrough).
    pub fn serve(&self, req: &Request) -> Option<Message> {
        if !self.opts.zones.iter().any(|z| in_zone(&req.qname_lc, z))
            && req.qtype != RecordType::PTR
        {
            return None;
        }
        self.maybe_reload();
        let g = self.table.read().ok()?;
        let t = &g.0;
        let mut m = req.reply();
        let owner = req.qname.clone();
        match req.qtype {
            RecordType::PTR if !self.opts.no_reverse => {
                if let Some(ip) = address_from_reverse(&req.qname_lc)
                    && let Some(names) = t.by_addr.get(&ip)
                {
                    for n in names {
                        if let Ok(n) = Name::from_ascii(n) {
                            m.add_answer(Record::from_rdata(
                                owner.clone(),
                                self.opts.ttl,
                                RData::PTR(PTR(n)),
                            ));
                        }
                    }
                }
            }
            RecordType::A | RecordType::AAAA
                if self.opts.zones.iter().any(|z| in_zone(&req.qname_lc, z)) =>
            {
                for ip in t.by_name.get(&req.qname_lc).into_iter().flatten() {
                    let rd = match (ip, req.qtype) {
                        (IpAddr::V4(v), RecordType::A) => RData::A(A(*v)),
                        (IpAddr::V6(v), RecordType::AAAA) => RData::AAAA(AAAA(*v)),
                        _ => continue,
                    };
                    m.add_answer(Record::from_rdata(owner.clone(), self.opts.ttl, rd));
                }
            }
            _ => {}
        }
        if m.answers.is_empty() && !t.by_name.contains_key(&req.qname_lc) {
            let falls = match &self.opts.fallthrough {
                None => false,
                Some(z) if z.is_empty() => true,
                Some(z) => z.iter().any(|z| in_zone(&req.qname_lc, z)),
            };
            if falls || !self.opts.zones.iter().any(|z| in_zone(&req.qname_lc, z)) {
                return None;
            }
            // No SOA to make an NXDOMAIN with: CoreDNS answers SERVFAIL here.
            m.metadata.response_code = ResponseCode::ServFail;
            return Some(m);
        }
        m.metadata.authoritative = true;
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_text() {
        let mut t = Table::default();
        parse_hosts(
            "# c\n127.0.0.1 localhost Local.Example # x\nfe80::1%eth0 v6host\nbad line\n",
            &mut t,
        );
        assert_eq!(
            t.by_name["local.example."],
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            t.by_addr[&"fe80::1".parse::<IpAddr>().unwrap()],
            vec!["v6host.".to_string()]
        );
        assert_eq!(t.by_name.len(), 3);
    }
}

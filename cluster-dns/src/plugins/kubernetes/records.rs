//! The record rules of the Kubernetes DNS specification as CoreDNS's `kubernetes` plugin applies
//! them: parsing the query name, finding services/endpoints/pods, and shaping the reply
//! (answers, NODATA or NXDOMAIN with the SOA).

use std::net::IpAddr;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::config::{KubeOptions, PodMode};
use super::model::{EndpointInfo, ServiceInfo, Store};
use crate::corefile::address::address_from_reverse;
use crate::dnsmsg::Request;

/// What the plugin decided.
#[derive(Debug)]
pub enum Outcome {
    Reply(Message),
    /// Answer with this CNAME reply, then append the target's records found through the rest of
    /// the chain.
    Chase(Message, Name),
    /// Answer with this reply once these lookups have filled its additional section (the
    /// addresses of an ExternalName service's SRV target).
    Additional(Message, Vec<ExtraLookup>),
    /// Not ours (outside the zones, or fallthrough): the next plugin handles it.
    Next,
}

/// Addresses an SRV reply carries for a target outside the plugin's data, as CoreDNS adds them:
/// for a target outside the zone, its A answers (CNAMEs included) then its AAAA answers (CNAMEs
/// left out) through the whole chain; for a target inside the zone, its A records from the
/// plugin itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraLookup {
    pub name: Name,
    pub qtype: RecordType,
    /// Keep CNAME records of the answer.
    pub cnames: bool,
    /// Ask the `kubernetes` plugin only (the target is in its zone).
    pub internal: bool,
}

/// One service/endpoint/pod record before it becomes a DNS record.
#[derive(Debug, Clone, PartialEq)]
struct Rec {
    host: Host,
    port: i32,
    /// Lower-case fqdn the SRV and PTR records point at.
    target: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

enum Found {
    Records(Vec<Rec>),
    /// The name exists but has no records (NODATA).
    Empty,
    NameError,
}

/// The query name cut into CoreDNS's parts.
#[derive(Default, Debug)]
struct Parsed<'a> {
    pod_or_svc: &'a str,
    namespace: &'a str,
    service: &'a str,
    endpoint: &'a str,
    port: &'a str,
    protocol: &'a str,
}

/// `base` is the name with the zone removed (no final dot).
fn parse_name(base: &str) -> Result<Option<Parsed<'_>>, ()> {
    if base.is_empty() || base == "svc" || base == "pod" {
        return Ok(None);
    }
    let segs: Vec<&str> = base.split('.').collect();
    let mut p = Parsed::default();
    let mut last = segs.len() as isize - 1;
    p.pod_or_svc = segs[last as usize];
    if p.pod_or_svc != "svc" && p.pod_or_svc != "pod" {
        return Err(());
    }
    last -= 1;
    if last < 0 {
        return Ok(Some(p));
    }
    p.namespace = segs[last as usize];
    last -= 1;
    if last < 0 {
        return Ok(Some(p));
    }
    p.service = segs[last as usize];
    last -= 1;
    if last < 0 {
        return Ok(Some(p));
    }
    match last {
        0 => p.endpoint = segs[0],
        1 => {
            p.protocol = strip_underscore(segs[1]);
            p.port = strip_underscore(segs[0]);
        }
        _ => return Err(()),
    }
    Ok(Some(p))
}

fn strip_underscore(s: &str) -> &str {
    s.strip_prefix('_').unwrap_or(s)
}

fn matches(want: &str, have: &str) -> bool {
    want.is_empty() || want.eq_ignore_ascii_case(have)
}

/// An endpoint's DNS label: its hostname, else (with `endpoint_pod_names`) its pod's name, else
/// the dashed IP.
pub fn endpoint_hostname(ep: &EndpointInfo, ip: &IpAddr, pod_names: bool) -> String {
    if let Some(h) = &ep.hostname
        && !h.is_empty()
    {
        return h.to_string();
    }
    if pod_names && let Some(n) = &ep.target_name {
        return n.to_string();
    }
    match ip {
        IpAddr::V4(v) => v.to_string().replace('.', "-"),
        IpAddr::V6(v) => v.to_string().replace(':', "-"),
    }
}

/// The plugin's view of the data, as used for one query.
pub struct Lookup<'a> {
    pub opts: &'a KubeOptions,
    pub store: &'a Store,
    pub synced: bool,
}

impl Lookup<'_> {
    fn namespace_exposed(&self, ns: &str) -> bool {
        (self.opts.namespaces.is_empty() || self.opts.namespaces.iter().any(|n| n == ns))
            && self.store.namespace_exists(ns)
    }

    fn service_visible(&self, s: &ServiceInfo) -> bool {
        self.opts
            .labels
            .as_ref()
            .is_none_or(|sel| sel.matches(&s.labels))
    }

    fn has_ready_endpoints(&self, s: &ServiceInfo) -> bool {
        self.store
            .slices_of(&s.namespace, &s.name)
            .any(|sl| sl.endpoints.iter().any(|e| e.ready))
    }

    fn records(&self, qname: &str, zone: &str) -> Found {
        let base = base_of(qname, zone);
        let p = match parse_name(base) {
            Err(()) => return Found::NameError,
            Ok(None) => return Found::Empty,
            Ok(Some(p)) => p,
        };
        if p.pod_or_svc == "pod" {
            return self.find_pods(&p, zone);
        }
        self.find_services(&p, zone)
    }

    fn find_services(&self, p: &Parsed, zone: &str) -> Found {
        if p.namespace.is_empty() {
            return Found::Empty;
        }
        if !self.namespace_exposed(p.namespace) {
            return Found::NameError;
        }
        if p.service.is_empty() {
            return Found::Empty;
        }
        let Some(svc) = self.store.service(p.namespace, p.service) else {
            return Found::NameError;
        };
        if !self.service_visible(svc) {
            return Found::NameError;
        }
        if self.opts.ignore_empty_service
            && svc.external_name.is_none()
            && !svc.headless
            && !self.has_ready_endpoints(svc)
        {
            return Found::NameError;
        }
        let svc_domain = format!("{}.{}.svc.{}", svc.name, svc.namespace, zone_suffix(zone));
        let mut out = Vec::new();
        if let Some(ext) = &svc.external_name {
            // An ExternalName service has no endpoints, nor ports to ask for by name.
            if !p.endpoint.is_empty() || !p.port.is_empty() || !p.protocol.is_empty() {
                return Found::NameError;
            }
            if ext.parse::<IpAddr>().is_err()
                && ext.trim_end_matches('.').parse::<IpAddr>().is_err()
            {
                out.push(Rec {
                    host: Host::Name(ext.to_string()),
                    port: 0,
                    target: svc_domain,
                });
            }
        } else if svc.headless || !p.endpoint.is_empty() {
            if !self.opts.noendpoints {
                for slice in self.store.slices_of(&svc.namespace, &svc.name) {
                    for ep in &slice.endpoints {
                        if !ep.ready {
                            continue;
                        }
                        for ip in std::iter::once(&ep.address) {
                            let host = endpoint_hostname(ep, ip, self.opts.endpoint_pod_names);
                            if !p.endpoint.is_empty() && host != p.endpoint {
                                continue;
                            }
                            for port in &slice.ports {
                                if !(matches(p.port, &port.name)
                                    && matches(p.protocol, port.protocol))
                                {
                                    continue;
                                }
                                let r = Rec {
                                    host: Host::Ip(*ip),
                                    port: port.port,
                                    target: format!("{host}.{svc_domain}"),
                                };
                                if !out.contains(&r) {
                                    out.push(r);
                                }
                            }
                        }
                    }
                }
            }
        } else {
            for port in &svc.ports {
                if !(matches(p.port, &port.name) && matches(p.protocol, port.protocol)) {
                    continue;
                }
                for ip in &svc.cluster_ips {
                    out.push(Rec {
                        host: Host::Ip(*ip),
                        port: port.port,
                        target: svc_domain.clone(),
                    });
                }
            }
        }
        if out.is_empty() {
            Found::NameError
        } else {
            Found::Records(out)
        }
    }

    fn find_pods(&self, p: &Parsed, zone: &str) -> Found {
        if self.opts.pods == PodMode::Disabled {
            return Found::NameError;
        }
        if p.namespace.is_empty() {
            return Found::Empty;
        }
        if !self.namespace_exposed(p.namespace) {
            return Found::NameError;
        }
        if p.service.is_empty() {
            return Found::Empty;
        }
        if !p.endpoint.is_empty() || !p.port.is_empty() {
            return Found::NameError;
        }
        let podname = p.service;
        let ip_text = if podname.matches('-').count() == 3 && !podname.contains("--") {
            podname.replace('-', ".")
        } else {
            podname.replace('-', ":")
        };
        let Ok(ip) = ip_text.parse::<IpAddr>() else {
            return Found::NameError;
        };
        let target = format!("{podname}.{}.pod.{}", p.namespace, zone_suffix(zone));
        match self.opts.pods {
            PodMode::Insecure => Found::Records(vec![Rec {
                host: Host::Ip(ip),
                port: 0,
                target,
            }]),
            _ => {
                if self
                    .store
                    .pods_by_ip(&ip)
                    .any(|pod| *pod.namespace == *p.namespace)
                {
                    Found::Records(vec![Rec {
                        host: Host::Ip(ip),
                        port: 0,
                        target,
                    }])
                } else {
                    Found::NameError
                }
            }
        }
    }

    /// PTR for a cluster IP or an endpoint IP.
    fn reverse(&self, ip: IpAddr) -> Vec<String> {
        let zone = self.opts.primary_zone();
        let mut out = Vec::new();
        for svc in self.store.services_by_ip(&ip) {
            if self.namespace_exposed(&svc.namespace) && self.service_visible(svc) {
                out.push(format!(
                    "{}.{}.svc.{}",
                    svc.name,
                    svc.namespace,
                    zone_suffix(zone)
                ));
            }
        }
        if !out.is_empty() || self.opts.noendpoints {
            return out;
        }
        for (slice, ep) in self.store.endpoints_by_ip(&ip) {
            if !self.namespace_exposed(&slice.namespace) {
                continue;
            }
            if let Some(svc) = self.store.service(&slice.namespace, &slice.service)
                && !self.service_visible(svc)
            {
                continue;
            }
            let host = endpoint_hostname(ep, &ip, self.opts.endpoint_pod_names);
            let name = format!(
                "{host}.{}.{}.svc.{}",
                slice.service,
                slice.namespace,
                zone_suffix(zone)
            );
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Addresses for `ns.dns.<zone>`: the cluster IPs of the services whose endpoints include the
    /// address the query arrived on (the DNS service itself), else that address.
    fn ns_addrs(&self, local: IpAddr) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for (slice, _) in self.store.endpoints_by_ip(&local) {
            if let Some(svc) = self.store.service(&slice.namespace, &slice.service) {
                for ip in &svc.cluster_ips {
                    if !out.contains(ip) {
                        out.push(*ip);
                    }
                }
            }
        }
        if out.is_empty() {
            out.push(local);
        }
        out
    }

    /// Answers one query for `zone` (already known to contain the name).
    pub fn answer(&self, req: &Request, zone: &str) -> Outcome {
        let qname = req.qname_lc.as_str();
        let ttl = self.opts.ttl;
        let mut m = req.reply();
        m.metadata.authoritative = true;
        let owner = req.qname.clone();
        let is_reverse = zone.ends_with("in-addr.arpa.") || zone.ends_with("ip6.arpa.");

        if req.qtype == RecordType::TXT && qname.strip_prefix("dns-version.") == Some(zone) {
            m.add_answer(Record::from_rdata(
                owner,
                28800,
                RData::TXT(TXT::new(vec!["1.1.0".into()])),
            ));
            return Outcome::Reply(m);
        }
        if qname.strip_prefix("ns.dns.") == Some(zone)
            && matches!(req.qtype, RecordType::A | RecordType::AAAA)
        {
            let addrs = self.ns_addrs(req.local.ip());
            for ip in addrs {
                if let Some(rd) = addr_rdata(ip, req.qtype) {
                    m.add_answer(Record::from_rdata(owner.clone(), ttl, rd));
                }
            }
            if m.answers.is_empty() {
                self.add_soa(&mut m, zone);
            }
            return Outcome::Reply(m);
        }

        let found = match req.qtype {
            RecordType::PTR if is_reverse => match address_from_reverse(qname) {
                Some(ip) => {
                    let names = self.reverse(ip);
                    if names.is_empty() {
                        Found::NameError
                    } else {
                        for n in names {
                            if let Ok(n) = Name::from_ascii(&n) {
                                m.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    ttl,
                                    RData::PTR(PTR(n)),
                                ));
                            }
                        }
                        return Outcome::Reply(m);
                    }
                }
                None => Found::NameError,
            },
            RecordType::SOA | RecordType::NS if qname == zone => {
                if req.qtype == RecordType::SOA {
                    m.add_answer(self.soa(zone));
                } else if let Ok(ns) = Name::from_ascii(format!("ns.dns.{}", zone_suffix(zone))) {
                    m.add_answer(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::NS(NS(ns.clone())),
                    ));
                    for ip in self.ns_addrs(req.local.ip()) {
                        let t = if ip.is_ipv4() {
                            RecordType::A
                        } else {
                            RecordType::AAAA
                        };
                        if let Some(rd) = addr_rdata(ip, t) {
                            m.add_additional(Record::from_rdata(ns.clone(), ttl, rd));
                        }
                    }
                }
                return Outcome::Reply(m);
            }
            _ if is_reverse => Found::NameError,
            _ => self.records(qname, zone),
        };

        let recs = match found {
            Found::NameError => {
                if self.opts.falls_through(qname) {
                    return Outcome::Next;
                }
                if !self.synced {
                    return Outcome::Reply(req.reply_rcode(ResponseCode::ServFail));
                }
                m.metadata.response_code = ResponseCode::NXDomain;
                self.add_soa(&mut m, zone);
                return Outcome::Reply(m);
            }
            Found::Empty => {
                self.add_soa(&mut m, zone);
                return Outcome::Reply(m);
            }
            Found::Records(r) => r,
        };

        let mut chase = None;
        let mut extra = Vec::new();
        match req.qtype {
            RecordType::A | RecordType::AAAA => {
                for r in &recs {
                    match &r.host {
                        Host::Ip(ip) => {
                            if let Some(rd) = addr_rdata(*ip, req.qtype)
                                && !m.answers.iter().any(|a| a.data == rd)
                            {
                                m.add_answer(Record::from_rdata(owner.clone(), ttl, rd));
                            }
                        }
                        Host::Name(target) => {
                            if let Ok(t) = Name::from_ascii(target) {
                                m.add_answer(Record::from_rdata(
                                    owner.clone(),
                                    ttl,
                                    RData::CNAME(CNAME(t.clone())),
                                ));
                                chase.get_or_insert(t);
                            }
                        }
                    }
                }
            }
            RecordType::CNAME => {
                for r in &recs {
                    if let Host::Name(target) = &r.host
                        && let Ok(t) = Name::from_ascii(target)
                    {
                        m.add_answer(Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::CNAME(CNAME(t)),
                        ));
                    }
                }
            }
            RecordType::SRV => extra = self.srv(&mut m, &owner, &recs, zone),
            _ => {}
        }
        if m.answers.is_empty() {
            self.add_soa(&mut m, zone);
            return Outcome::Reply(m);
        }
        match chase {
            Some(t) => Outcome::Chase(m, t),
            None if !extra.is_empty() => Outcome::Additional(m, extra),
            None => Outcome::Reply(m),
        }
    }

    /// Adds the SRV records (and the addresses of targets the plugin knows); returns the
    /// lookups that fill in the addresses of external targets.
    fn srv(&self, m: &mut Message, owner: &Name, recs: &[Rec], zone: &str) -> Vec<ExtraLookup> {
        let mut lookups = Vec::new();
        let ttl = self.opts.ttl;
        let n = recs.len().max(1) as u32;
        let weight = ((100.0 / n as f64).floor() as u16).max(1);
        let mut seen_srv: Vec<(String, i32)> = Vec::new();
        let mut seen_extra: Vec<(String, IpAddr)> = Vec::new();
        for r in recs {
            if r.port < 0 {
                continue;
            }
            match &r.host {
                Host::Name(ext) => {
                    let Ok(t) = Name::from_ascii(ext) else {
                        continue;
                    };
                    if seen_srv.contains(&(ext.clone(), r.port)) {
                        continue;
                    }
                    seen_srv.push((ext.clone(), r.port));
                    m.add_answer(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::SRV(SRV::new(0, weight, r.port as u16, t.clone())),
                    ));
                    if lookups.iter().any(|l: &ExtraLookup| l.name == t) {
                        continue;
                    }
                    if crate::dnsmsg::in_zone(&crate::dnsmsg::lower_fqdn(&t), zone) {
                        // Only v4, as CoreDNS.
                        lookups.push(ExtraLookup {
                            name: t,
                            qtype: RecordType::A,
                            cnames: true,
                            internal: true,
                        });
                    } else {
                        for (qtype, cnames) in [(RecordType::A, true), (RecordType::AAAA, false)] {
                            lookups.push(ExtraLookup {
                                name: t.clone(),
                                qtype,
                                cnames,
                                internal: false,
                            });
                        }
                    }
                }
                Host::Ip(ip) => {
                    let Ok(t) = Name::from_ascii(&r.target) else {
                        continue;
                    };
                    if !seen_srv.contains(&(r.target.clone(), r.port)) {
                        seen_srv.push((r.target.clone(), r.port));
                        m.add_answer(Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::SRV(SRV::new(0, weight, r.port as u16, t.clone())),
                        ));
                    }
                    if !seen_extra.contains(&(r.target.clone(), *ip)) {
                        seen_extra.push((r.target.clone(), *ip));
                        let t_type = if ip.is_ipv4() {
                            RecordType::A
                        } else {
                            RecordType::AAAA
                        };
                        if let Some(rd) = addr_rdata(*ip, t_type) {
                            m.add_additional(Record::from_rdata(t, ttl, rd));
                        }
                    }
                }
            }
        }
        lookups
    }

    /// `<zone> <min(ttl,300)> IN SOA ns.dns.<zone> hostmaster.<zone> <serial> 7200 1800 86400 <ttl>`.
    pub fn soa(&self, zone: &str) -> Record {
        let ttl = self.opts.ttl;
        let zone_name = Name::from_ascii(zone).unwrap_or_else(|_| Name::root());
        let suffix = zone_suffix(zone);
        let mname = Name::from_ascii(format!("ns.dns.{suffix}")).unwrap_or_else(|_| Name::root());
        let rname =
            Name::from_ascii(format!("hostmaster.{suffix}")).unwrap_or_else(|_| Name::root());
        let soa = SOA::new(mname, rname, self.store.modified, 7200, 1800, 86400, ttl);
        Record::from_rdata(zone_name, ttl.min(300), RData::SOA(soa))
    }

    fn add_soa(&self, m: &mut Message, zone: &str) {
        m.add_authority(self.soa(zone));
    }
}

/// `zone` as a suffix to append after a label and a dot: `cluster.local.`, or empty for the root.
fn zone_suffix(zone: &str) -> &str {
    if zone == "." { "" } else { zone }
}

fn base_of<'a>(qname: &'a str, zone: &str) -> &'a str {
    if zone == "." {
        return qname.trim_end_matches('.');
    }
    if qname.len() <= zone.len() {
        return "";
    }
    &qname[..qname.len() - zone.len() - 1]
}

fn addr_rdata(ip: IpAddr, qtype: RecordType) -> Option<RData> {
    match (ip, qtype) {
        (IpAddr::V4(v), RecordType::A) => Some(RData::A(A(v))),
        (IpAddr::V6(v), RecordType::AAAA) => Some(RData::AAAA(AAAA(v))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_parsing() {
        let p = parse_name("_http._tcp.web.default.svc").unwrap().unwrap();
        assert_eq!(
            (p.port, p.protocol, p.service, p.namespace),
            ("http", "tcp", "web", "default")
        );
        let p = parse_name("web-0.web.default.svc").unwrap().unwrap();
        assert_eq!(p.endpoint, "web-0");
        assert!(parse_name("a.b.c.web.default.svc").is_err());
        assert!(parse_name("foo").is_err());
        assert!(parse_name("svc").unwrap().is_none());
        assert_eq!(base_of("a.svc.cluster.local.", "cluster.local."), "a.svc");
        assert_eq!(base_of("cluster.local.", "cluster.local."), "");
    }

    #[test]
    fn dashed_hostnames() {
        let ep = EndpointInfo {
            address: "10.0.0.1".parse().unwrap(),
            ready: true,
            hostname: None,
            target_name: Some("pod-a".into()),
        };
        assert_eq!(
            endpoint_hostname(&ep, &"10.244.1.5".parse().unwrap(), false),
            "10-244-1-5"
        );
        assert_eq!(
            endpoint_hostname(&ep, &"fd00::5".parse().unwrap(), false),
            "fd00--5"
        );
        assert_eq!(
            endpoint_hostname(&ep, &"10.244.1.5".parse().unwrap(), true),
            "pod-a"
        );
    }
}

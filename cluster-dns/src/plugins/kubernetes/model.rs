//! The objects the `kubernetes` plugin answers from, reduced to what DNS needs, with the indexes
//! lookups use. The watchers fill it from the API; tests fill it the same way (through
//! [`Store::apply`] with real Kubernetes objects), so there is one path only.
//!
//! Memory matters (10 000 services, 50 000 endpoints in well under 40 MB): names are shared
//! `Arc<str>`, each endpoint holds one address inline, and the address index points at slices
//! by a small id instead of by name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Label the EndpointSlice controller puts on every slice of a service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// Lower-case port name, empty when unnamed.
    pub name: Box<str>,
    /// -1 marks "no ports" (a headless service may have none; its addresses still resolve).
    pub port: i32,
    /// Lower-case protocol (`tcp`, `udp`, `sctp`).
    pub protocol: &'static str,
}

fn protocol(p: Option<&str>) -> &'static str {
    match p.unwrap_or("TCP").to_ascii_lowercase().as_str() {
        "udp" => "udp",
        "sctp" => "sctp",
        _ => "tcp",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub cluster_ips: Box<[IpAddr]>,
    pub headless: bool,
    /// Set for `type: ExternalName` (lower-case, with the final dot).
    pub external_name: Option<Box<str>>,
    pub ports: Box<[PortInfo]>,
    pub labels: BTreeMap<String, String>,
}

/// One address of an endpoint (an endpoint with several addresses becomes several of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointInfo {
    pub address: IpAddr,
    pub ready: bool,
    pub hostname: Option<Box<str>>,
    /// Name of the pod behind the endpoint (for `endpoint_pod_names`).
    pub target_name: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceInfo {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub service: Arc<str>,
    pub endpoints: Box<[EndpointInfo]>,
    pub ports: Box<[PortInfo]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub ips: Box<[IpAddr]>,
}

/// A change coming from a watcher (or a test).
#[derive(Debug, Clone)]
pub enum Change {
    Service(Service),
    ServiceDeleted(Service),
    Slice(EndpointSlice),
    SliceDeleted(EndpointSlice),
    Namespace(Namespace),
    NamespaceDeleted(Namespace),
    Pod(Pod),
    PodDeleted(Pod),
}

/// An object reduced to its DNS view (what the watchers buffer during a relist: small, unlike
/// the full API objects).
#[derive(Debug, Clone)]
pub enum Item {
    Service(ServiceInfo),
    Slice(SliceInfo),
    Namespace(String),
    Pod(PodInfo),
}

/// What to keep of each object (labels and pod names cost memory and are only needed by
/// some options).
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    pub labels: bool,
    pub pod_names: bool,
}

/// Slice ids for one address: almost always one.
#[derive(Debug, Clone)]
enum Ids {
    One(u32),
    Many(Box<[u32]>),
}

impl Ids {
    fn as_slice(&self) -> &[u32] {
        match self {
            Ids::One(x) => std::slice::from_ref(x),
            Ids::Many(v) => v,
        }
    }
    fn with(&self, id: u32) -> Ids {
        if self.as_slice().contains(&id) {
            return self.clone();
        }
        let mut v = self.as_slice().to_vec();
        v.push(id);
        Ids::Many(v.into_boxed_slice())
    }
    fn without(&self, id: u32) -> Option<Ids> {
        let v: Vec<u32> = self
            .as_slice()
            .iter()
            .copied()
            .filter(|x| *x != id)
            .collect();
        match v.len() {
            0 => None,
            1 => Some(Ids::One(v[0])),
            _ => Some(Ids::Many(v.into_boxed_slice())),
        }
    }
}

type ByNs<T> = HashMap<Arc<str>, HashMap<Arc<str>, T>>;

/// Everything the plugin knows, indexed for the queries it answers.
#[derive(Debug, Default)]
pub struct Store {
    services: ByNs<Arc<ServiceInfo>>,
    svc_by_ip: HashMap<IpAddr, Vec<Arc<ServiceInfo>>>,
    /// Slices by id (freed ids are reused).
    slab: Vec<Option<Arc<SliceInfo>>>,
    free: Vec<u32>,
    /// namespace → service → slice ids.
    slices: ByNs<Vec<u32>>,
    /// (namespace, slice name) → id.
    slice_ids: HashMap<(Arc<str>, Arc<str>), u32>,
    ep_by_ip: HashMap<IpAddr, Ids>,
    namespaces: HashSet<String>,
    /// Shared copies of namespace names.
    ns_names: HashSet<Arc<str>>,
    pods: HashMap<(Arc<str>, Arc<str>), Arc<PodInfo>>,
    pods_by_ip: HashMap<IpAddr, Vec<Arc<PodInfo>>>,
    pub keep: Keep,
    /// Unix time of the last change: the SOA serial.
    pub modified: u32,
    /// Counts changes; readable without the store's lock (answers worked out from an older
    /// generation are stale).
    pub generation: Arc<AtomicU64>,
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Store {
    pub fn new() -> Self {
        Store {
            modified: now_secs(),
            ..Default::default()
        }
    }

    /// Reduces a change to the item it adds, or None for deletions and unusable objects.
    pub fn reduce(&self, change: &Change) -> Option<Item> {
        let item = match change {
            Change::Service(s) => Item::Service(service_info(s)?),
            Change::Slice(s) => Item::Slice(slice_info(s)?),
            Change::Namespace(n) => Item::Namespace(n.metadata.name.clone()?),
            Change::Pod(p) => Item::Pod(pod_info(p)?),
            _ => return None,
        };
        Some(self.trim(item))
    }

    fn trim(&self, item: Item) -> Item {
        match item {
            Item::Service(mut s) if !self.keep.labels => {
                s.labels = BTreeMap::new();
                Item::Service(s)
            }
            Item::Slice(mut s) if !self.keep.pod_names => {
                for e in s.endpoints.iter_mut() {
                    e.target_name = None;
                }
                Item::Slice(s)
            }
            other => other,
        }
    }

    fn intern_ns(&mut self, ns: &Arc<str>) -> Arc<str> {
        if let Some(x) = self.ns_names.get(ns) {
            return x.clone();
        }
        self.ns_names.insert(ns.clone());
        ns.clone()
    }

    fn put(&mut self, item: Item) {
        match item {
            Item::Service(s) => self.put_service(s),
            Item::Slice(s) => self.put_slice(s),
            Item::Namespace(n) => {
                self.namespaces.insert(n);
            }
            Item::Pod(p) => self.put_pod(p),
        }
    }

    /// Applies one change; objects missing what DNS needs (no name) are ignored.
    pub fn apply(&mut self, change: Change) {
        if let Some(item) = self.reduce(&change) {
            self.put(item);
        } else {
            let meta = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                Some((m.namespace.clone()?.to_ascii_lowercase(), m.name.clone()?))
            };
            match &change {
                Change::ServiceDeleted(s) => {
                    if let Some((ns, n)) = meta(&s.metadata) {
                        self.remove_service(&ns, &n.to_ascii_lowercase());
                    }
                }
                Change::SliceDeleted(s) => {
                    if let Some((ns, n)) = meta(&s.metadata) {
                        self.remove_slice(&ns, &n);
                    }
                }
                Change::NamespaceDeleted(n) => {
                    if let Some(name) = &n.metadata.name {
                        self.namespaces.remove(name);
                    }
                }
                Change::PodDeleted(p) => {
                    if let Some((ns, n)) = meta(&p.metadata) {
                        self.remove_pod(&ns, &n.to_ascii_lowercase());
                    }
                }
                _ => {}
            }
        }
        self.changed();
    }

    fn changed(&mut self) {
        self.modified = now_secs();
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Replaces every object of one kind after a (re)list, keeping the indexes right.
    pub fn replace_all(&mut self, kind: Kind, items: Vec<Item>) {
        match kind {
            Kind::Service => {
                self.services.clear();
                self.svc_by_ip.clear();
            }
            Kind::EndpointSlice => {
                self.slab.clear();
                self.free.clear();
                self.slices.clear();
                self.slice_ids.clear();
                self.ep_by_ip.clear();
            }
            Kind::Namespace => self.namespaces.clear(),
            Kind::Pod => {
                self.pods.clear();
                self.pods_by_ip.clear();
            }
        }
        for item in items {
            self.put(item);
        }
        self.shrink();
        self.changed();
    }

    fn shrink(&mut self) {
        self.services.shrink_to_fit();
        self.svc_by_ip.shrink_to_fit();
        self.slab.shrink_to_fit();
        self.slices.shrink_to_fit();
        self.slice_ids.shrink_to_fit();
        self.ep_by_ip.shrink_to_fit();
    }

    fn put_service(&mut self, mut info: ServiceInfo) {
        info.namespace = self.intern_ns(&info.namespace);
        self.remove_service(&info.namespace.clone(), &info.name.clone());
        let info = Arc::new(info);
        for ip in info.cluster_ips.iter() {
            self.svc_by_ip.entry(*ip).or_default().push(info.clone());
        }
        self.services
            .entry(info.namespace.clone())
            .or_default()
            .insert(info.name.clone(), info);
    }

    fn remove_service(&mut self, ns: &str, name: &str) {
        let Some(m) = self.services.get_mut(ns) else {
            return;
        };
        let Some(old) = m.remove(name) else { return };
        if m.is_empty() {
            self.services.remove(ns);
        }
        for ip in old.cluster_ips.iter() {
            if let Some(v) = self.svc_by_ip.get_mut(ip) {
                v.retain(|s| !Arc::ptr_eq(s, &old));
                if v.is_empty() {
                    self.svc_by_ip.remove(ip);
                }
            }
        }
    }

    fn put_slice(&mut self, mut info: SliceInfo) {
        info.namespace = self.intern_ns(&info.namespace);
        // Share the service's name when the service is known.
        if let Some(svc) = self.service(&info.namespace, &info.service) {
            info.service = svc.name.clone();
        }
        self.remove_slice(&info.namespace.clone(), &info.name.clone());
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slab.push(None);
                (self.slab.len() - 1) as u32
            }
        };
        for ep in info.endpoints.iter() {
            let ids = match self.ep_by_ip.get(&ep.address) {
                Some(old) => old.with(id),
                None => Ids::One(id),
            };
            self.ep_by_ip.insert(ep.address, ids);
        }
        self.slice_ids
            .insert((info.namespace.clone(), info.name.clone()), id);
        self.slices
            .entry(info.namespace.clone())
            .or_default()
            .entry(info.service.clone())
            .or_default()
            .push(id);
        self.slab[id as usize] = Some(Arc::new(info));
    }

    fn remove_slice(&mut self, ns: &str, name: &str) {
        let Some(id) = self.slice_ids.remove(&(Arc::from(ns), Arc::from(name))) else {
            return;
        };
        let Some(old) = self.slab.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(id);
        if let Some(by_svc) = self.slices.get_mut(ns) {
            if let Some(ids) = by_svc.get_mut(&*old.service) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    by_svc.remove(&*old.service);
                }
            }
            if by_svc.is_empty() {
                self.slices.remove(ns);
            }
        }
        for ep in old.endpoints.iter() {
            if let Some(ids) = self.ep_by_ip.get(&ep.address) {
                match ids.without(id) {
                    Some(rest) => {
                        self.ep_by_ip.insert(ep.address, rest);
                    }
                    None => {
                        self.ep_by_ip.remove(&ep.address);
                    }
                }
            }
        }
    }

    fn put_pod(&mut self, mut info: PodInfo) {
        info.namespace = self.intern_ns(&info.namespace);
        self.remove_pod(&info.namespace.clone(), &info.name.clone());
        let info = Arc::new(info);
        for ip in info.ips.iter() {
            self.pods_by_ip.entry(*ip).or_default().push(info.clone());
        }
        self.pods
            .insert((info.namespace.clone(), info.name.clone()), info);
    }

    fn remove_pod(&mut self, ns: &str, name: &str) {
        let Some(old) = self.pods.remove(&(Arc::from(ns), Arc::from(name))) else {
            return;
        };
        for ip in old.ips.iter() {
            if let Some(v) = self.pods_by_ip.get_mut(ip) {
                v.retain(|p| !Arc::ptr_eq(p, &old));
                if v.is_empty() {
                    self.pods_by_ip.remove(ip);
                }
            }
        }
    }

    // ---- lookups (all keys lower-case) ----

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&Arc<ServiceInfo>> {
        self.services.get(ns)?.get(name)
    }

    /// The slices of one service.
    pub fn slices_of(&self, ns: &str, svc: &str) -> impl Iterator<Item = &Arc<SliceInfo>> {
        self.slices
            .get(ns)
            .and_then(|m| m.get(svc))
            .into_iter()
            .flatten()
            .filter_map(|id| self.slab.get(*id as usize)?.as_ref())
    }

    pub fn services_by_ip(&self, ip: &IpAddr) -> impl Iterator<Item = &Arc<ServiceInfo>> {
        self.svc_by_ip.get(ip).into_iter().flatten()
    }

    /// (slice, endpoint) pairs having this address.
    pub fn endpoints_by_ip(&self, ip: &IpAddr) -> Vec<(&Arc<SliceInfo>, &EndpointInfo)> {
        let mut out = Vec::new();
        for id in self.ep_by_ip.get(ip).map(Ids::as_slice).unwrap_or(&[]) {
            if let Some(Some(s)) = self.slab.get(*id as usize) {
                for ep in s.endpoints.iter() {
                    if ep.address == *ip {
                        out.push((s, ep));
                    }
                }
            }
        }
        out
    }

    pub fn pods_by_ip(&self, ip: &IpAddr) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods_by_ip.get(ip).into_iter().flatten()
    }

    pub fn service_count(&self) -> usize {
        self.services.values().map(|m| m.len()).sum()
    }
}

/// Object kinds the plugin watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Service,
    EndpointSlice,
    Namespace,
    Pod,
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

fn ports_of<'a>(
    ports: impl Iterator<Item = (Option<&'a str>, i32, Option<&'a str>)>,
) -> Box<[PortInfo]> {
    ports
        .map(|(name, port, proto)| PortInfo {
            name: name
                .unwrap_or_default()
                .to_ascii_lowercase()
                .into_boxed_str(),
            port,
            protocol: protocol(proto),
        })
        .collect()
}

/// Reduces a Service to its DNS view.
pub fn service_info(s: &Service) -> Option<ServiceInfo> {
    let namespace: Arc<str> = s.metadata.namespace.as_deref()?.to_ascii_lowercase().into();
    let name: Arc<str> = s.metadata.name.as_deref()?.to_ascii_lowercase().into();
    let spec = s.spec.as_ref();
    let external_name = match spec.and_then(|s| s.type_.as_deref()) {
        Some("ExternalName") => spec.and_then(|s| s.external_name.as_ref()).map(|e| {
            let e = e.trim_end_matches('.').to_ascii_lowercase();
            format!("{e}.").into_boxed_str()
        }),
        _ => None,
    };
    let headless = spec.and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    let mut cluster_ips: Vec<IpAddr> = Vec::new();
    if let Some(spec) = spec {
        for ip in spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
        {
            if let Some(ip) = parse_ip(ip)
                && !cluster_ips.contains(&ip)
            {
                cluster_ips.push(ip);
            }
        }
    }
    let ports = ports_of(
        spec.and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port, p.protocol.as_deref())),
    );
    Some(ServiceInfo {
        namespace,
        name,
        cluster_ips: cluster_ips.into_boxed_slice(),
        headless,
        external_name,
        ports,
        labels: s.metadata.labels.clone().unwrap_or_default(),
    })
}

/// Reduces an EndpointSlice to its DNS view; slices without the service label or of FQDN type
/// carry nothing DNS can use.
pub fn slice_info(s: &EndpointSlice) -> Option<SliceInfo> {
    let namespace: Arc<str> = s.metadata.namespace.as_deref()?.to_ascii_lowercase().into();
    let name: Arc<str> = s.metadata.name.as_deref()?.into();
    let service: Arc<str> = s
        .metadata
        .labels
        .as_ref()?
        .get(SERVICE_NAME_LABEL)?
        .to_ascii_lowercase()
        .into();
    if s.address_type == "FQDN" {
        return None;
    }
    let mut endpoints = Vec::with_capacity(s.endpoints.len());
    for e in &s.endpoints {
        let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let hostname = e
            .hostname
            .as_deref()
            .map(|h| h.to_ascii_lowercase().into_boxed_str());
        let target_name = e
            .target_ref
            .as_ref()
            .filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod"))
            .and_then(|r| r.name.as_deref())
            .map(|n| n.to_ascii_lowercase().into_boxed_str());
        for a in &e.addresses {
            if let Some(address) = parse_ip(a) {
                endpoints.push(EndpointInfo {
                    address,
                    ready,
                    hostname: hostname.clone(),
                    target_name: target_name.clone(),
                });
            }
        }
    }
    let mut ports: Vec<PortInfo> = ports_of(s.ports.iter().flatten().map(|p| {
        (
            p.name.as_deref(),
            p.port.unwrap_or(-1),
            p.protocol.as_deref(),
        )
    }))
    .into_vec();
    if ports.is_empty() {
        ports.push(PortInfo {
            name: "".into(),
            port: -1,
            protocol: "",
        });
    }
    Some(SliceInfo {
        namespace,
        name,
        service,
        endpoints: endpoints.into_boxed_slice(),
        ports: ports.into_boxed_slice(),
    })
}

/// Reduces a Pod to its namespace, name and IPs.
pub fn pod_info(p: &Pod) -> Option<PodInfo> {
    let namespace: Arc<str> = p.metadata.namespace.as_deref()?.to_ascii_lowercase().into();
    let name: Arc<str> = p.metadata.name.as_deref()?.to_ascii_lowercase().into();
    let status = p.status.as_ref();
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|i| i.ip.as_str())
        .chain(status.and_then(|s| s.pod_ip.as_deref()))
    {
        if let Some(ip) = parse_ip(ip)
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    Some(PodInfo {
        namespace,
        name,
        ips: ips.into_boxed_slice(),
    })
}

/// A CoreDNS `labels` selector: `k=v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`,
/// comma separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                return Err(format!("empty requirement in label selector '{s}'"));
            }
            let words: Vec<&str> = p.split_whitespace().collect();
            let req = if let Some((k, v)) = p.split_once("!=") {
                Requirement::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Requirement::Eq(k.trim().into(), v.trim().into())
            } else if words.len() >= 2 && (words[1] == "in" || words[1] == "notin") {
                let rest = p[p.find('(').ok_or_else(|| format!("missing '(' in '{p}'"))? + 1..]
                    .trim_end()
                    .strip_suffix(')')
                    .ok_or_else(|| format!("missing ')' in '{p}'"))?;
                let vals = rest.split(',').map(|v| v.trim().to_string()).collect();
                if words[1] == "in" {
                    Requirement::In(words[0].into(), vals)
                } else {
                    Requirement::NotIn(words[0].into(), vals)
                }
            } else if let Some(k) = p.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if words.len() == 1 {
                Requirement::Exists(p.into())
            } else {
                return Err(format!("cannot parse label requirement '{p}'"));
            };
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::Ne(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let mut l = BTreeMap::new();
        l.insert("app".to_string(), "web".to_string());
        assert!(LabelSelector::parse("app=web").unwrap().matches(&l));
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&l));
        assert!(
            LabelSelector::parse("app in (web, db),!tier")
                .unwrap()
                .matches(&l)
        );
        assert!(!LabelSelector::parse("app notin (web)").unwrap().matches(&l));
        assert!(LabelSelector::parse("a in (b").is_err());
        assert!(LabelSelector::parse("app=web,,x").is_err());
    }
}

//! The node-local cache's side of a trace (NodeLocal DNSCache, `docs/node-local-dns.md`).
//! node-cache's Corefile has no `log`, so what the cache did with a query is read from its own
//! counters on `:9253/metrics` (CoreDNS's `coredns_cache_hits_total`,
//! `coredns_cache_misses_total`, `coredns_forward_requests_total`,
//! `coredns_proxy_conn_cache_{hits,misses}_total`), scraped through the API server's
//! `pods/proxy` just before and just after the lookup: the difference is what the lookup cost
//! the cache. The addresses of the `kube-dns-upstream` Service say where its TCP forward went.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use minikind_control_plane::dns_addon::NAMESPACE;
use minikind_control_plane::node_local_dns;

use super::conntrack::{self, Flow};

/// One server block's cache counters (the `zones` label of CoreDNS's cache metrics, the `zone`
/// label of its request counter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneCounters {
    pub hits_success: u64,
    pub hits_denial: u64,
    pub misses: u64,
    pub requests: u64,
}

impl ZoneCounters {
    pub fn hits(&self) -> u64 {
        self.hits_success + self.hits_denial
    }

    /// What happened between `before` and `self` (a restarted cache starts from zero:
    /// counters that went down count from zero).
    fn since(&self, before: &ZoneCounters) -> ZoneCounters {
        let d = |a: u64, b: u64| if a >= b { a - b } else { a };
        ZoneCounters {
            hits_success: d(self.hits_success, before.hits_success),
            hits_denial: d(self.hits_denial, before.hits_denial),
            misses: d(self.misses, before.misses),
            requests: d(self.requests, before.requests),
        }
    }
}

/// node-cache's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Per server block's zone (`cluster.local.`, `.`, …), summed over the addresses it binds.
    pub zones: BTreeMap<String, ZoneCounters>,
    /// Queries forwarded, per upstream (`to`, `ip:port`).
    pub forwards: BTreeMap<String, u64>,
    /// Pooled connections taken (`hits`) and dialled (`misses`) per upstream and transport.
    pub conn_hits: BTreeMap<(String, String), u64>,
    pub conn_misses: BTreeMap<(String, String), u64>,
}

/// `name{labels} value` of one sample line; `None` for comments and lines that don't parse.
fn sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, labels)) = head.split_once('{') else {
        return Some((head, BTreeMap::new(), value));
    };
    let labels = labels.strip_suffix('}')?;
    let mut out = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        // The value runs to the first unescaped quote.
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.insert(key.trim_start_matches(',').to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, out, value))
}

impl CacheCounters {
    /// Reads the counters the trace needs from a Prometheus text exposition.
    pub fn parse(text: &str) -> CacheCounters {
        let mut c = CacheCounters::default();
        for (name, labels, value) in text.lines().filter_map(sample) {
            let n = value.max(0.0) as u64;
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            match name {
                "coredns_cache_hits_total" => {
                    let z = c.zones.entry(label("zones")).or_default();
                    if label("type") == "denial" {
                        z.hits_denial += n;
                    } else {
                        z.hits_success += n;
                    }
                }
                "coredns_cache_misses_total" => {
                    c.zones.entry(label("zones")).or_default().misses += n;
                }
                "coredns_dns_requests_total" => {
                    c.zones.entry(label("zone")).or_default().requests += n;
                }
                "coredns_forward_requests_total" => {
                    *c.forwards.entry(label("to")).or_default() += n;
                }
                "coredns_proxy_conn_cache_hits_total" => {
                    *c.conn_hits
                        .entry((label("to"), label("proto_type")))
                        .or_default() += n;
                }
                "coredns_proxy_conn_cache_misses_total" => {
                    *c.conn_misses
                        .entry((label("to"), label("proto_type")))
                        .or_default() += n;
                }
                _ => {}
            }
        }
        c
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &CacheCounters) -> CacheCounters {
        let zones = self
            .zones
            .iter()
            .map(|(z, after)| {
                let b = before.zones.get(z).copied().unwrap_or_default();
                (z.clone(), after.since(&b))
            })
            .collect();
        fn diff<K: Ord + Clone>(a: &BTreeMap<K, u64>, b: &BTreeMap<K, u64>) -> BTreeMap<K, u64> {
            a.iter()
                .map(|(k, &v)| {
                    let was = b.get(k).copied().unwrap_or(0);
                    (k.clone(), if v >= was { v - was } else { v })
                })
                .filter(|(_, v)| *v > 0)
                .collect()
        }
        CacheCounters {
            zones,
            forwards: diff(&self.forwards, &before.forwards),
            conn_hits: diff(&self.conn_hits, &before.conn_hits),
            conn_misses: diff(&self.conn_misses, &before.conn_misses),
        }
    }

    /// The server block a name falls in: the longest of the zones the counters know.
    pub fn zone_of(&self, name: &str) -> Option<&str> {
        let zones: Vec<String> = self.zones.keys().cloned().collect();
        super::path::zone_of(name, &zones).and_then(|z| {
            self.zones
                .keys()
                .find(|k| k.as_str() == z)
                .map(String::as_str)
        })
    }
}

/// What the trace read about the cache on the client's node.
#[derive(Debug, Clone, Default)]
pub struct NodeCacheEvidence {
    /// `kube-system/<pod>`, the cache on the client's node, and the pod's own name.
    pub pod: String,
    pub name: String,
    /// Its counters just before the lookup and what the lookup added to them.
    pub before: Option<CacheCounters>,
    pub delta: Option<CacheCounters>,
    /// The `kube-dns-upstream` Service's address and port, where the cache forwards cluster
    /// names over TCP.
    pub upstream_service: Option<SocketAddr>,
    /// Why the counters could not be read, if they could not.
    pub error: Option<String>,
}

/// The addresses the replicas see the cache's TCP connections to `upstream` come from:
/// kube-proxy masquerades a node's connection to a ClusterIP, as the node's address or, towards
/// a pod on the same node, the bridge's — the reply direction of each flow in the node's
/// conntrack table says which, and with which port.
pub fn seen_as(flows: &[Flow], node_ip: IpAddr, upstream: SocketAddr) -> Vec<SocketAddr> {
    conntrack::from_to(flows, "tcp", node_ip, None, upstream)
        .iter()
        .map(|f| f.reply.1)
        .collect()
}

/// The node-local cache pod on `node` (the DaemonSet's, by its label), if any.
pub async fn cache_pod(client: &kube::Client, node: &str) -> Result<Option<String>> {
    let pods = crate::dns::nodelocal::cache_pods(client).await?;
    Ok(pods.into_iter().find_map(|p| {
        let on = p.spec.as_ref()?.node_name.as_deref()? == node;
        on.then(|| p.metadata.name.clone()).flatten()
    }))
}

/// The cache pod's counters, read through the API server's `pods/proxy` (the pod has the
/// node's network: its `:9253` is the node's).
pub async fn scrape(client: &kube::Client, pod: &str) -> Result<CacheCounters> {
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let sub = format!("{pod}:{}/proxy/metrics", node_local_dns::METRICS_PORT);
    let path = format!("{pods}/{sub}");
    let req = kube::core::Request::new(pods)
        .get(&sub, &kube::api::GetParams::default())
        .context("building the metrics request")?;
    let text = client
        .request_text(req)
        .await
        .with_context(|| format!("reading {path}"))?;
    if !text.contains("coredns_") {
        bail!("{path} served no CoreDNS metrics");
    }
    Ok(CacheCounters::parse(&text))
}

/// The `kube-dns-upstream` Service's ClusterIP and DNS port.
pub async fn upstream_service(client: &kube::Client) -> Result<Option<SocketAddr>> {
    let api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let Some(svc) = api
        .get_opt(node_local_dns::UPSTREAM_SERVICE)
        .await
        .context("reading the kube-dns-upstream Service")?
    else {
        return Ok(None);
    };
    let ip: Option<IpAddr> = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(|ip| ip.parse().ok());
    Ok(ip.map(|ip| SocketAddr::new(ip, 53)))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const BEFORE: &str = "\
# HELP coredns_cache_hits_total The count of cache hits.
# TYPE coredns_cache_hits_total counter
coredns_cache_hits_total{server=\"dns://169.254.20.10:53\",type=\"success\",zones=\"cluster.local.\",view=\"\"} 4
coredns_cache_hits_total{server=\"dns://10.96.0.10:53\",type=\"success\",zones=\"cluster.local.\",view=\"\"} 2
coredns_cache_misses_total{server=\"dns://169.254.20.10:53\",zones=\"cluster.local.\",view=\"\"} 7
coredns_dns_requests_total{server=\"dns://169.254.20.10:53\",zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"} 13
coredns_forward_requests_total{to=\"10.96.118.7:53\"} 7
coredns_proxy_conn_cache_misses_total{proxy_name=\"forward\",to=\"10.96.118.7:53\",proto_type=\"tcp\"} 1
coredns_proxy_conn_cache_hits_total{proxy_name=\"forward\",to=\"10.96.118.7:53\",proto_type=\"tcp\"} 6
coredns_build_info{version=\"1.11.3\",revision=\"x\",goversion=\"rust\"} 1
";

    #[test]
    fn counters_are_summed_per_zone_and_differenced() {
        let before = CacheCounters::parse(BEFORE);
        assert_eq!(
            before.zones["cluster.local."],
            ZoneCounters {
                hits_success: 6,
                hits_denial: 0,
                misses: 7,
                requests: 13
            }
        );
        assert_eq!(before.forwards["10.96.118.7:53"], 7);
        let after = CacheCounters::parse(
            &(BEFORE
                .replace("} 7\n", "} 8\n")
                .replace("proto_type=\"tcp\"} 6", "proto_type=\"tcp\"} 7")
                .replace("} 13\n", "} 15\n")
                + "coredns_cache_hits_total{server=\"dns://169.254.20.10:53\",type=\"denial\",zones=\"cluster.local.\",view=\"\"} 1\n"),
        );
        let d = after.since(&before);
        assert_eq!(
            d.zones["cluster.local."],
            ZoneCounters {
                hits_success: 0,
                hits_denial: 1,
                misses: 1,
                requests: 2
            }
        );
        assert_eq!(d.forwards, BTreeMap::from([("10.96.118.7:53".into(), 1)]));
        assert_eq!(
            d.conn_hits,
            BTreeMap::from([(("10.96.118.7:53".into(), "tcp".into()), 1)])
        );
        assert!(d.conn_misses.is_empty());
        assert_eq!(
            d.zone_of("kubernetes.default.svc.cluster.local."),
            Some("cluster.local.")
        );
        assert_eq!(d.zone_of("www.example.test."), None);
    }

    #[test]
    fn label_values_with_escapes_and_bad_lines() {
        let (name, labels, v) = sample(r#"m{a="x\"y",b="c,d"} 3"#).unwrap();
        assert_eq!((name, v), ("m", 3.0));
        assert_eq!(labels["a"], "x\"y");
        assert_eq!(labels["b"], "c,d");
        assert!(sample("# TYPE m counter").is_none());
        assert!(sample("m{a=\"unterminated} 3").is_none());
        assert!(sample("m notanumber").is_none());
        assert_eq!(
            CacheCounters::parse("garbage\n{}\n"),
            CacheCounters::default()
        );
    }
}

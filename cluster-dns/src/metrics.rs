//! A small Prometheus registry with CoreDNS's metric names and labels, which every plugin
//! records into (coredns plugin/metrics/vars, and each plugin's metrics.go). Counters are
//! atomics behind a read-mostly map, so recording a request takes no lock in the steady state.
//! Serving it at `/metrics` is the prometheus plugin's.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Label values of one series, in the family's label order.
pub type Labels = Vec<Arc<str>>;

pub struct Family<V> {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    labels: &'static [&'static str],
    pub(crate) series: RwLock<HashMap<Labels, Arc<V>>>,
}

impl<V: Default> Family<V> {
    fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Family {
            name,
            help,
            labels,
            series: RwLock::new(HashMap::new()),
        }
    }

    fn get(&self, values: &[&str]) -> Arc<V> {
        if let Ok(m) = self.series.read() {
            // Look up without allocating: compare element-wise.
            if let Some((_, v)) = m.iter().find(|(k, _)| {
                k.len() == values.len() && k.iter().zip(values).all(|(a, b)| &**a == *b)
            }) {
                return v.clone();
            }
        }
        let key: Labels = values.iter().map(|v| Arc::from(*v)).collect();
        let mut m = match self.series.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(key).or_default().clone()
    }
}

impl<V> Family<V> {
    /// The series' labels as the text exposition writes them (`k="v",…`), with `extra` last.
    pub(crate) fn label_str(&self, values: &Labels, extra: Option<(&str, &str)>) -> String {
        let mut s = String::new();
        let mut first = true;
        for (k, v) in self.labels.iter().zip(values.iter()) {
            if !first {
                s.push(',');
            }
            first = false;
            let _ = write!(s, "{k}=\"{}\"", escape(v));
        }
        if let Some((k, v)) = extra {
            if !first {
                s.push(',');
            }
            let _ = write!(s, "{k}=\"{v}\"");
        }
        s
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// CoreDNS's duration buckets: 0.25 ms doubling 16 times.
const DURATION_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];
/// Size buckets (bytes) as CoreDNS's request/response size histograms.
const SIZE_BUCKETS: [f64; 16] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16000.0, 32000.0,
    48000.0, 64000.0, 128000.0, 256000.0,
];

pub struct Histogram {
    pub(crate) buckets: &'static [f64; 16],
    pub(crate) counts: [AtomicU64; 16],
    pub(crate) count: AtomicU64,
    /// Sum in nanoseconds (durations) or bytes (sizes).
    pub(crate) sum: AtomicU64,
    pub(crate) scale: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::with(&DURATION_BUCKETS, 1e-9)
    }
}

impl Histogram {
    fn with(buckets: &'static [f64; 16], scale: f64) -> Self {
        Histogram {
            buckets,
            counts: Default::default(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            scale,
        }
    }
    fn observe_raw(&self, raw: u64) {
        let v = raw as f64 * self.scale;
        if let Some(i) = self.buckets.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(raw, Ordering::Relaxed);
    }
    pub fn observe_duration(&self, d: Duration) {
        self.observe_raw(d.as_nanos() as u64);
    }
}

/// A size histogram (its own type so the family default uses size buckets).
pub struct SizeHistogram(pub(crate) Histogram);

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram(Histogram::with(&SIZE_BUCKETS, 1.0))
    }
}

impl SizeHistogram {
    pub fn observe(&self, bytes: usize) {
        self.0.observe_raw(bytes as u64);
    }
}

/// Every metric the server exports.
pub struct Registry {
    pub requests: Family<Counter>,
    pub responses: Family<Counter>,
    pub request_duration: Family<Histogram>,
    pub request_size: Family<SizeHistogram>,
    pub response_size: Family<SizeHistogram>,
    pub panics: Family<Counter>,
    pub plugin_enabled: Family<Gauge>,
    pub build_info: Family<Gauge>,
    pub cache_hits: Family<Counter>,
    pub cache_misses: Family<Counter>,
    pub cache_entries: Family<Gauge>,
    pub cache_prefetch: Family<Counter>,
    pub cache_served_stale: Family<Counter>,
    pub cache_evictions: Family<Counter>,
    pub forward_requests: Family<Counter>,
    pub forward_responses: Family<Counter>,
    pub forward_request_duration: Family<Histogram>,
    pub forward_healthcheck_failures: Family<Counter>,
    pub forward_healthcheck_broken: Family<Counter>,
    pub forward_max_concurrent_rejects: Family<Counter>,
    pub proxy_conn_cache_hits: Family<Counter>,
    pub proxy_conn_cache_misses: Family<Counter>,
    pub reload_failed: Family<Counter>,
    pub health_request_duration: Family<Histogram>,
    pub hosts_entries: Family<Gauge>,
    pub kubernetes_dns_programming: Family<Gauge>,
}

pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry {
        requests: Family::new("coredns_dns_requests_total", "Counter of DNS requests made per zone, protocol and family.", &["server", "zone", "view", "proto", "family", "type"]),
        responses: Family::new("coredns_dns_responses_total", "Counter of response status codes.", &["server", "zone", "view", "rcode", "plugin"]),
        request_duration: Family::new("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) each request took per zone.", &["server", "zone", "view", "type"]),
        request_size: Family::new("coredns_dns_request_size_bytes", "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.", &["server", "zone", "view", "proto"]),
        response_size: Family::new("coredns_dns_response_size_bytes", "Size of the returned response in bytes.", &["server", "zone", "view", "proto"]),
        panics: Family::new("coredns_panics_total", "A metrics that counts the number of panics.", &[]),
        plugin_enabled: Family::new("coredns_plugin_enabled", "A metric that indicates whether a plugin is enabled on per server and zone basis.", &["server", "zone", "view", "name"]),
        build_info: Family::new("coredns_build_info", "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.", &["version", "revision", "goversion"]),
        cache_hits: Family::new("coredns_cache_hits_total", "The count of cache hits.", &["server", "type", "zones", "view"]),
        cache_misses: Family::new("coredns_cache_misses_total", "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.", &["server", "zones", "view"]),
        cache_entries: Family::new("coredns_cache_entries", "The number of elements in the cache.", &["server", "type", "zones", "view"]),
        cache_prefetch: Family::new("coredns_cache_prefetch_total", "The number of times the cache has prefetched a cached item.", &["server", "zones", "view"]),
        cache_served_stale: Family::new("coredns_cache_served_stale_total", "The number of requests served from stale cache entries.", &["server", "zones", "view"]),
        cache_evictions: Family::new("coredns_cache_evictions_total", "The count of cache evictions.", &["server", "type", "zones", "view"]),
        forward_requests: Family::new("coredns_forward_requests_total", "Counter of requests made per upstream.", &["to"]),
        forward_responses: Family::new("coredns_forward_responses_total", "Counter of responses received per upstream.", &["to", "rcode"]),
        forward_request_duration: Family::new("coredns_forward_request_duration_seconds", "Histogram of the time each request took.", &["to", "rcode"]),
        forward_healthcheck_failures: Family::new("coredns_forward_healthcheck_failures_total", "Counter of the number of failed healthchecks.", &["to"]),
        forward_healthcheck_broken: Family::new("coredns_forward_healthcheck_broken_total", "Counter of the number of complete failures of the healthchecks.", &[]),
        forward_max_concurrent_rejects: Family::new("coredns_forward_max_concurrent_rejects_total", "Counter of the number of queries rejected because the concurrent queries were at maximum.", &[]),
        proxy_conn_cache_hits: Family::new("coredns_proxy_conn_cache_hits_total", "Counter of connection cache hits per upstream and protocol.", &["proxy_name", "to", "proto_type"]),
        proxy_conn_cache_misses: Family::new("coredns_proxy_conn_cache_misses_total", "Counter of connection cache misses per upstream and protocol.", &["proxy_name", "to", "proto_type"]),
        reload_failed: Family::new("coredns_reload_failed_total", "Counter of the number of failed reload attempts.", &[]),
        health_request_duration: Family::new("coredns_health_request_duration_seconds", "Histogram of the time (in seconds) each request took.", &[]),
        hosts_entries: Family::new("coredns_hosts_entries", "The combined number of entries in hosts and Corefile.", &[]),
        kubernetes_dns_programming: Family::new("coredns_kubernetes_dns_programming_duration_seconds_count", "Number of DNS programming observations.", &[]),
    })
}

impl<V: Default> Family<V> {
    pub fn with(&self, values: &[&str]) -> Arc<V> {
        self.get(values)
    }
}

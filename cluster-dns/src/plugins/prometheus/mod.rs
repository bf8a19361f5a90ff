//! `prometheus [ADDRESS]`: exports the metrics at `http://ADDRESS/metrics` (default
//! `localhost:9153`) in the text exposition format, and counts every request a block with it
//! serves (coredns plugin/metrics/). The series themselves are `crate::metrics`'s registry.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use minikind_dns_log::{Proto, rcode_name};

use crate::corefile::{CorefileError, Directive};
use crate::metrics::{Counter, Family, Gauge, Histogram, registry};

/// Where the endpoint is served.
pub const PATH: &str = "/metrics";

/// Refreshes gauges before a scrape.
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

pub fn parse(d: &Directive) -> Result<String, CorefileError> {
    if !d.block.is_empty() {
        return Err(d.err("takes no block"));
    }
    match d.arg_strs().as_slice() {
        [] => Ok("localhost:9153".to_string()),
        [a] => Ok(a.to_string()),
        _ => Err(d.err("takes at most one address")),
    }
}

/// `GET /metrics`: the text exposition of every metric (coredns plugin/metrics/metrics.go).
pub async fn handle(before: BeforeScrape) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    before();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    )
}

fn render_counters(out: &mut String, f: &Family<Counter>) {
    let _ = writeln!(
        out,
        "# HELP {} {}\n# TYPE {} counter",
        f.name, f.help, f.name
    );
    if let Ok(m) = f.series.read() {
        for (k, v) in m.iter() {
            let _ = writeln!(out, "{}{{{}}} {}", f.name, f.label_str(k, None), v.get());
        }
    }
}

fn render_gauges(out: &mut String, f: &Family<Gauge>) {
    let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", f.name, f.help, f.name);
    if let Ok(m) = f.series.read() {
        for (k, v) in m.iter() {
            let _ = writeln!(out, "{}{{{}}} {}", f.name, f.label_str(k, None), v.get());
        }
    }
}

fn render_hist<V>(out: &mut String, f: &Family<V>, h: impl Fn(&V) -> &Histogram) {
    let _ = writeln!(
        out,
        "# HELP {} {}\n# TYPE {} histogram",
        f.name, f.help, f.name
    );
    if let Ok(m) = f.series.read() {
        for (k, v) in m.iter() {
            let hist = h(v);
            let mut cum = 0u64;
            for (i, b) in hist.buckets.iter().enumerate() {
                cum += hist.counts[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{}_bucket{{{}}} {}",
                    f.name,
                    f.label_str(k, Some(("le", &format!("{b}")))),
                    cum
                );
            }
            let count = hist.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{}_bucket{{{}}} {}",
                f.name,
                f.label_str(k, Some(("le", "+Inf"))),
                count
            );
            let sum = hist.sum.load(Ordering::Relaxed) as f64 * hist.scale;
            let ls = f.label_str(k, None);
            let _ = writeln!(out, "{}_sum{{{ls}}} {sum}", f.name);
            let _ = writeln!(out, "{}_count{{{ls}}} {count}", f.name);
        }
    }
}

/// The text exposition of every metric.
pub fn render() -> String {
    let r = registry();
    let mut out = String::with_capacity(8192);
    r.build_info
        .with(&[env!("CARGO_PKG_VERSION"), "minikind", "rust"])
        .set(1.0);
    render_gauges(&mut out, &r.build_info);
    render_counters(&mut out, &r.requests);
    render_counters(&mut out, &r.responses);
    render_hist(&mut out, &r.request_duration, |h| h);
    render_hist(&mut out, &r.request_size, |h| &h.0);
    render_hist(&mut out, &r.response_size, |h| &h.0);
    render_counters(&mut out, &r.panics);
    render_gauges(&mut out, &r.plugin_enabled);
    render_counters(&mut out, &r.cache_hits);
    render_counters(&mut out, &r.cache_misses);
    render_gauges(&mut out, &r.cache_entries);
    render_counters(&mut out, &r.cache_prefetch);
    render_counters(&mut out, &r.cache_served_stale);
    render_counters(&mut out, &r.cache_evictions);
    render_counters(&mut out, &r.forward_requests);
    render_counters(&mut out, &r.forward_responses);
    render_hist(&mut out, &r.forward_request_duration, |h| h);
    render_counters(&mut out, &r.forward_healthcheck_failures);
    render_counters(&mut out, &r.forward_healthcheck_broken);
    render_counters(&mut out, &r.forward_max_concurrent_rejects);
    render_counters(&mut out, &r.proxy_conn_cache_hits);
    render_counters(&mut out, &r.proxy_conn_cache_misses);
    render_counters(&mut out, &r.reload_failed);
    render_hist(&mut out, &r.health_request_duration, |h| h);
    render_gauges(&mut out, &r.hosts_entries);
    out
}

/// What the request metrics are labelled and measured with.
pub(crate) struct Asked {
    pub client: SocketAddr,
    pub proto: Proto,
    pub qtype: RecordType,
    pub size: usize,
}

/// Counts one request and its response as CoreDNS's `coredns_dns_*` series (coredns
/// plugin/metrics/vars/report.go); `server` is the block's `dns://:53`-style label.
pub(crate) fn record_metrics(
    server: &str,
    zone: &str,
    req: &Asked,
    rcode: ResponseCode,
    plugin: &str,
    rsize: usize,
    took: Duration,
) {
    let r = registry();
    let family = if req.client.is_ipv4() { "1" } else { "2" };
    let qtype = req.qtype.to_string();
    r.requests
        .with(&[server, zone, "", req.proto.as_str(), family, &qtype])
        .inc();
    r.responses
        .with(&[server, zone, "", &rcode_name(u16::from(rcode)), plugin])
        .inc();
    r.request_duration
        .with(&[server, zone, "", &qtype])
        .observe_duration(took);
    r.request_size
        .with(&[server, zone, "", req.proto.as_str()])
        .observe(req.size);
    r.response_size
        .with(&[server, zone, "", req.proto.as_str()])
        .observe(rsize);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_series_with_labels() {
        let r = registry();
        r.requests
            .with(&["dns://:1", ".", "", "udp", "1", "A"])
            .inc();
        r.request_duration
            .with(&["dns://:1", ".", "", "A"])
            .observe_duration(Duration::from_micros(300));
        let text = render();
        assert!(text.contains("coredns_dns_requests_total{server=\"dns://:1\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"} 1"), "{text}");
        assert!(text.contains("coredns_dns_request_duration_seconds_bucket{server=\"dns://:1\",zone=\".\",view=\"\",type=\"A\",le=\"0.0005\"} 1"));
    }
}

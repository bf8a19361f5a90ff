//! `prometheus [ADDRESS]`: exports the metrics at `http://ADDRESS/metrics` (default
//! `localhost:9153`), and counts every request a block with it serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use minikind_dns_log::{Proto, rcode_name};

use crate::corefile::{CorefileError, Directive};
use crate::metrics::registry;

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
        crate::metrics::render(),
    )
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

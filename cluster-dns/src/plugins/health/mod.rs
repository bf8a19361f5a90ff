//! `health [ADDRESS] { lameduck DURATION }`: `GET /health` answers 200 `OK` while the process
//! runs; on shutdown the server keeps serving for the lameduck period before it exits
//! (coredns plugin/health/health.go).

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::corefile::{CorefileError, Directive};
use crate::metrics::registry;
use crate::util::log;

/// Where the endpoint is served.
pub const PATH: &str = "/health";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub addr: String,
    pub lameduck: Duration,
}

impl Health {
    pub fn parse(d: &Directive) -> Result<Self, CorefileError> {
        let addr = match d.arg_strs().as_slice() {
            [] => ":8080".to_string(),
            [a] => a.to_string(),
            _ => return Err(d.err("takes at most one address")),
        };
        let mut lameduck = Duration::ZERO;
        for line in &d.block {
            match (line.name.text.as_str(), line.arg_strs().as_slice()) {
                ("lameduck", [dur]) => {
                    lameduck = crate::util::parse_duration(dur)
                        .map_err(|e| line.err(format!("plugin/health: lameduck: {e}")))?
                }
                ("lameduck", _) => {
                    return Err(line.err("plugin/health: lameduck needs one duration"));
                }
                (other, _) => {
                    return Err(line.err(format!("plugin/health: unknown property '{other}'")));
                }
            }
        }
        Ok(Health { addr, lameduck })
    }
}

/// `GET /health`: 200 `OK`, timed into `coredns_health_request_duration_seconds`.
pub async fn handle() -> (StatusCode, &'static str) {
    let t = Instant::now();
    let out = (StatusCode::OK, "OK");
    registry()
        .health_request_duration
        .with(&[])
        .observe_duration(t.elapsed());
    out
}

/// On shutdown: goes on serving for the lameduck period (nothing when it is zero).
pub async fn lameduck(period: Duration) {
    if !period.is_zero() {
        log(
            "INFO",
            "",
            format!("Going into lameduck mode for {}s", period.as_secs_f64()),
        );
        tokio::time::sleep(period).await;
    }
}

//! The HTTP side: `/health` (health plugin), `/ready` (ready plugin), `/metrics` (prometheus
//! plugin), on whichever addresses the Corefile gives them.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// What the handlers need from the running server.
#[derive(Clone)]
pub struct State {
    /// Names of the plugins that are not ready (empty: ready).
    pub not_ready: Arc<dyn Fn() -> Vec<&'static str> + Send + Sync>,
    /// Refreshes gauges before a scrape.
    pub before_metrics: Arc<dyn Fn() + Send + Sync>,
}

pub fn router(paths: &[&'static str], state: State) -> Router {
    let mut r = Router::new();
    for p in paths {
        match *p {
            "/health" => {
                r = r.route(
                    "/health",
                    get(|| async {
                        let t = Instant::now();
                        let out = (StatusCode::OK, "OK");
                        crate::metrics::registry()
                            .health_request_duration
                            .with(&[])
                            .observe_duration(t.elapsed());
                        out
                    }),
                )
            }
            "/ready" => {
                let s = state.clone();
                r = r.route(
                    "/ready",
                    get(move || {
                        let s = s.clone();
                        async move {
                            let nr = (s.not_ready)();
                            if nr.is_empty() {
                                (StatusCode::OK, "OK".to_string())
                            } else {
                                (StatusCode::SERVICE_UNAVAILABLE, nr.join(", "))
                            }
                        }
                    }),
                )
            }
            "/metrics" => {
                let s = state.clone();
                r = r.route(
                    "/metrics",
                    get(move || {
                        let s = s.clone();
                        async move {
                            (s.before_metrics)();
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4; charset=utf-8",
                                )],
                                crate::metrics::render(),
                            )
                        }
                    }),
                )
            }
            _ => {}
        }
    }
    r
}

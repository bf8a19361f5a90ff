//! Watches: a chunked stream of newline-delimited `{"type":…,"object":…}` events with
//! resourceVersion replay, initial events (`sendInitialEvents`), bookmarks carrying kind and
//! apiVersion, the in-stream `410 Expired` error, `timeoutSeconds`, and one-row Tables for
//! `kubectl get -w`.

use super::objects::parse_selectors;
use super::tables::{self, IncludeObject};
use super::{ApiState, Ctx};
use crate::errors::{ApiError, ApiResult};
use crate::resources::{self, ResIdx};
use crate::store::{Event, EventType, Obj, WatchStart};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(15);
/// Watch length when the client gives no `timeoutSeconds` (the real server picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Filter {
    res: ResIdx,
    ns: Option<String>,
    q: super::objects::ListQuery,
}

impl Filter {
    /// The event type this watcher sees for a change, if any: a modification that moves the
    /// object into the selection is ADDED, out of it DELETED.
    fn event_type(&self, e: &Event) -> Option<&'static str> {
        let now = self.matches(&e.obj);
        match (e.ty, e.prev.as_deref().map(|p| self.matches(p))) {
            (EventType::Modified, Some(before)) => match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            },
            (ty, _) => now.then_some(ty.as_str()),
        }
    }

    fn matches(&self, o: &Obj) -> bool {
        o.res == resources::storage_of(self.res)
            && self.ns.as_deref().is_none_or(|ns| &*o.namespace == ns)
            && o.labels_match(&self.q.labels)
            && o.fields_match(&self.q.fields)
    }
}

struct Encoder {
    res: ResIdx,
    table: Option<IncludeObject>,
}

impl Encoder {
    fn event(&self, ty: &str, obj: &Obj) -> Bytes {
        match self.table {
            Some(include) => {
                let v = obj.value();
                let t = tables::table(self.res, std::slice::from_ref(&v), obj.rv, None, include);
                Bytes::from(format!("{{\"type\":\"{ty}\",\"object\":{t}}}\n"))
            }
            None => {
                let mut b = Vec::with_capacity(obj.json.len() + 32);
                b.extend_from_slice(b"{\"type\":\"");
                b.extend_from_slice(ty.as_bytes());
                b.extend_from_slice(b"\",\"object\":");
                b.extend_from_slice(&crate::crd::served_json(self.res, obj));
                b.extend_from_slice(b"}\n");
                Bytes::from(b)
            }
        }
    }

    /// A BOOKMARK, written by hand: it must carry kind and apiVersion.
    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let r = resources::get(self.res);
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": meta});
        Bytes::from(format!("{{\"type\":\"BOOKMARK\",\"object\":{obj}}}\n"))
    }

    fn error(e: &ApiError) -> Bytes {
        Bytes::from(format!(
            "{{\"type\":\"ERROR\",\"object\":{}}}\n",
            e.status()
        ))
    }
}

fn flag(ctx: &Ctx, k: &str) -> bool {
    ctx.query.get(k).is_some_and(|v| v == "true" || v == "1")
}

pub fn watch(st: &Arc<ApiState>, ctx: &Ctx, res: ResIdx) -> ApiResult<Response> {
    let mut q = parse_selectors(res, ctx)?;
    if let Some(name) = &ctx.name {
        // `GET …/pods/<name>?watch=true` is a watch with a name field selector.
        let sel = format!("metadata.name={name}");
        q.fields = crate::selectors::Selector::parse_fields(&sel)?;
    }
    let filter = Filter {
        res,
        ns: ctx.namespace.clone(),
        q,
    };
    let bookmarks = flag(ctx, "allowWatchBookmarks");
    let send_initial = flag(ctx, "sendInitialEvents");
    if send_initial
        && (ctx.query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan")
            || !bookmarks)
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![crate::errors::FieldCause {
                reason: "FieldValueForbidden",
                field: "sendInitialEvents".into(),
                message: "Forbidden: sendInitialEvents is allowed with watch=true, allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan".into(),
            }],
        ));
    }
    let rv_param = ctx
        .query
        .get("resourceVersion")
        .filter(|s| !s.is_empty())
        .cloned();
    let start = match rv_param.as_deref() {
        None | Some("0") => WatchStart::Snapshot,
        Some(_) if send_initial => WatchStart::Snapshot,
        Some(s) => WatchStart::After(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let table = tables::wants_table(&ctx.accept)
        .then(|| IncludeObject::parse(ctx.query.get("includeObject").map(String::as_str)));
    let enc = Encoder { res, table };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    // An expired version is reported in-stream (HTTP 200 + ERROR event): an HTTP 410 makes
    // kube-rs retry the same version forever.
    let sub = st.store.subscribe(res, start);
    let slot = resources::storage_of(res);
    let crd = crate::crd::registry::version(res).map(|v| v.crd);
    tokio::spawn(async move {
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Ok(Encoder::error(&e))).await;
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_rv = sub.rv;
        for o in sub.initial.iter().filter(|o| filter.matches(o)) {
            if tx.send(Ok(enc.event("ADDED", o))).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(Ok(enc.bookmark(sub.rv, true))).await.is_err() {
            return;
        }
        for e in &sub.replay {
            if let Some(ty) = filter.event_type(e)
                && tx.send(Ok(enc.event(ty, &e.obj))).await.is_err()
            {
                return;
            }
            last_rv = last_rv.max(e.obj.rv);
        }
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(Ok(enc.bookmark(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                ev = sub.rx.recv() => match ev {
                    Ok(e) => {
                        if e.obj.rv <= sub.rv {
                            continue;
                        }
                        if crd.as_deref().is_some_and(|c| {
                            e.obj.res == resources::idx::crds()
                                && e.ty == EventType::Deleted
                                && &*e.obj.name == c
                        }) {
                            // The definition is gone: its watches end, as its storage does.
                            return;
                        }
                        if e.obj.res != slot {
                            continue;
                        }
                        last_rv = e.obj.rv;
                        if let Some(ty) = filter.event_type(&e)
                            && tx.send(Ok(enc.event(ty, &e.obj))).await.is_err() {
                                return;
                            }
                    }
                    Err(RecvError::Lagged(_)) => {
                        let err = ApiError::expired(format!(
                            "the watcher fell too far behind; the resourceVersion {last_rv} is too old"
                        ));
                        let _ = tx.send(Ok(Encoder::error(&err))).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let ct = if table.is_some() {
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    } else {
        "application/json"
    };
    Response::builder()
        .status(200)
        .header("content-type", ct)
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(format!("building watch response: {e}")))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Watch events are values only for tests and tools that decode them.
pub fn parse_event(line: &str) -> Option<(String, Value)> {
    let v: Value = serde_json::from_str(line).ok()?;
    Some((
        v.get("type")?.as_str()?.to_string(),
        v.get("object")?.clone(),
    ))
}

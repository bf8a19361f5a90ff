//! The kubelet's event recorder, correlating as client-go's `tools/record` does
//! (`events_cache.go`, `EventCorrelator`) before anything reaches the API:
//!
//! - a source may burst 25 events about one object, then one more every 5 minutes (the spam
//!   filter's token bucket per source and object); events over that are dropped;
//! - events that differ only in their message are *similar*: from the 10th distinct message
//!   within 10 minutes on, they are recorded as one event whose message is
//!   `(combined from similar events): <latest message>`;
//! - an event seen before (same source, object, type, reason and message) is not created
//!   again: the first one is patched with `count + 1`, the new `lastTimestamp` and message,
//!   keeping its name and `firstTimestamp`.
//!
//! The kubelet records core/v1 Events (`count`, `firstTimestamp`, `lastTimestamp`), as the
//! real kubelet's legacy recorder does; `series` belongs to the events.k8s.io recorder, which
//! the kubelet does not use, so it stays unset.

use std::collections::{BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// The recorder's cache size (`maxLruCacheEntries`).
const CACHE_ENTRIES: usize = 4096;
/// Distinct messages of similar events before they are combined (`defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;
/// The window of similar events (`defaultAggregateIntervalInSeconds`).
const AGGREGATE_INTERVAL: SignedDuration = SignedDuration::from_secs(600);
/// The spam filter's burst and refill (`defaultSpamBurst`, `defaultSpamQPS` = 1/300).
const SPAM_BURST: f64 = 25.0;
const SPAM_QPS: f64 = 1.0 / 300.0;
const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// What an event is about, as `involvedObject` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub field_path: Option<String>,
}

/// One event as a component reports it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub object: ObjectRef,
    pub warning: bool,
    pub reason: String,
    pub message: String,
    /// `source.component` and `source.host` (also `reportingComponent`/`reportingInstance`).
    pub component: String,
    pub host: String,
}

impl NewEvent {
    fn type_(&self) -> &'static str {
        if self.warning { "Warning" } else { "Normal" }
    }

    /// Source and object (`getSpamKey`).
    fn spam_key(&self) -> String {
        let o = &self.object;
        [
            &self.component,
            &self.host,
            &o.kind,
            &o.namespace,
            &o.name,
            &o.uid,
            &o.api_version,
        ]
        .map(String::as_str)
        .join("\u{0}")
    }

    /// Source, object, type and reason (`EventAggregatorByReasonFunc`).
    fn aggregate_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.spam_key(),
            self.type_(),
            self.reason
        )
    }

    /// Everything but the time (`getEventKey`).
    fn event_key(&self) -> String {
        format!(
            "{}\u{0}{}\u{0}{}",
            self.aggregate_key(),
            self.object.field_path.as_deref().unwrap_or_default(),
            self.message
        )
    }
}

/// What to send to the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Create this Event.
    Create(Value),
    /// Patch the Event `name` (strategic merge) with `patch`; if it is gone, create `event`.
    Patch {
        name: String,
        patch: Value,
        event: Value,
    },
}

/// A bounded map that forgets the least recently used entry (the recorder's LRU caches).
struct Lru<V> {
    map: HashMap<String, (V, u64)>,
    tick: u64,
}

impl<V> Default for Lru<V> {
    fn default() -> Self {
        Lru {
            map: HashMap::new(),
            tick: 0,
        }
    }
}

impl<V> Lru<V> {
    fn get_mut(&mut self, k: &str) -> Option<&mut V> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(k).map(|(v, used)| {
            *used = t;
            v
        })
    }

    fn put(&mut self, k: String, v: V) {
        self.tick += 1;
        if self.map.len() >= CACHE_ENTRIES
            && !self.map.contains_key(&k)
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(k, (v, self.tick));
    }
}

struct Bucket {
    tokens: f64,
    at: Timestamp,
}

struct Similar {
    messages: BTreeSet<String>,
    last: Timestamp,
}

struct Seen {
    count: u64,
    first: Timestamp,
    name: String,
}

/// client-go's `EventCorrelator`, minus the API calls.
#[derive(Default)]
pub struct Correlator {
    spam: Lru<Bucket>,
    similar: Lru<Similar>,
    seen: Lru<Seen>,
}

use crate::status::api_time as time;

impl Correlator {
    /// Decides what `ev`, happening at `now`, becomes: None when the spam filter drops it.
    pub fn correlate(&mut self, ev: &NewEvent, now: Timestamp) -> Option<Record> {
        // 1. Spam filter.
        let key = ev.spam_key();
        let mut bucket = self
            .spam
            .get_mut(&key)
            .map(|b| Bucket {
                tokens: b.tokens,
                at: b.at,
            })
            .unwrap_or(Bucket {
                tokens: SPAM_BURST,
                at: now,
            });
        let elapsed = now.duration_since(bucket.at).as_secs_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * SPAM_QPS).min(SPAM_BURST);
        bucket.at = now;
        let accepted = bucket.tokens >= 1.0;
        if accepted {
            bucket.tokens -= 1.0;
        }
        self.spam.put(key, bucket);
        if !accepted {
            return None;
        }
        // 2. Aggregation of similar events.
        let agg_key = ev.aggregate_key();
        let mut similar = match self.similar.map.remove(&agg_key) {
            Some((s, _)) if now.duration_since(s.last) <= AGGREGATE_INTERVAL => s,
            _ => Similar {
                messages: BTreeSet::new(),
                last: now,
            },
        };
        similar.messages.insert(ev.message.clone());
        similar.last = now;
        let combine = similar.messages.len() >= AGGREGATE_MAX_EVENTS;
        if combine {
            // Keep the set at its maximum, as the recorder does.
            if let Some(any) = similar.messages.iter().next().cloned() {
                similar.messages.remove(&any);
            }
        }
        self.similar.put(agg_key.clone(), similar);
        let (message, seen_key, field_path) = if combine {
            (format!("{COMBINED_PREFIX}{}", ev.message), agg_key, None)
        } else {
            (
                ev.message.clone(),
                ev.event_key(),
                ev.object.field_path.clone(),
            )
        };
        // 3. Counting of identical events.
        let (count, first, name) = match self.seen.get_mut(&seen_key) {
            Some(s) if s.count > 0 => (s.count + 1, s.first, s.name.clone()),
            _ => (
                1,
                now,
                format!("{}.{:x}", ev.object.name, now.as_nanosecond()),
            ),
        };
        self.seen.put(
            seen_key,
            Seen {
                count,
                first,
                name: name.clone(),
            },
        );
        let mut object = json!({
            "kind": ev.object.kind, "apiVersion": ev.object.api_version,
            "namespace": ev.object.namespace, "name": ev.object.name, "uid": ev.object.uid,
        });
        if let Some(f) = field_path {
            object["fieldPath"] = json!(f);
        }
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ev.object.namespace},
            "involvedObject": object,
            "reason": ev.reason,
            "message": message,
            "type": ev.type_(),
            "source": {"component": ev.component, "host": ev.host},
            "reportingComponent": ev.component,
            "reportingInstance": ev.host,
            "firstTimestamp": time(first),
            "lastTimestamp": time(now),
            "count": count,
        });
        Some(if count == 1 {
            Record::Create(event)
        } else {
            Record::Patch {
                name,
                patch: json!({"count": count, "lastTimestamp": time(now), "message": message}),
                event,
            }
        })
    }
}

/// Sends a [`Record`] to the API: a patch that finds its event gone creates it anew, as the
/// recorder's `recordEvent` does.
pub async fn send(client: &kube::Client, namespace: &str, record: Record) -> anyhow::Result<()> {
    use anyhow::Context;
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{Patch, PatchParams, PostParams};
    let api: kube::Api<Event> = kube::Api::namespaced(client.clone(), namespace);
    let event = match record {
        Record::Create(event) => event,
        Record::Patch { name, patch, event } => {
            match api
                .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => event,
                Err(e) => return Err(e).with_context(|| format!("patching event {name}")),
            }
        }
    };
    let typed: Event = serde_json::from_value(event).context("building the event")?;
    api.create(&PostParams::default(), &typed)
        .await
        .context("creating the event")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str, message: &str) -> NewEvent {
        NewEvent {
            object: ObjectRef {
                kind: "Pod".into(),
                api_version: "v1".into(),
                namespace: "default".into(),
                name: "web".into(),
                uid: "u1".into(),
                field_path: Some("spec.containers{c}".into()),
            },
            warning: true,
            reason: reason.into(),
            message: message.into(),
            component: "kubelet".into(),
            host: "kind-worker".into(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn identical_events_count_on_the_first_one() {
        let mut c = Correlator::default();
        let Some(Record::Create(first)) = c.correlate(&ev("BackOff", "Back-off"), at(0)) else {
            panic!("first occurrence is created");
        };
        let name = first["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("web."), "{name}");
        assert_eq!(first["count"], json!(1));
        let Some(Record::Patch {
            name: n2,
            patch,
            event,
        }) = c.correlate(&ev("BackOff", "Back-off"), at(30))
        else {
            panic!("a repeat is a patch");
        };
        assert_eq!(n2, name);
        assert_eq!(
            patch,
            json!({"count": 2, "lastTimestamp": "2023-11-14T22:13:50Z", "message": "Back-off"})
        );
        assert_eq!(event["firstTimestamp"], json!("2023-11-14T22:13:20Z"));
        // Another reason is another event.
        assert!(matches!(
            c.correlate(&ev("Unhealthy", "Back-off"), at(31)),
            Some(Record::Create(_))
        ));
    }

    #[test]
    fn ten_similar_messages_are_combined() {
        let mut c = Correlator::default();
        for i in 0..9 {
            let r = c.correlate(&ev("Unhealthy", &format!("probe failed #{i}")), at(i));
            assert!(matches!(r, Some(Record::Create(_))), "{i}: {r:?}");
        }
        let Some(Record::Create(combined)) =
            c.correlate(&ev("Unhealthy", "probe failed #9"), at(9))
        else {
            panic!("the 10th distinct message makes a combined event");
        };
        assert_eq!(
            combined["message"],
            json!("(combined from similar events): probe failed #9")
        );
        assert!(combined["involvedObject"].get("fieldPath").is_none());
        let Some(Record::Patch { patch, .. }) =
            c.correlate(&ev("Unhealthy", "probe failed #10"), at(10))
        else {
            panic!("later similar events count on the combined one");
        };
        assert_eq!(patch["count"], json!(2));
        assert_eq!(
            patch["message"],
            json!("(combined from similar events): probe failed #10")
        );
        // After ten quiet minutes the window starts again.
        let r = c.correlate(&ev("Unhealthy", "probe failed #11"), at(10 + 601));
        assert!(matches!(r, Some(Record::Create(e)) if e["message"] == json!("probe failed #11")));
    }

    #[test]
    fn a_source_may_burst_25_events_about_an_object_then_one_per_5_minutes() {
        let mut c = Correlator::default();
        for i in 0..25 {
            assert!(c.correlate(&ev("R", "same"), at(0)).is_some(), "{i}");
        }
        assert!(c.correlate(&ev("R", "same"), at(1)).is_none());
        assert!(c.correlate(&ev("R", "same"), at(300)).is_some());
        assert!(c.correlate(&ev("R", "same"), at(301)).is_none());
    }
}

//! The object store: every object as compact JSON in memory (the source of truth for reads),
//! written through to an embedded redb database under the data directory so that a restart
//! finds every object and the resourceVersion sequence where it was.
//!
//! Objects are kept as serialized bytes, not parsed values: a list response is then a
//! concatenation of stored bytes and 60 000 objects fit in a few tens of megabytes. The labels
//! and the selectable fields are extracted once at write time so selectors need no parsing.
//!
//! Every write takes the single store lock, gets the next global resourceVersion, is published
//! to watchers while still under the lock (so a watch started under the same lock sees no gap)
//! and is acknowledged to the caller only once the database transaction holding it committed.

use super::errors::{ApiError, ApiResult};
use super::resources::{self, ResIdx};
use super::selectors::Selector;
use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, oneshot};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_RV: &str = "resourceVersion";

/// Page cache of the database file.
const STORE_CACHE_BYTES: usize = 8 << 20;
/// How many past events are kept for resourceVersion replay; older versions get `410 Expired`.
pub const DEFAULT_HISTORY: usize = 10_000;
/// How many events a watcher may fall behind before it is ended with `410 Expired`.
const BROADCAST_CAPACITY: usize = 16_384;

/// One stored object.
#[derive(Debug)]
pub struct Obj {
    pub res: ResIdx,
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub rv: u64,
    /// The object as compact JSON, `metadata.resourceVersion` included.
    pub json: Bytes,
    labels: Vec<(Box<str>, Box<str>)>,
    fields: Vec<(&'static str, Box<str>)>,
}

impl Obj {
    /// An object of storage slot `res`; its selectable fields are those of `fields_of` (the
    /// version it is written at).
    fn build(res: ResIdx, fields_of: ResIdx, value: &Value, rv: u64) -> ApiResult<Obj> {
        let json = serde_json::to_vec(value)
            .map_err(|e| ApiError::internal(format!("serializing object: {e}")))?;
        let meta = value.get("metadata");
        let s = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into()
        };
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str().into(), v.as_str().unwrap_or_default().into()))
                    .collect()
            })
            .unwrap_or_default();
        let r = resources::get(fields_of);
        let fields = r
            .selectable_fields
            .iter()
            .map(|f| (*f, field_value(value, f).into_boxed_str()))
            .collect();
        Ok(Obj {
            res,
            namespace: s("namespace"),
            name: s("name"),
            rv,
            json: Bytes::from(json),
            labels,
            fields,
        })
    }

    /// The object parsed (stored bytes are always valid JSON).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The value of a selectable field (`spec.nodeName`, …) as extracted at write time.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| &**v)
    }

    /// Whether the stored JSON contains these bytes (a cheap pre-filter before parsing).
    pub fn json_contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.json.windows(needle.len()).any(|w| w == needle)
    }

    pub fn labels_match(&self, sel: &Selector) -> bool {
        sel.matches_pairs(&self.labels)
    }

    pub fn fields_match(&self, sel: &Selector) -> bool {
        sel.matches(|k| match k {
            "metadata.name" => Some(&*self.name),
            "metadata.namespace" => Some(&*self.namespace),
            _ => self.fields.iter().find(|(f, _)| *f == k).map(|(_, v)| &**v),
        })
    }
}

/// The value of a dotted field path as a selector compares it (absent = empty string).
fn field_value(v: &Value, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        match cur.get(part) {
            Some(x) => cur = x,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change as watchers see it; `obj.rv` is the event's resourceVersion (for a deletion the
/// object carries the deletion's version, as the real server does).
#[derive(Debug)]
pub struct Event {
    pub ty: EventType,
    pub obj: Arc<Obj>,
    /// The object before a modification (watchers with selectors turn a change that moves an
    /// object into or out of their selection into ADDED or DELETED).
    pub prev: Option<Arc<Obj>>,
}

/// What a mutation closure decides.
pub enum Change {
    /// Store this value (create or replace).
    Put(Value),
    /// Remove the object; the value is its final state as returned to the deleting client.
    Delete(Value),
    /// Leave things as they are.
    Keep,
}

/// The result of a mutation.
pub enum Outcome {
    Written(Arc<Event>),
    /// Nothing changed (no write, no event); the current object if any.
    Unchanged(Option<Arc<Obj>>),
}

impl Outcome {
    pub fn object(&self) -> Option<&Arc<Obj>> {
        match self {
            Outcome::Written(e) => Some(&e.obj),
            Outcome::Unchanged(o) => o.as_ref(),
        }
    }
}

type Key = (Box<str>, Box<str>);

struct Inner {
    rv: u64,
    objects: Vec<BTreeMap<Key, Arc<Obj>>>,
    history: VecDeque<Arc<Event>>,
    /// Versions at or below this are no longer replayable.
    compacted: u64,
    /// The writer thread's queue; None once closed (or for an in-memory store).
    persist: Option<std::sync::mpsc::Sender<PersistOp>>,
}

impl Inner {
    /// The objects of a storage slot (custom resources' slots are made on first use).
    fn map(&self, slot: ResIdx) -> Option<&BTreeMap<Key, Arc<Obj>>> {
        self.objects.get(slot)
    }

    fn map_mut(&mut self, slot: ResIdx) -> &mut BTreeMap<Key, Arc<Obj>> {
        if self.objects.len() <= slot {
            self.objects.resize_with(slot + 1, BTreeMap::new);
        }
        &mut self.objects[slot]
    }
}

struct PersistOp {
    key: String,
    value: Option<Bytes>,
    rv: u64,
    ack: oneshot::Sender<Result<(), String>>,
}

pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
    persistent: bool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    history_cap: usize,
}

/// How a watch starts.
pub enum WatchStart {
    /// Replay the events after this resourceVersion.
    After(u64),
    /// Send the current state as ADDED events first.
    Snapshot,
}

pub struct Subscription {
    /// Current objects (for [`WatchStart::Snapshot`]), as ADDED events.
    pub initial: Vec<Arc<Obj>>,
    /// Replayed events (for [`WatchStart::After`]).
    pub replay: Vec<Arc<Event>>,
    /// The store's resourceVersion when the subscription was made.
    pub rv: u64,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

fn storage_key(res: ResIdx, ns: &str, name: &str) -> String {
    format!("{}|{}|{}", resources::get(res).id(), ns, name)
}

impl Store {
    /// A store with no persistence (unit tests).
    pub fn in_memory() -> Arc<Store> {
        Arc::new(Store::new(None, 0, Vec::new(), DEFAULT_HISTORY))
    }

    /// Opens (or creates) the database `<dir>/store.redb` and loads every object.
    pub fn open(dir: &Path, history_cap: usize) -> anyhow::Result<Arc<Store>> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join("store.redb");
        // Every object is also in memory, so the database's own cache only has to cover the
        // pages a commit touches; redb's default (1 GiB) would mostly duplicate the objects.
        let db = redb::Builder::new()
            .set_cache_size(STORE_CACHE_BYTES)
            .create(&path)
            .with_context(|| format!("opening store {}", path.display()))?;
        {
            let tx = db.begin_write().context("initialising store")?;
            tx.open_table(OBJECTS).context("creating objects table")?;
            tx.open_table(META).context("creating meta table")?;
            tx.commit().context("initialising store")?;
        }
        let (rv, objs) = {
            let tx = db.begin_read().context("reading store")?;
            let meta = tx.open_table(META).context("opening meta table")?;
            let rv = meta.get(META_RV)?.map(|g| g.value()).unwrap_or(0);
            let table = tx.open_table(OBJECTS).context("opening objects table")?;
            let mut entries = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                entries.push((k.value().to_string(), v.value().to_vec()));
            }
            // CustomResourceDefinitions first: their custom objects' resources exist only
            // once the definitions are registered.
            let crd_id = resources::get(resources::idx::crds()).id();
            entries.sort_by_key(|(k, _)| k.split('|').next() != Some(crd_id.as_str()));
            let mut objs = Vec::new();
            for (key, bytes) in entries {
                let id = key.split('|').next().unwrap_or_default();
                let value: Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("store entry {key:?} is not valid JSON"))?;
                let Some(res) = resources::by_id(id) else {
                    // A custom object whose definition is gone (removed while the cleanup
                    // was under way): nothing serves it any more.
                    tracing::warn!("store entry {key:?} has an unknown resource; skipped");
                    continue;
                };
                if res == resources::idx::crds() {
                    crate::crd::on_stored(&value, false);
                }
                let orv = value
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                objs.push(
                    Obj::build(res, crate::crd::storage_version(res), &value, orv)
                        .map_err(|e| anyhow::anyhow!("store entry {key:?}: {}", e.message))?,
                );
            }
            (rv, objs)
        };
        let (tx, rx) = std::sync::mpsc::channel::<PersistOp>();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(db, rx))
            .context("starting store writer thread")?;
        let store = Store::new(Some(tx), rv, objs, history_cap);
        *store.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(Arc::new(store))
    }

    fn new(
        persist: Option<std::sync::mpsc::Sender<PersistOp>>,
        rv: u64,
        objs: Vec<Obj>,
        history_cap: usize,
    ) -> Store {
        let mut objects: Vec<BTreeMap<Key, Arc<Obj>>> = (0..resources::RESOURCES.len())
            .map(|_| BTreeMap::new())
            .collect();
        let mut max_rv = rv;
        for o in objs {
            max_rv = max_rv.max(o.rv);
            if objects.len() <= o.res {
                objects.resize_with(o.res + 1, BTreeMap::new);
            }
            objects[o.res].insert((o.namespace.clone(), o.name.clone()), Arc::new(o));
        }
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        Store {
            inner: Mutex::new(Inner {
                rv: max_rv,
                objects,
                history: VecDeque::new(),
                compacted: max_rv,
                persist: persist.clone(),
            }),
            events,
            persistent: persist.is_some(),
            writer: Mutex::new(None),
            history_cap: history_cap.max(1),
        }
    }

    /// Stops accepting writes, lets the writer finish what is queued and closes the database
    /// (so the same directory can be opened again in this process).
    pub fn close(&self) {
        drop(self.lock().persist.take());
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (every update is a
        // single insert/remove), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// The stored object (as stored: a custom object carries its storage version).
    pub fn get(&self, res: ResIdx, ns: &str, name: &str) -> Option<Arc<Obj>> {
        self.lock()
            .map(resources::storage_of(res))?
            .get(&(ns.into(), name.into()))
            .cloned()
    }

    /// Lists objects of a resource in (namespace, name) order, starting after `after`, keeping
    /// those `keep` accepts, at most `limit` (0 = no limit). Returns the objects, the store's
    /// resourceVersion and whether more remain.
    pub fn list(
        &self,
        res: ResIdx,
        ns: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
        keep: impl Fn(&Obj) -> bool,
    ) -> (Vec<Arc<Obj>>, u64, bool) {
        let inner = self.lock();
        let empty = BTreeMap::new();
        let map = inner.map(resources::storage_of(res)).unwrap_or(&empty);
        let lower: Bound<Key> = match (after, ns) {
            (Some((a_ns, a_name)), _) => Bound::Excluded((a_ns.into(), a_name.into())),
            (None, Some(ns)) => Bound::Included((ns.into(), "".into())),
            (None, None) => Bound::Unbounded,
        };
        let mut out = Vec::new();
        let mut more = false;
        for ((ons, _), o) in map.range((lower, Bound::Unbounded)) {
            if let Some(ns) = ns
                && &**ons != ns
            {
                if &**ons > ns {
                    break;
                }
                continue;
            }
            if !keep(o) {
                continue;
            }
            if limit > 0 && out.len() == limit {
                more = true;
                break;
            }
            out.push(o.clone());
        }
        (out, inner.rv, more)
    }

    /// Subscribes to changes, with the replay or snapshot taken under the same lock as the
    /// subscription so that no event is missed or doubled.
    pub fn subscribe(&self, res: ResIdx, start: WatchStart) -> ApiResult<Subscription> {
        let inner = self.lock();
        let rx = self.events.subscribe();
        let slot = resources::storage_of(res);
        match start {
            WatchStart::Snapshot => Ok(Subscription {
                initial: inner
                    .map(slot)
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default(),
                replay: Vec::new(),
                rv: inner.rv,
                rx,
            }),
            WatchStart::After(since) => {
                if since < inner.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {since} ({})",
                        inner.compacted + 1
                    )));
                }
                let replay = inner
                    .history
                    .iter()
                    .filter(|e| e.obj.rv > since && e.obj.res == slot)
                    .cloned()
                    .collect();
                Ok(Subscription {
                    initial: Vec::new(),
                    replay,
                    rv: inner.rv,
                    rx,
                })
            }
        }
    }

    /// Subscribes to every change of every resource from now on (controllers).
    pub fn subscribe_all(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Reads, decides and writes one object atomically. `decide` sees the current object
    /// (parsed, at `res`'s version) and returns what to do; the store sets
    /// `metadata.resourceVersion` (and a custom object's storage version). `decide` runs under
    /// the store lock and must not call back into the store.
    pub async fn mutate(
        &self,
        res: ResIdx,
        ns: &str,
        name: &str,
        decide: impl FnOnce(Option<Value>) -> ApiResult<Change>,
    ) -> ApiResult<Outcome> {
        let (outcome, ack) = {
            let mut inner = self.lock();
            let key: Key = (ns.into(), name.into());
            let slot = resources::storage_of(res);
            let current = inner.map(slot).and_then(|m| m.get(&key)).cloned();
            let change = decide(current.as_ref().map(|o| {
                let mut v = o.value();
                crate::crd::set_version(res, &mut v);
                v
            }))?;
            let stored_at = crate::crd::storage_version(res);
            let change = match change {
                Change::Put(mut v) => {
                    crate::crd::set_version(stored_at, &mut v);
                    Change::Put(v)
                }
                other => other,
            };
            let (ty, mut value) = match change {
                Change::Keep => return Ok(Outcome::Unchanged(current)),
                Change::Put(v) => {
                    if let Some(cur) = &current {
                        // An update that changes nothing is not a write (no new version).
                        let mut probe = v.clone();
                        set_rv(&mut probe, cur.rv);
                        if probe == cur.value() {
                            return Ok(Outcome::Unchanged(current));
                        }
                    }
                    let ty = if current.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    (ty, v)
                }
                Change::Delete(v) => {
                    if current.is_none() {
                        return Ok(Outcome::Unchanged(None));
                    }
                    (EventType::Deleted, v)
                }
            };
            if self.persistent && inner.persist.is_none() {
                return Err(ApiError::service_unavailable("the store is closed"));
            }
            let rv = inner.rv + 1;
            set_rv(&mut value, rv);
            let obj = Arc::new(Obj::build(slot, stored_at, &value, rv)?);
            if obj.name.is_empty() || &*obj.name != name || &*obj.namespace != ns {
                return Err(ApiError::internal(format!(
                    "stored object {:?}/{:?} does not match its key {ns:?}/{name:?}",
                    obj.namespace, obj.name
                )));
            }
            inner.rv = rv;
            match ty {
                EventType::Deleted => {
                    inner.map_mut(slot).remove(&key);
                }
                _ => {
                    inner.map_mut(slot).insert(key, obj.clone());
                }
            }
            if slot == resources::idx::crds() {
                crate::crd::on_stored(&value, ty == EventType::Deleted);
            }
            let event = Arc::new(Event {
                ty,
                obj: obj.clone(),
                prev: if ty == EventType::Modified {
                    current
                } else {
                    None
                },
            });
            inner.history.push_back(event.clone());
            while inner.history.len() > self.history_cap {
                if let Some(old) = inner.history.pop_front() {
                    inner.compacted = old.obj.rv;
                }
            }
            // No receivers is fine: the event is still in the history.
            let _ = self.events.send(event.clone());
            let ack = inner.persist.as_ref().map(|p| {
                let (tx, rx) = oneshot::channel();
                let op = PersistOp {
                    key: storage_key(res, ns, name),
                    value: (ty != EventType::Deleted).then(|| obj.json.clone()),
                    rv,
                    ack: tx,
                };
                (p.send(op).is_ok(), rx)
            });
            (Outcome::Written(event), ack)
        };
        if let Some((sent, rx)) = ack {
            if !sent {
                return Err(ApiError::internal("the store writer has stopped"));
            }
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(ApiError::internal(format!("writing to the store: {e}"))),
                Err(_) => return Err(ApiError::internal("the store writer has stopped")),
            }
        }
        Ok(outcome)
    }
}

fn set_rv(v: &mut Value, rv: u64) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Commits queued writes in batches: one transaction for everything waiting, so concurrent
/// writers share one disk sync.
fn writer_loop(db: redb::Database, rx: std::sync::mpsc::Receiver<PersistOp>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = commit_batch(&db, &batch).map_err(|e| format!("{e:#}"));
        for op in batch {
            let _ = op.ack.send(result.clone());
        }
    }
}

fn commit_batch(db: &redb::Database, batch: &[PersistOp]) -> anyhow::Result<()> {
    let tx = db.begin_write()?;
    {
        let mut objects = tx.open_table(OBJECTS)?;
        let mut meta = tx.open_table(META)?;
        let mut max_rv = 0;
        for op in batch {
            match &op.value {
                Some(v) => {
                    objects.insert(op.key.as_str(), &v[..])?;
                }
                None => {
                    objects.remove(op.key.as_str())?;
                }
            }
            max_rv = max_rv.max(op.rv);
        }
        meta.insert(META_RV, max_rv)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::idx;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":"default","labels":{"a":name}},"data":{"k":"v"}})
    }

    #[tokio::test]
    async fn versions_increase_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let res = idx::configmaps();
        {
            let s = Store::open(dir.path(), 100).unwrap();
            for n in ["a", "b", "c"] {
                s.mutate(res, "default", n, |_| Ok(Change::Put(cm(n))))
                    .await
                    .unwrap();
            }
            s.mutate(res, "default", "b", |cur| Ok(Change::Delete(cur.unwrap())))
                .await
                .unwrap();
            assert_eq!(s.current_rv(), 4);
            s.close();
        }
        let s = Store::open(dir.path(), 100).unwrap();
        assert_eq!(s.current_rv(), 4);
        let (objs, rv, more) = s.list(res, Some("default"), None, 0, |_| true);
        assert_eq!(rv, 4);
        assert!(!more);
        let names: Vec<_> = objs.iter().map(|o| o.name.to_string()).collect();
        assert_eq!(names, ["a", "c"]);
        // Replay from before the restart is no longer possible.
        assert_eq!(
            s.subscribe(res, WatchStart::After(1)).err().unwrap().reason,
            "Expired"
        );
    }

    #[tokio::test]
    async fn unchanged_update_is_not_a_write() {
        let s = Store::in_memory();
        let res = idx::configmaps();
        s.mutate(res, "default", "a", |_| Ok(Change::Put(cm("a"))))
            .await
            .unwrap();
        let out = s
            .mutate(res, "default", "a", |cur| Ok(Change::Put(cur.unwrap())))
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Unchanged(Some(_))));
        assert_eq!(s.current_rv(), 1);
    }

    #[tokio::test]
    async fn limit_and_continue_and_replay() {
        let s = Store::in_memory();
        let res = idx::configmaps();
        for i in 0..5 {
            let n = format!("o{i}");
            s.mutate(res, "default", &n, |_| Ok(Change::Put(cm(&n))))
                .await
                .unwrap();
        }
        let (page, _, more) = s.list(res, None, None, 2, |_| true);
        assert_eq!(page.len(), 2);
        assert!(more);
        let last = page.last().unwrap();
        let (page2, _, _) = s.list(res, None, Some((&last.namespace, &last.name)), 0, |_| true);
        assert_eq!(page2.len(), 3);
        let sub = s.subscribe(res, WatchStart::After(3)).unwrap();
        let rvs: Vec<u64> = sub.replay.iter().map(|e| e.obj.rv).collect();
        assert_eq!(rvs, [4, 5]);
    }
}

//! The EndpointSlice controller (and the legacy Endpoints it mirrors): for each Service with a
//! selector, one IPv4 slice listing the pods that match, `ready` only when the pod's Ready
//! condition is true, `hostname` when the pod's `spec.hostname` + `spec.subdomain` name the
//! service, ports resolved from named target ports.

use super::{Key, Reconciler};
use futures::future::BoxFuture;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::selectors::Selector;
use minikind_apiserver::store::{Event, EventType, Obj};
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const MANAGER: &str = "endpointslice-controller";

/// Keeps two indexes so that a pod event does not parse every service and a service does not
/// scan every slice: the selectors of services, and the managed slices of each service.
#[derive(Default)]
pub struct EndpointSlices {
    selectors: HashMap<Key, Selector>,
    slices: HashMap<Key, BTreeSet<String>>,
}

pub fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The container port a service port's `targetPort` names in this pod.
fn resolve_port(target: Option<&Value>, port: i64, pod: &Value) -> Option<i64> {
    match target {
        None => Some(port),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<i64>() {
                return Some(n);
            }
            pod.pointer("/spec/containers")
                .and_then(Value::as_array)?
                .iter()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| p.get("name").and_then(Value::as_str) == Some(s))
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        }
        _ => Some(port),
    }
}

fn service_selector(v: &Value) -> Option<Selector> {
    v.pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(Selector::from_map)
}

/// The service a slice belongs to, if this controller manages it.
fn managed_slice_owner(o: &Obj) -> Option<Key> {
    let v = o.value();
    let labels = v.pointer("/metadata/labels")?;
    if labels
        .get("endpointslice.kubernetes.io/managed-by")
        .and_then(Value::as_str)
        != Some(MANAGED_BY)
    {
        return None;
    }
    let svc = labels.get("kubernetes.io/service-name")?.as_str()?;
    Some((o.namespace.to_string(), svc.to_string()))
}

impl EndpointSlices {
    fn track_slice(&mut self, ty: EventType, o: &Obj) -> Option<Key> {
        let owner = managed_slice_owner(o)?;
        let set = self.slices.entry(owner.clone()).or_default();
        if ty == EventType::Deleted {
            set.remove(&*o.name);
        } else {
            set.insert(o.name.to_string());
        }
        Some(owner)
    }
}

impl Reconciler for EndpointSlices {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::services() {
            let key = (o.namespace.to_string(), o.name.to_string());
            match (ev.ty, service_selector(&o.value())) {
                (EventType::Deleted, _) | (_, None) => {
                    self.selectors.remove(&key);
                }
                (_, Some(sel)) => {
                    self.selectors.insert(key.clone(), sel);
                }
            }
            vec![key]
        } else if o.res == idx::pods() {
            let v = o.value();
            let labels = v.pointer("/metadata/labels");
            self.selectors
                .iter()
                .filter(|((ns, _), sel)| ns.as_str() == &*o.namespace && sel.matches_labels(labels))
                .map(|(k, _)| k.clone())
                .collect()
        } else if o.res == idx::endpointslices() {
            match self.track_slice(ev.ty, o) {
                // A managed slice deleted by hand is recreated.
                Some(owner) if ev.ty == EventType::Deleted => vec![owner],
                _ => vec![],
            }
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        let (svcs, _, _) = st.store.list(idx::services(), None, None, 0, |_| true);
        self.selectors.clear();
        let mut keys = Vec::with_capacity(svcs.len());
        for s in &svcs {
            let key = (s.namespace.to_string(), s.name.to_string());
            if let Some(sel) = service_selector(&s.value()) {
                self.selectors.insert(key.clone(), sel);
            }
            keys.push(key);
        }
        self.slices.clear();
        let (slices, _, _) = st
            .store
            .list(idx::endpointslices(), None, None, 0, |_| true);
        for o in &slices {
            self.track_slice(EventType::Added, o);
        }
        // Services whose slices outlived them.
        keys.extend(self.slices.keys().cloned());
        keys
    }

    fn concurrency(&self) -> usize {
        16
    }

    fn reconcile_owned(&mut self, st: &Arc<ApiState>, key: Key) -> Option<BoxFuture<'static, ()>> {
        let slices: Vec<String> = self
            .slices
            .get(&key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let selector = self.selectors.get(&key).cloned();
        let st = st.clone();
        Some(Box::pin(async move {
            if let Err(e) = reconcile_service(&st, &key.0, &key.1, selector, slices).await {
                tracing::warn!(service = %format!("{}/{}", key.0, key.1), "endpointslices: {e}");
            }
        }))
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        let slices: Vec<String> = self
            .slices
            .get(&key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let selector = self.selectors.get(&key).cloned();
        if let Err(e) = reconcile_service(st, &key.0, &key.1, selector, slices).await {
            tracing::warn!(service = %format!("{}/{}", key.0, key.1), "endpointslices: {e}");
        }
    }
}

async fn reconcile_service(
    st: &Arc<ApiState>,
    ns: &str,
    name: &str,
    selector: Option<Selector>,
    slices: Vec<String>,
) -> Result<(), minikind_apiserver::errors::ApiError> {
    let svc = st.store.get(idx::services(), ns, name).map(|s| s.value());
    let (Some(svc), Some(sel)) = (svc, selector) else {
        // No service, or one without a selector (its endpoints are managed by hand).
        for s in slices {
            let _ = objects::delete_one(st, idx::endpointslices(), ns, &s, None, None, None).await;
        }
        if st.store.get(idx::endpoints(), ns, name).is_some_and(|e| {
            str_at(
                &e.value(),
                "/metadata/labels/endpoints.kubernetes.io~1managed-by",
            ) == Some("endpoint-controller")
        }) {
            let _ = objects::delete_one(st, idx::endpoints(), ns, name, None, None, None).await;
        }
        return Ok(());
    };
    let (pods, _, _) = st
        .store
        .list(idx::pods(), Some(ns), None, 0, |p| p.labels_match(&sel));
    let svc_ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut endpoints = Vec::new();
    let mut ports: Vec<Value> = Vec::new();
    let mut ready_addrs = Vec::new();
    let mut not_ready_addrs = Vec::new();
    for p in &pods {
        let pv = p.value();
        let Some(ip) = str_at(&pv, "/status/podIP").filter(|i| !i.is_empty()) else {
            continue;
        };
        let phase = str_at(&pv, "/status/phase").unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        let terminating = pv
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|x| !x.is_null());
        let ready = pod_ready(&pv) && !terminating;
        let mut ep = json!({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": pod_ready(&pv), "terminating": terminating},
            "targetRef": {"kind": "Pod", "namespace": ns, "name": &*p.name, "uid": str_at(&pv, "/metadata/uid")},
        });
        let mut addr = json!({"ip": ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": &*p.name, "uid": str_at(&pv, "/metadata/uid")}});
        if let Some(node) = str_at(&pv, "/spec/nodeName").filter(|n| !n.is_empty()) {
            ep["nodeName"] = json!(node);
            addr["nodeName"] = json!(node);
        }
        let hostname = str_at(&pv, "/spec/hostname").filter(|h| !h.is_empty());
        if let (Some(h), Some(sub)) = (hostname, str_at(&pv, "/spec/subdomain"))
            && sub == name
        {
            ep["hostname"] = json!(h);
            addr["hostname"] = json!(h);
        }
        if ports.is_empty() {
            for sp in &svc_ports {
                let port = sp.get("port").and_then(Value::as_i64).unwrap_or(0);
                if let Some(tp) = resolve_port(sp.get("targetPort"), port, &pv) {
                    let mut e = json!({
                        "name": sp.get("name").and_then(Value::as_str).unwrap_or(""),
                        "port": tp,
                        "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
                    });
                    if let Some(ap) = sp.get("appProtocol") {
                        e["appProtocol"] = ap.clone();
                    }
                    ports.push(e);
                }
            }
        }
        endpoints.push(ep);
        if ready {
            ready_addrs.push(addr);
        } else {
            not_ready_addrs.push(addr);
        }
    }
    if ports.is_empty() && endpoints.is_empty() {
        // No pods: the slice still lists the ports by their numbers where known.
        for sp in &svc_ports {
            if let Some(Value::Number(n)) = sp.get("targetPort") {
                ports.push(json!({
                    "name": sp.get("name").and_then(Value::as_str).unwrap_or(""),
                    "port": n,
                    "protocol": sp.get("protocol").and_then(Value::as_str).unwrap_or("TCP"),
                }));
            }
        }
    }
    let owner = json!([{
        "apiVersion": "v1", "kind": "Service", "name": name,
        "uid": str_at(&svc, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true,
    }]);
    let labels = json!({
        "kubernetes.io/service-name": name,
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
    });
    let mut keep = slices.first().cloned();
    for extra in slices.iter().skip(1) {
        let _ = objects::delete_one(st, idx::endpointslices(), ns, extra, None, None, None).await;
    }
    match keep.take() {
        Some(slice_name) => {
            let (eps, ps) = (endpoints.clone(), ports.clone());
            objects::update_internal(
                st,
                idx::endpointslices(),
                ns,
                &slice_name,
                MANAGER,
                false,
                |s| {
                    s["endpoints"] = Value::Array(eps);
                    s["ports"] = Value::Array(ps);
                    s["addressType"] = json!("IPv4");
                    true
                },
            )
            .await?;
        }
        None => {
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": format!("{name}-"), "namespace": ns, "labels": labels, "ownerReferences": owner},
                "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
            });
            objects::create_internal(st, idx::endpointslices(), slice, MANAGER).await?;
        }
    }
    // The legacy Endpoints object, for `kubectl get endpoints` and older clients.
    let subset_ports: Vec<Value> = ports.clone();
    let subsets = if ready_addrs.is_empty() && not_ready_addrs.is_empty() {
        json!([])
    } else {
        let mut s = json!({"ports": subset_ports});
        if !ready_addrs.is_empty() {
            s["addresses"] = Value::Array(ready_addrs);
        }
        if !not_ready_addrs.is_empty() {
            s["notReadyAddresses"] = Value::Array(not_ready_addrs);
        }
        json!([s])
    };
    if st.store.get(idx::endpoints(), ns, name).is_some() {
        let subsets2 = subsets.clone();
        objects::update_internal(
            st,
            idx::endpoints(),
            ns,
            name,
            "endpoint-controller",
            false,
            |e| {
                e["subsets"] = subsets2;
                true
            },
        )
        .await?;
    } else {
        let ep = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": {"endpoints.kubernetes.io/managed-by": "endpoint-controller"}},
            "subsets": subsets,
        });
        match objects::create_internal(st, idx::endpoints(), ep, "endpoint-controller").await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

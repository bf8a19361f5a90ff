//! `meta.k8s.io/v1` Table responses, so `kubectl get` prints the usual columns (the real
//! server's printers; kubectl prints NAME and AGE only from a plain list).

use crate::meta::{age, str_at};
use crate::resources::{self, ResIdx};
use serde_json::{Value, json};

pub(crate) struct Col {
    name: &'static str,
    ty: &'static str,
    priority: u8,
    desc: &'static str,
}

pub(crate) const fn c(
    name: &'static str,
    ty: &'static str,
    priority: u8,
    desc: &'static str,
) -> Col {
    Col {
        name,
        ty,
        priority,
        desc,
    }
}

fn columns(kind: &str) -> Vec<Col> {
    let name = c(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    );
    let age_col = c(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match kind {
        "Pod" => vec![
            name,
            c(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            c(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            c(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col,
            c(
                "IP",
                "string",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            c(
                "Node",
                "string",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            c(
                "Nominated Node",
                "string",
                1,
                "nominatedNodeName is set when this pod preempts other pods on the node.",
            ),
            c(
                "Readiness Gates",
                "string",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        "Service" => vec![
            name,
            c(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            c(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service.",
            ),
            c(
                "External-IP",
                "string",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            c(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            age_col,
            c(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        "Endpoints" => vec![
            name,
            c("Endpoints", "string", 0, "Endpoints of the service."),
            age_col,
        ],
        "EndpointSlice" => vec![
            name,
            c(
                "AddressType",
                "string",
                0,
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            c(
                "Ports",
                "string",
                0,
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            c(
                "Endpoints",
                "string",
                0,
                "endpoints is a list of unique endpoints in this slice.",
            ),
            age_col,
        ],
        "Node" => vec![
            name,
            c("Status", "string", 0, "The status of the node"),
            c("Roles", "string", 0, "The roles of the node"),
            age_col,
            c(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            c(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            c(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node.",
            ),
            c(
                "OS-Image",
                "string",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            c(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            c(
                "Container-Runtime",
                "string",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "Namespace" => vec![
            name,
            c("Status", "string", 0, "The status of the namespace"),
            age_col,
        ],
        "ConfigMap" => vec![
            name,
            c("Data", "string", 0, "Data contains the configuration data."),
            age_col,
        ],
        "Secret" => vec![
            name,
            c(
                "Type",
                "string",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            c("Data", "string", 0, "Data contains the secret data."),
            age_col,
        ],
        "Lease" => vec![
            name,
            c(
                "Holder",
                "string",
                0,
                "holderIdentity contains the identity of the holder of a current lease.",
            ),
            age_col,
        ],
        "Deployment" => vec![
            name,
            c("Ready", "string", 0, "Number of the pod with ready state"),
            c(
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            c(
                "Available",
                "string",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age_col,
            c(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            c(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
            c(
                "Selector",
                "string",
                1,
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            ),
        ],
        "Event" => vec![
            c(
                "Last Seen",
                "string",
                0,
                "Time when this Event was last seen",
            ),
            c(
                "Type",
                "string",
                0,
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            c(
                "Reason",
                "string",
                0,
                "Reason is why the action was taken. It is human-readable.",
            ),
            c(
                "Object",
                "string",
                0,
                "Object is the object this event is about.",
            ),
            c(
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
            ),
        ],
        k if crate::workload_tables::serves(k) => crate::workload_tables::columns(k, name, age_col),
        // The default table convertor's columns (`rest.NewDefaultTableConvertor`).
        "CustomResourceDefinition" => vec![
            name,
            c(
                "Created At",
                "date",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ],
        _ => vec![name, age_col],
    }
}

pub fn column_definitions(res: ResIdx) -> Value {
    if let Some(custom) = crate::crd::columns::definitions(res) {
        return custom;
    }
    let cols = columns(resources::get(res).kind);
    Value::Array(
        cols.iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.ty,
                    "format": if c.name == "Name" { "name" } else { "" },
                    "description": c.desc,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

pub(crate) fn s(v: &Value, p: &str) -> String {
    str_at(v, p).unwrap_or_default().to_string()
}

pub(crate) fn arr<'a>(v: &'a Value, p: &str) -> &'a [Value] {
    v.pointer(p)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

fn selector_string(m: Option<&Value>) -> String {
    m.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

pub(crate) fn label_selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut parts = Vec::new();
    let ml = selector_string(sel.get("matchLabels"));
    if !ml.is_empty() {
        parts.push(ml);
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let vals: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", vals.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", vals.join(","))),
            Some("Exists") => parts.push(key.to_string()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The cells of one row.
pub fn cells(res: ResIdx, v: &Value) -> Vec<Value> {
    if let Some(custom) = crate::crd::columns::cells(res, v) {
        return custom;
    }
    let name = s(v, "/metadata/name");
    match resources::get(res).kind {
        "CustomResourceDefinition" => vec![json!(name), json!(s(v, "/metadata/creationTimestamp"))],
        "Pod" => pod_cells(v, name),
        "Service" => {
            let ty = s(v, "/spec/type");
            let cip = s(v, "/spec/clusterIP");
            let ext = if ty == "ExternalName" {
                s(v, "/spec/externalName")
            } else {
                let lb: Vec<String> = arr(v, "/status/loadBalancer/ingress")
                    .iter()
                    .filter_map(|i| i.get("ip").and_then(Value::as_str).map(String::from))
                    .collect();
                let ips: Vec<String> = arr(v, "/spec/externalIPs")
                    .iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .chain(lb)
                    .collect();
                if ips.is_empty() {
                    if ty == "LoadBalancer" {
                        "<pending>".into()
                    } else {
                        "<none>".into()
                    }
                } else {
                    ips.join(",")
                }
            };
            let ports: Vec<String> = arr(v, "/spec/ports")
                .iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect();
            let ports = if ports.is_empty() {
                "<none>".into()
            } else {
                ports.join(",")
            };
            vec![
                json!(name),
                json!(ty),
                json!(if cip.is_empty() { "<none>".into() } else { cip }),
                json!(ext),
                json!(ports),
                json!(age(v)),
                json!(or_none(selector_string(v.pointer("/spec/selector")))),
            ]
        }
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in arr(v, "/subsets") {
                for a in arr(sub, "/addresses") {
                    let ip = a.get("ip").and_then(Value::as_str).unwrap_or_default();
                    let ports = arr(sub, "/ports");
                    if ports.is_empty() {
                        eps.push(ip.to_string());
                    }
                    for p in ports {
                        eps.push(format!(
                            "{ip}:{}",
                            p.get("port").and_then(Value::as_i64).unwrap_or(0)
                        ));
                    }
                }
            }
            vec![json!(name), json!(short_list(&eps)), json!(age(v))]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = arr(v, "/ports")
                .iter()
                .map(|p| {
                    p.get("port")
                        .and_then(Value::as_i64)
                        .map_or("<unset>".into(), |x| x.to_string())
                })
                .collect();
            let addrs: Vec<String> = arr(v, "/endpoints")
                .iter()
                .flat_map(|e| arr(e, "/addresses").iter())
                .filter_map(|a| a.as_str().map(String::from))
                .collect();
            vec![
                json!(name),
                json!(s(v, "/addressType")),
                json!(if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                }),
                json!(short_list(&addrs)),
                json!(age(v)),
            ]
        }
        "Node" => {
            let ready = arr(v, "/status/conditions")
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
            let mut status = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let mut roles: Vec<String> = v
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .filter(|r| !r.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            roles.sort();
            let addr = |ty: &str| {
                arr(v, "/status/addresses")
                    .iter()
                    .find(|a| a.get("type").and_then(Value::as_str) == Some(ty))
                    .and_then(|a| a.get("address").and_then(Value::as_str))
                    .unwrap_or("<none>")
                    .to_string()
            };
            let info = |k: &str| {
                let x = s(v, &format!("/status/nodeInfo/{k}"));
                if x.is_empty() { "<unknown>".into() } else { x }
            };
            vec![
                json!(name),
                json!(status),
                json!(if roles.is_empty() {
                    "<none>".into()
                } else {
                    roles.join(",")
                }),
                json!(age(v)),
                json!(s(v, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(info("osImage")),
                json!(info("kernelVersion")),
                json!(info("containerRuntimeVersion")),
            ]
        }
        "Namespace" => vec![json!(name), json!(s(v, "/status/phase")), json!(age(v))],
        "ConfigMap" => {
            let n = v
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + v.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![json!(name), json!(n), json!(age(v))]
        }
        "Secret" => {
            let n = v
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![json!(name), json!(s(v, "/type")), json!(n), json!(age(v))]
        }
        "Lease" => vec![
            json!(name),
            json!(s(v, "/spec/holderIdentity")),
            json!(age(v)),
        ],
        "Deployment" => {
            let want = v
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let st = |k: &str| {
                v.pointer(&format!("/status/{k}"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            };
            let containers = arr(v, "/spec/template/spec/containers");
            let names: Vec<&str> = containers
                .iter()
                .filter_map(|c| c.get("name")?.as_str())
                .collect();
            let images: Vec<&str> = containers
                .iter()
                .filter_map(|c| c.get("image")?.as_str())
                .collect();
            vec![
                json!(name),
                json!(format!("{}/{}", st("readyReplicas"), want)),
                json!(st("updatedReplicas")),
                json!(st("availableReplicas")),
                json!(age(v)),
                json!(names.join(",")),
                json!(images.join(",")),
                json!(or_none(label_selector_string(v.pointer("/spec/selector")))),
            ]
        }
        "Event" => {
            let last = str_at(v, "/lastTimestamp")
                .or_else(|| str_at(v, "/eventTime"))
                .or_else(|| str_at(v, "/metadata/creationTimestamp"))
                .and_then(crate::meta::parse_time)
                .map(|t| {
                    crate::meta::human_duration(jiff::Timestamp::now().as_second() - t.as_second())
                })
                .unwrap_or_else(|| "<unknown>".into());
            let object = format!(
                "{}/{}",
                s(v, "/involvedObject/kind").to_lowercase(),
                s(v, "/involvedObject/name")
            );
            vec![
                json!(last),
                json!(s(v, "/type")),
                json!(s(v, "/reason")),
                json!(object),
                json!(s(v, "/message")),
            ]
        }
        k if crate::workload_tables::serves(k) => crate::workload_tables::cells(k, v, name),
        _ => vec![json!(name), json!(age(v))],
    }
}

fn short_list(items: &[String]) -> String {
    if items.is_empty() {
        return "<none>".into();
    }
    if items.len() > 3 {
        format!("{} + {} more...", items[..3].join(","), items.len() - 3)
    } else {
        items.join(",")
    }
}

fn pod_cells(v: &Value, name: String) -> Vec<Value> {
    let containers = arr(v, "/spec/containers");
    let statuses = arr(v, "/status/containerStatuses");
    let total = containers.len();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
        .sum();
    let mut reason = {
        let r = s(v, "/status/reason");
        if r.is_empty() {
            s(v, "/status/phase")
        } else {
            r
        }
    };
    for cs in statuses {
        if let Some(r) = cs.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(r) = cs
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        }
    }
    if v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|x| !x.is_null())
    {
        reason = "Terminating".into();
    }
    let ip = s(v, "/status/podIP");
    let node = s(v, "/spec/nodeName");
    let gates = arr(v, "/spec/readinessGates");
    vec![
        json!(name),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(age(v)),
        json!(if ip.is_empty() { "<none>".into() } else { ip }),
        json!(if node.is_empty() {
            "<none>".into()
        } else {
            node
        }),
        json!(or_none(s(v, "/status/nominatedNodeName"))),
        json!(if gates.is_empty() {
            "<none>".to_string()
        } else {
            format!("0/{}", gates.len())
        }),
    ]
}

/// What each row carries as `object` (`includeObject` query parameter).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

pub fn row(res: ResIdx, v: &Value, include: IncludeObject) -> Value {
    let mut r = json!({ "cells": cells(res, v) });
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => r["object"] = v.clone(),
        IncludeObject::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": v.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    r
}

/// A whole Table.
pub fn table(
    res: ResIdx,
    objs: &[Value],
    rv: u64,
    cont: Option<&str>,
    include: IncludeObject,
) -> Value {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": column_definitions(res),
        "rows": objs.iter().map(|o| row(res, o, include)).collect::<Vec<_>>(),
    })
}

/// A whole Table written straight to bytes from stored objects: rows are serialized one by
/// one (no tree of 10 000 rows is built) and `includeObject=Object` splices the stored JSON.
pub fn table_bytes(
    res: ResIdx,
    objs: &[std::sync::Arc<crate::store::Obj>],
    rv: u64,
    cont: Option<&str>,
    include: IncludeObject,
) -> Vec<u8> {
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let mut out = Vec::with_capacity(256 + objs.len() * 256);
    out.extend_from_slice(b"{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":");
    let _ = serde_json::to_writer(&mut out, &meta);
    out.extend_from_slice(b",\"columnDefinitions\":");
    let _ = serde_json::to_writer(&mut out, &column_definitions(res));
    out.extend_from_slice(b",\"rows\":[");
    for (i, o) in objs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let v = o.value();
        out.extend_from_slice(b"{\"cells\":");
        let _ = serde_json::to_writer(&mut out, &cells(res, &v));
        match include {
            IncludeObject::None => {}
            IncludeObject::Object => {
                out.extend_from_slice(b",\"object\":");
                out.extend_from_slice(&crate::crd::served_json(res, o));
            }
            IncludeObject::Metadata => {
                out.extend_from_slice(
                    b",\"object\":{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
                );
                let _ = serde_json::to_writer(&mut out, v.get("metadata").unwrap_or(&Value::Null));
                out.push(b'}');
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::idx;

    #[test]
    fn service_and_pod_rows() {
        let svc = json!({"metadata":{"name":"web"},"spec":{"type":"ClusterIP","clusterIP":"10.96.3.4","ports":[{"port":80,"protocol":"TCP"},{"port":53,"protocol":"UDP"}],"selector":{"app":"web"}}});
        let c = cells(idx::services(), &svc);
        assert_eq!(c[0], "web");
        assert_eq!(c[2], "10.96.3.4");
        assert_eq!(c[3], "<none>");
        assert_eq!(c[4], "80/TCP,53/UDP");
        assert_eq!(c[6], "app=web");
        let pod = json!({"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"},{"name":"b"}]},"status":{"phase":"Running","containerStatuses":[{"ready":true,"restartCount":2},{"ready":false,"restartCount":1}]}});
        let c = cells(idx::pods(), &pod);
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "Running");
        assert_eq!(c[3], 3);
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }

    #[tokio::test]
    async fn streamed_table_equals_the_value_table() {
        use crate::store::{Change, Store};
        let st = Store::in_memory();
        let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"d","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.5","ports":[{"port":80,"protocol":"TCP"}]}});
        let s2 = svc.clone();
        st.mutate(idx::services(), "d", "a", |_| Ok(Change::Put(s2)))
            .await
            .unwrap();
        let (objs, rv, _) = st.list(idx::services(), None, None, 0, |_| true);
        let vals: Vec<Value> = objs.iter().map(|o| o.value()).collect();
        for inc in [
            IncludeObject::None,
            IncludeObject::Metadata,
            IncludeObject::Object,
        ] {
            let a = table(idx::services(), &vals, rv, Some("c"), inc);
            let b: Value =
                serde_json::from_slice(&table_bytes(idx::services(), &objs, rv, Some("c"), inc))
                    .unwrap();
            assert_eq!(a, b);
        }
    }
}

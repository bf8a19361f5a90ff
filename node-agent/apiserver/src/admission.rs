//! Defaulting and validation of written objects, per kind, as the real API server's defaulting
//! functions and validators do for the fields minikind's users and controllers rely on.
//! Every refusal is a 422 `Invalid` naming the field.

use super::errors::{
    ApiError, ApiResult, FieldCause, duplicate, invalid_value, not_supported, required,
};
use super::meta::{check_dns_label, check_dns_subdomain, check_dns1035_label};
use super::resources::{self, ResIdx, idx};
use super::selectors::Selector;
use super::validation::{config_key_errors, label_value_errors, qualified_name_errors};
use crate::clusterip::{AllocError, ServiceAllocator, cluster_ips};
use serde_json::{Map, Value, json};
use std::net::Ipv4Addr;
use std::sync::Arc;

fn check_path_segment(name: &str) -> Result<(), String> {
    if name == "." || name == ".." {
        return Err(format!("may not be '{name}'"));
    }
    match ["/", "%"].iter().find(|c| name.contains(**c)) {
        Some(c) => Err(format!("may not contain '{c}'")),
        None => Ok(()),
    }
}

pub struct Admission {
    pub services: Arc<ServiceAllocator>,
}

pub(crate) fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

pub(crate) fn default_str(m: &mut Map<String, Value>, key: &str, val: &str) {
    if m.get(key)
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        m.insert(key.into(), json!(val));
    }
}

pub(crate) fn default_val(m: &mut Map<String, Value>, key: &str, val: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), val);
    }
}

impl Admission {
    /// Defaults and validates an object about to be created (`old` = None) or replaced.
    /// Called under the store lock, so allocations here cannot race.
    pub fn admit(&self, res: ResIdx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        let r = resources::get(res);
        let name = super::meta::name_of(obj).to_string();
        let mut causes = Vec::new();
        let name_check = if res == idx::namespaces() {
            check_dns_label(&name)
        } else if res == idx::services() {
            check_dns1035_label(&name)
        } else if r.group == "rbac.authorization.k8s.io" {
            // RBAC names are path segments (`system:coredns`), as apimachinery's
            // `IsValidPathSegmentName` has them.
            check_path_segment(&name)
        } else {
            check_dns_subdomain(&name)
        };
        if name.is_empty() {
            causes.push(FieldCause {
                reason: "FieldValueRequired",
                field: "metadata.name".into(),
                message: "Required value: name or generateName is required".into(),
            });
        } else if let Err(why) = name_check {
            causes.push(invalid_value("metadata.name", &name, &why));
        }
        check_labels(obj, &mut causes);
        if res == idx::pods() {
            default_pod_spec(obj_mut(obj, "spec"));
            let st = obj_mut(obj, "status");
            default_str(st, "phase", "Pending");
            default_str(st, "qosClass", "BestEffort");
            validate_pod_spec(obj.get("spec"), "spec", &mut causes);
        } else if res == idx::deployments() {
            self.deployment(obj, old, &mut causes);
        } else if resources::is_workload(res) {
            crate::workload_admission::admit(res, obj, old, &mut causes);
        } else if res == idx::namespaces() {
            let spec = obj_mut(obj, "spec");
            default_val(spec, "finalizers", json!(["kubernetes"]));
            default_str(obj_mut(obj, "status"), "phase", "Active");
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = m.entry("labels").or_insert(json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        } else if res == idx::configmaps() {
            validate_configmap(obj, &mut causes);
            if let Some(old) = old {
                crate::secrets::immutable_data(obj, old, &["data", "binaryData"], &mut causes);
            }
        } else if res == idx::secrets() {
            crate::secrets::normalize(obj)?;
            crate::secrets::validate(obj, old, &mut causes);
        } else if res == idx::crds() {
            crate::crd::admit_definition(obj, old, &mut causes);
        } else if res >= resources::RESOURCES.len() {
            crate::crd::admit_custom(res, obj, &mut causes);
        } else if res == idx::endpointslices() {
            default_endpointslice(obj);
            validate_endpointslice(obj, &mut causes);
        } else if res == idx::endpoints()
            && let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut)
        {
            for s in subsets {
                if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default_str(p, "protocol", "TCP");
                    }
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(r.group, r.kind, &name, causes));
        }
        if res == idx::services() {
            self.service(obj, old, &name)?;
        }
        Ok(())
    }

    /// Releases what a deleted object held.
    pub fn on_deleted(&self, res: ResIdx, obj: &Value) {
        if res == idx::services() {
            self.services.release_service(obj);
        }
    }

    fn deployment(&self, obj: &mut Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
        let spec = obj_mut(obj, "spec");
        default_val(spec, "replicas", json!(1));
        default_val(spec, "revisionHistoryLimit", json!(10));
        default_val(spec, "progressDeadlineSeconds", json!(600));
        default_val(
            spec,
            "strategy",
            json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":"25%"}}),
        );
        let tmpl = spec.entry("template").or_insert(json!({}));
        if let Some(t) = tmpl.as_object_mut() {
            let ts = t.entry("spec").or_insert(json!({}));
            if let Some(ts) = ts.as_object_mut() {
                default_pod_spec(ts);
            }
        }
        match obj.pointer("/spec/replicas").and_then(Value::as_i64) {
            Some(n) if n < 0 => causes.push(invalid_value(
                "spec.replicas",
                &n.to_string(),
                "must be greater than or equal to 0",
            )),
            None => causes.push(invalid_value(
                "spec.replicas",
                &obj.pointer("/spec/replicas")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                "must be an integer",
            )),
            _ => {}
        }
        let selector = obj.pointer("/spec/selector").filter(|v| !v.is_null());
        match selector {
            None => causes.push(required("spec.selector")),
            Some(sel) => match Selector::from_label_selector(Some(sel)) {
                Err(e) => causes.push(invalid_value("spec.selector", &sel.to_string(), &e.message)),
                Ok(s) if s.is_empty() => causes.push(invalid_value(
                    "spec.selector",
                    &sel.to_string(),
                    "empty selector is invalid for deployment",
                )),
                Ok(s) => {
                    let labels = obj.pointer("/spec/template/metadata/labels");
                    if !s.matches_labels(labels) {
                        causes.push(invalid_value(
                            "spec.template.metadata.labels",
                            &labels.map(|l| l.to_string()).unwrap_or_default(),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
            },
        }
        if let Some(old) = old
            && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
        {
            causes.push(invalid_value(
                "spec.selector",
                &obj.pointer("/spec/selector")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                "field is immutable",
            ));
        }
        validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            causes,
        );
    }

    fn service(&self, obj: &mut Value, old: Option<&Value>, name: &str) -> ApiResult<()> {
        let invalid = |c: FieldCause| ApiError::invalid("", "Service", name, vec![c]);
        let mut causes = Vec::new();
        {
            let spec = obj_mut(obj, "spec");
            default_str(spec, "type", "ClusterIP");
            default_str(spec, "sessionAffinity", "None");
            let ty = spec["type"].as_str().unwrap_or_default().to_string();
            if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty.as_str()) {
                causes.push(not_supported(
                    "spec.type",
                    &ty,
                    &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
                ));
            }
            if ty == "ExternalName" {
                if spec
                    .get("externalName")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(required("spec.externalName"));
                }
            } else {
                default_val(spec, "ipFamilies", json!(["IPv4"]));
                default_str(spec, "ipFamilyPolicy", "SingleStack");
                default_str(spec, "internalTrafficPolicy", "Cluster");
                if ty == "NodePort" || ty == "LoadBalancer" {
                    default_str(spec, "externalTrafficPolicy", "Cluster");
                }
            }
            let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
            let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
            match ports {
                None if !headless && ty != "ExternalName" => causes.push(required("spec.ports")),
                Some(ports) if ports.is_empty() && !headless && ty != "ExternalName" => {
                    causes.push(required("spec.ports"))
                }
                None => {}
                Some(ports) => {
                    let many = ports.len() > 1;
                    let mut names = std::collections::HashSet::new();
                    for (i, p) in ports.iter_mut().enumerate() {
                        let Some(p) = p.as_object_mut() else {
                            causes.push(invalid_value(
                                format!("spec.ports[{i}]"),
                                "",
                                "must be an object",
                            ));
                            continue;
                        };
                        default_str(p, "protocol", "TCP");
                        let proto = p["protocol"].as_str().unwrap_or_default().to_string();
                        if !["TCP", "UDP", "SCTP"].contains(&proto.as_str()) {
                            causes.push(not_supported(
                                format!("spec.ports[{i}].protocol"),
                                &proto,
                                &["SCTP", "TCP", "UDP"],
                            ));
                        }
                        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                        if !(1..=65535).contains(&port) {
                            causes.push(invalid_value(
                                format!("spec.ports[{i}].port"),
                                &port.to_string(),
                                "must be between 1 and 65535, inclusive",
                            ));
                        }
                        default_val(p, "targetPort", json!(port));
                        let pname = p.get("name").and_then(Value::as_str).unwrap_or_default();
                        if many && pname.is_empty() {
                            causes.push(required(format!("spec.ports[{i}].name")));
                        } else if !pname.is_empty() && !names.insert(pname.to_string()) {
                            causes.push(duplicate(format!("spec.ports[{i}].name"), pname));
                        }
                    }
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid("", "Service", name, causes));
        }
        let ty = obj["spec"]["type"].as_str().unwrap_or_default().to_string();
        if ty == "ExternalName" {
            if let Some(old) = old {
                self.services.release_service(old);
            }
            let spec = obj_mut(obj, "spec");
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
            return Ok(());
        }
        // Cluster IP: kept from the old object when not given on update; immutable once set.
        let old_ips = old.map(cluster_ips).unwrap_or_default();
        let old_raw = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
        let spec = obj_mut(obj, "spec");
        let given = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or_else(|| {
                spec.get("clusterIPs")
                    .and_then(|v| v.get(0))
                    .and_then(Value::as_str)
                    .map(String::from)
            });
        if let Some(old_raw) = old_raw {
            match &given {
                None => {
                    spec.insert("clusterIP".into(), old_raw.clone());
                    spec.insert("clusterIPs".into(), json!([old_raw]));
                }
                Some(g) if Some(g.as_str()) != old_raw.as_str() => {
                    return Err(invalid(invalid_value(
                        "spec.clusterIPs[0]",
                        g,
                        "may not change once set",
                    )));
                }
                Some(_) => {
                    spec.insert("clusterIPs".into(), json!([old_raw]));
                }
            }
        } else {
            let ip = match given.as_deref() {
                Some("None") => "None".to_string(),
                Some(g) => {
                    let ip: Ipv4Addr = g.parse().map_err(|_| {
                        invalid(invalid_value(
                            "spec.clusterIPs[0]",
                            g,
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        ))
                    })?;
                    if !old_ips.contains(&ip) {
                        self.services.claim(ip).map_err(|e| {
                            invalid(invalid_value(
                                "spec.clusterIPs",
                                g,
                                &format!("failed to allocate IP {g}: {e}"),
                            ))
                        })?;
                    }
                    g.to_string()
                }
                None => self
                    .services
                    .allocate()
                    .map_err(|e: AllocError| {
                        ApiError::internal(format!("failed to allocate a serviceIP: {e}"))
                    })?
                    .to_string(),
            };
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        // Node ports for NodePort/LoadBalancer services.
        if ty == "NodePort" || ty == "LoadBalancer" {
            let old_ports = old.map(crate::clusterip::node_ports).unwrap_or_default();
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for (i, p) in ports.iter_mut().enumerate() {
                    match p.get("nodePort").and_then(Value::as_u64) {
                        Some(np) => {
                            let np = u16::try_from(np).unwrap_or(0);
                            if !old_ports.contains(&np) {
                                self.services.claim_port(np).map_err(|e| {
                                    invalid(invalid_value(
                                        format!("spec.ports[{i}].nodePort"),
                                        &np.to_string(),
                                        &e.to_string(),
                                    ))
                                })?;
                            }
                        }
                        None => {
                            let np = self.services.allocate_port().map_err(|e| {
                                ApiError::internal(format!("failed to allocate a nodePort: {e}"))
                            })?;
                            p["nodePort"] = json!(np);
                        }
                    }
                }
            }
        }
        obj_mut(obj, "status")
            .entry("loadBalancer")
            .or_insert(json!({}));
        Ok(())
    }
}

fn check_labels(obj: &Value, causes: &mut Vec<FieldCause>) {
    if let Some(labels) = obj.pointer("/metadata/labels") {
        let Some(m) = labels.as_object() else {
            causes.push(invalid_value(
                "metadata.labels",
                &labels.to_string(),
                "must be a map of strings",
            ));
            return;
        };
        for (k, v) in m {
            let Some(s) = v.as_str() else {
                causes.push(invalid_value(
                    format!("metadata.labels[{k}]"),
                    &v.to_string(),
                    "must be a string",
                ));
                continue;
            };
            let key_errors = qualified_name_errors(k);
            if !key_errors.is_empty() {
                causes.push(invalid_value("metadata.labels", k, &key_errors.join("; ")));
            }
            let value_errors = label_value_errors(s);
            if !value_errors.is_empty() {
                causes.push(invalid_value(
                    "metadata.labels",
                    s,
                    &value_errors.join("; "),
                ));
            }
        }
    }
}

/// Pod spec defaults, also applied to Deployment templates.
pub(crate) fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_str(spec, "restartPolicy", "Always");
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "schedulerName", "default-scheduler");
    default_val(spec, "terminationGracePeriodSeconds", json!(30));
    default_val(spec, "securityContext", json!({}));
    default_val(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_str(c, "terminationMessagePath", "/dev/termination-log");
                default_str(c, "terminationMessagePolicy", "File");
                default_val(c, "resources", json!({}));
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or_default();
                let tagged = last.contains(':') && !last.ends_with(":latest");
                let policy = if tagged || image.contains('@') {
                    "IfNotPresent"
                } else {
                    "Always"
                };
                default_str(c, "imagePullPolicy", policy);
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default_str(p, "protocol", "TCP");
                    }
                }
                for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                    if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
                        default_probe(p);
                    }
                }
            }
        }
    }
}

/// `SetDefaults_Probe` and the defaults of its handlers (`SetDefaults_HTTPGetAction`).
fn default_probe(p: &mut Map<String, Value>) {
    default_val(p, "timeoutSeconds", json!(1));
    default_val(p, "periodSeconds", json!(10));
    default_val(p, "successThreshold", json!(1));
    default_val(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_str(h, "path", "/");
        default_str(h, "scheme", "HTTP");
    }
}

pub(crate) fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<FieldCause>) {
    let Some(spec) = spec else {
        causes.push(required(at.to_string()));
        return;
    };
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(required(format!("{at}.containers"))),
        Some(cs) if cs.is_empty() => causes.push(required(format!("{at}.containers"))),
        Some(cs) => {
            let mut names = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                if name.is_empty() {
                    causes.push(required(format!("{at}.containers[{i}].name")));
                } else if let Err(why) = check_dns_label(name) {
                    causes.push(invalid_value(
                        format!("{at}.containers[{i}].name"),
                        name,
                        &why,
                    ));
                } else if !names.insert(name) {
                    causes.push(duplicate(format!("{at}.containers[{i}].name"), name));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(required(format!("{at}.containers[{i}].image")));
                }
                if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                    for (j, p) in ports.iter().enumerate() {
                        let cp = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
                        if !(1..=65535).contains(&cp) {
                            causes.push(invalid_value(
                                format!("{at}.containers[{i}].ports[{j}].containerPort"),
                                &cp.to_string(),
                                "must be between 1 and 65535, inclusive",
                            ));
                        }
                    }
                }
            }
        }
    }
    let rp = spec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if !["Always", "OnFailure", "Never"].contains(&rp) {
        causes.push(not_supported(
            format!("{at}.restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        ));
    }
    let dp = spec
        .get("dnsPolicy")
        .and_then(Value::as_str)
        .unwrap_or("ClusterFirst");
    let dps = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if !dps.contains(&dp) {
        causes.push(not_supported(format!("{at}.dnsPolicy"), dp, &dps));
    }
    if dp == "None" && spec.get("dnsConfig").is_none_or(Value::is_null) {
        causes.push(required(format!("{at}.dnsConfig")));
    }
}

/// The most a ConfigMap's or Secret's `data` and `binaryData` may hold together
/// (`MaxSecretSize` in Kubernetes' `pkg/apis/core/validation`: both kinds share it).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

fn validate_configmap(obj: &Value, causes: &mut Vec<FieldCause>) {
    // Keys and values count; binaryData by its decoded size, as Kubernetes holds the bytes.
    let size = |field: &str, decoded: fn(&str) -> usize| -> usize {
        obj.get(field).and_then(Value::as_object).map_or(0, |m| {
            m.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, decoded))
                .sum()
        })
    };
    let base64_decoded =
        |v: &str| v.len() / 4 * 3 - v.bytes().rev().take_while(|b| *b == b'=').count();
    let total = size("data", str::len) + size("binaryData", base64_decoded);
    if total > MAX_DATA_BYTES {
        causes.push(crate::secrets::data_too_long("data"));
    }
    for field in ["data", "binaryData"] {
        let Some(d) = obj.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let Some(m) = d.as_object() else {
            causes.push(invalid_value(field, &d.to_string(), "must be a map"));
            continue;
        };
        for (k, v) in m {
            for why in config_key_errors(k) {
                causes.push(invalid_value(field, k, &why));
            }
            if !v.is_string() {
                causes.push(invalid_value(
                    format!("{field}[{k}]"),
                    &v.to_string(),
                    "must be a string",
                ));
            }
        }
    }
}

fn validate_endpointslice(obj: &Value, causes: &mut Vec<FieldCause>) {
    let at = obj.get("addressType").and_then(Value::as_str);
    match at {
        None => causes.push(required("addressType")),
        Some(a) if !["IPv4", "IPv6", "FQDN"].contains(&a) => {
            causes.push(not_supported("addressType", a, &["FQDN", "IPv4", "IPv6"]))
        }
        _ => {}
    }
    if let Some(eps) = obj.get("endpoints").and_then(Value::as_array) {
        for (i, e) in eps.iter().enumerate() {
            let n = e
                .get("addresses")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if n == 0 {
                causes.push(required(format!("endpoints[{i}].addresses")));
            }
            if at == Some("IPv4") {
                for (j, a) in e
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let s = a.as_str().unwrap_or_default();
                    if s.parse::<Ipv4Addr>().is_err() {
                        causes.push(invalid_value(
                            format!("endpoints[{i}].addresses[{j}]"),
                            s,
                            "must be a valid IPv4 address",
                        ));
                    }
                }
            }
        }
    }
}

/// Defaults that are applied to EndpointSlice ports (kept apart: slices are written by the
/// controller with ports already complete, and by users).
pub fn default_endpointslice(obj: &mut Value) {
    if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_str(p, "protocol", "TCP");
        }
    }
}

/// kube-apiserver's ServiceAccount admission for a pod about to be created: defaults
/// `spec.serviceAccountName` to `default` (and the deprecated `spec.serviceAccount` to the
/// same) and refuses the pod when that service account does not exist in its namespace.
/// Whether a token is mounted (`automountServiceAccountToken` of the pod, else of the service
/// account) is decided by the kubelet, which requests the token.
pub fn service_account(store: &crate::store::Store, ns: &str, pod: &mut Value) -> ApiResult<()> {
    let name = super::meta::name_of(pod).to_string();
    let spec = obj_mut(pod, "spec");
    default_str(spec, "serviceAccountName", "default");
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    default_str(spec, "serviceAccount", &sa);
    if store.get(idx::serviceaccounts(), ns, &sa).is_none() {
        return Err(ApiError::forbidden(
            "",
            "pods",
            &name,
            &format!(
                "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_get_the_api_defaults() {
        let mut spec = json!({"containers": [{"name": "c", "image": "x:1",
            "livenessProbe": {"httpGet": {"port": 80}},
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}}]});
        default_pod_spec(spec.as_object_mut().unwrap());
        let c = &spec["containers"][0];
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 2);
        assert_eq!(c["readinessProbe"]["timeoutSeconds"], 1);
        assert!(c.get("startupProbe").is_none());
    }
}

//! Bodies encoded as Go's protobuf marshaller writes them: every non-pointer field, zero or
//! not; pointer fields only when set.

use super::*;

fn varint_bytes(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited field.
fn ld(num: u64, b: &[u8]) -> Vec<u8> {
    let mut out = varint_bytes((num << 3) | 2);
    out.extend(varint_bytes(b.len() as u64));
    out.extend_from_slice(b);
    out
}

/// A varint field.
fn vi(num: u64, v: u64) -> Vec<u8> {
    let mut out = varint_bytes(num << 3);
    out.extend(varint_bytes(v));
    out
}

fn s(num: u64, v: &str) -> Vec<u8> {
    ld(num, v.as_bytes())
}

fn map_entry(num: u64, k: &str, v: &[u8]) -> Vec<u8> {
    ld(num, &[ld(1, k.as_bytes()), ld(2, v)].concat())
}

fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let tm = [s(1, api_version), s(2, kind)].concat();
    [MAGIC.to_vec(), ld(1, &tm), ld(2, raw), s(3, ""), s(4, "")].concat()
}

/// ObjectMeta as Go writes it for a new object: name, the always-written strings empty,
/// generation 0, the zero creationTimestamp.
fn meta(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut m = [
        s(1, name),
        s(2, ""),
        s(3, ""),
        s(4, ""),
        s(5, ""),
        s(6, ""),
        vi(7, 0),
        ld(8, &[]),
    ]
    .concat();
    for (k, v) in labels {
        m.extend(map_entry(11, k, v.as_bytes()));
    }
    m
}

/// A Container as `kubectl create deployment web --image=busybox -- sleep 3600` builds it.
fn busybox_container() -> Vec<u8> {
    [
        s(1, "busybox"),
        s(2, "busybox"),
        s(3, "sleep"),
        s(3, "3600"),
        s(5, ""),   // workingDir
        ld(8, &[]), // resources {}
        s(13, ""),  // terminationMessagePath
        s(14, ""),  // imagePullPolicy
        vi(16, 0),  // stdin
        vi(17, 0),  // stdinOnce
        vi(18, 0),  // tty
        s(20, ""),  // terminationMessagePolicy
    ]
    .concat()
}

/// PodSpec with one container and its always-written fields zero.
fn pod_spec(container: &[u8]) -> Vec<u8> {
    [
        ld(2, container),
        s(3, ""),  // restartPolicy
        s(6, ""),  // dnsPolicy
        s(8, ""),  // serviceAccountName
        s(10, ""), // nodeName
        vi(11, 0), // hostNetwork
        vi(12, 0), // hostPID
        vi(13, 0), // hostIPC
        s(16, ""), // hostname
        s(17, ""), // subdomain
        s(19, ""), // schedulerName
    ]
    .concat()
}

#[test]
fn decodes_a_namespace() {
    let v = decode(&body(
        "v1",
        "Namespace",
        &[ld(1, &s(1, "team-a")), ld(2, &[]), ld(3, &[])].concat(),
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"},
               "spec":{},"status":{}})
    );
    assert_eq!(decode(b"nope").unwrap_err().code, 400);
    let b = body("v1", "Namespace", &ld(1, &s(1, "team-a")));
    assert_eq!(decode(&b[..b.len() - 6]).unwrap_err().code, 400);
}

#[test]
fn a_deployment_from_kubectl_create_has_no_empty_strings() {
    let template = [
        ld(1, &meta("", &[("app", "web")])),
        ld(2, &pod_spec(&busybox_container())),
    ]
    .concat();
    let selector = map_entry(1, "app", b"web");
    let spec = [
        vi(1, 1), // replicas (a pointer: written because set)
        ld(2, &selector),
        ld(3, &template),
        ld(4, &[]), // strategy {}
        vi(5, 0),   // minReadySeconds
        vi(7, 0),   // paused
    ]
    .concat();
    let raw = [
        ld(1, &meta("web", &[("app", "web")])),
        ld(2, &spec),
        ld(3, &[]),
    ]
    .concat();
    let v = decode(&body("apps/v1", "Deployment", &raw)).unwrap();
    // What `kubectl create deployment … --dry-run=client -o json` prints, as the JSON
    // decoder would read it.
    assert_eq!(
        v,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "busybox", "image": "busybox",
                                             "command": ["sleep", "3600"], "resources": {}}]}
                },
                "strategy": {}
            },
            "status": {}
        })
    );
}

#[test]
fn pointer_zeros_are_values() {
    // replicas 0 and automountServiceAccountToken false are pointers set to zero.
    let spec = [
        vi(1, 0),
        ld(3, &ld(2, &[vi(21, 0), ld(2, &s(1, "c"))].concat())),
    ]
    .concat();
    let raw = [ld(1, &meta("d", &[])), ld(2, &spec)].concat();
    let v = decode(&body("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(v["spec"]["replicas"], json!(0));
    assert_eq!(
        v["spec"]["template"]["spec"]["automountServiceAccountToken"],
        json!(false)
    );
    // A container's name is always written to JSON, even empty.
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c"}])
    );
}

#[test]
fn a_secret_keeps_bytes_type_and_immutable() {
    let raw = [
        ld(1, &meta("tls", &[])),
        map_entry(2, "tls.crt", b"CERT"),
        map_entry(2, "tls.key", &[0, 255]),
        s(3, "kubernetes.io/tls"),
        vi(5, 0), // immutable: a pointer to false
    ]
    .concat();
    let v = decode(&body("v1", "Secret", &raw)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"tls"},
               "data":{"tls.crt":"Q0VSVA==","tls.key":"AP8="},
               "type":"kubernetes.io/tls","immutable":false})
    );
}

#[test]
fn pods_flatten_inline_handlers_and_take_json_forms() {
    let port = [vi(1, 1), vi(2, 0), s(3, "http")].concat(); // IntOrString "http"
    let http_get = [s(1, "/healthz"), ld(2, &port), s(3, ""), s(4, "HTTP")].concat();
    let probe = [ld(1, &ld(2, &http_get)), vi(2, 0), vi(3, 1), vi(4, 10)].concat();
    let resources = [
        ld(1, &[ld(1, b"memory"), ld(2, &s(1, "64Mi"))].concat()),
        ld(2, &[ld(1, b"cpu"), ld(2, &s(1, "100m"))].concat()),
    ]
    .concat();
    let c = [
        s(1, "web"),
        s(2, "nginx"),
        ld(8, &resources),
        ld(10, &probe),
    ]
    .concat();
    let toleration_seconds = [
        s(1, "node.kubernetes.io/not-ready"),
        s(2, "Exists"),
        s(3, ""),
        s(4, "NoExecute"),
        vi(5, 300),
    ]
    .concat();
    let spec = [ld(2, &c), ld(22, &toleration_seconds)].concat();
    let created = [vi(1, 1_700_000_000), vi(2, 0)].concat();
    let mut m = meta("p", &[]);
    m.extend(ld(8, &created));
    let raw = [ld(1, &m), ld(2, &spec)].concat();
    let v = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        v["metadata"]["creationTimestamp"],
        json!("2023-11-14T22:13:20Z")
    );
    let c = &v["spec"]["containers"][0];
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
               "timeoutSeconds": 1, "periodSeconds": 10})
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m"}})
    );
    assert_eq!(
        v["spec"]["tolerations"],
        json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}])
    );
}

#[test]
fn negative_ints_and_lists_of_strings() {
    // A SubjectAccessReview with `extra` (ExtraValue: an array in JSON).
    let extra = ld(
        5,
        &[ld(1, b"scopes"), ld(2, &[s(1, "a"), s(1, "b")].concat())].concat(),
    );
    let spec = [s(3, "jane"), s(4, "dev"), extra].concat();
    let raw = [ld(1, &meta("", &[])), ld(2, &spec)].concat();
    let v = decode(&body(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        &raw,
    ))
    .unwrap();
    assert_eq!(
        v["spec"],
        json!({"user": "jane", "groups": ["dev"], "extra": {"scopes": ["a", "b"]}})
    );
    // terminationGracePeriodSeconds -1 (a pointer): ten-byte two's complement varint.
    let spec = [ld(2, &s(1, "c")), vi(4, u64::MAX)].concat();
    let v = decode(&body(
        "v1",
        "Pod",
        &[ld(1, &meta("p", &[])), ld(2, &spec)].concat(),
    ))
    .unwrap();
    assert_eq!(v["spec"]["terminationGracePeriodSeconds"], json!(-1));
}

#[test]
fn unknown_fields_and_kinds_are_refused_not_dropped() {
    let raw = [ld(1, &meta("c", &[])), s(99, "surprise")].concat();
    let e = decode(&body("v1", "ConfigMap", &raw)).unwrap_err();
    assert_eq!(e.code, 415);
    assert!(
        e.message.contains("field number 99 of core.v1.ConfigMap"),
        "{}",
        e.message
    );
    let e = decode(&body("example.com/v1", "Widget", &[])).unwrap_err();
    assert_eq!(e.code, 415);
    assert!(e.message.contains("example.com/v1/Widget"), "{}", e.message);
    // A field of the right number with the wrong wire type is a malformed body.
    let raw = [ld(1, &meta("c", &[])), vi(2, 7)].concat();
    assert_eq!(
        decode(&body("v1", "ConfigMap", &raw)).unwrap_err().code,
        400
    );
}

#[test]
fn durations_as_go_prints_them() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(300_000_000), "300ms");
    assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    assert_eq!(go_duration(90_000_000_000), "1m30s");
    assert_eq!(go_duration(-2_000), "-2µs");
}

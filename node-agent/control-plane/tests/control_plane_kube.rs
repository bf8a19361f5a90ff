//! kube-rs clients against the in-process API server: typed CRUD, selectors, paging,
//! error reasons, watch (replay, 410, initial events), reflector, server-side apply, restart.

mod control_plane_common;
use control_plane_common::{eventually, server};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use std::collections::BTreeMap;

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_,_>>()},
        "data": {"k": "v"},
    }))
    .unwrap()
}

fn reason(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn control_plane_kube_crud_selectors_paging_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let a = api
        .create(&PostParams::default(), &cm("a", &[("app", "web")]))
        .await
        .unwrap();
    assert!(a.metadata.uid.is_some());
    assert!(a.metadata.creation_timestamp.is_some());
    let rv_a: u64 = a
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[("app", "db")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("c", &[("app", "web")]))
        .await
        .unwrap();

    // AlreadyExists, NotFound.
    let e = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), (409, "AlreadyExists".into()));
    let e = api.get("zzz").await.unwrap_err();
    assert_eq!(reason(&e), (404, "NotFound".into()));

    // Label and field selectors.
    let web = api
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let names: Vec<_> = web
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let notweb = api
        .list(&ListParams::default().labels("app!=web"))
        .await
        .unwrap();
    assert_eq!(notweb.items.len(), 1);
    let byname = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(byname.items.len(), 1);
    let e = api
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), (400, "BadRequest".into()));
    let list_rv: u64 = web.metadata.resource_version.unwrap().parse().unwrap();
    assert!(list_rv > rv_a);

    // limit/continue.
    let p1 = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    let token = p1.metadata.continue_.clone().expect("a continue token");
    let p2 = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert!(p2.metadata.continue_.is_none());

    // Update with a stale resourceVersion conflicts; a fresh one succeeds.
    let mut stale = a.clone();
    let mut fresh = api.get("a").await.unwrap();
    fresh.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
    let updated = api
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(updated.data.unwrap()["k"], "v2");
    stale.data = Some(BTreeMap::from([("k".into(), "v3".into())]));
    let e = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(reason(&e), (409, "Conflict".into()));

    // generateName.
    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = api.create(&PostParams::default(), &g).await.unwrap();
    assert!(made.metadata.name.unwrap().starts_with("gen-"));

    // Invalid objects: 422 naming the field.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let bad: Service =
        serde_json::from_value(json!({"metadata":{"name":"noports"},"spec":{}})).unwrap();
    let e = svcs.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(s) = &e else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(
        s.message.contains("spec.ports: Required value"),
        "{}",
        s.message
    );

    // Namespaced create in a missing namespace.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let e = other
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), (404, "NotFound".into()));

    // Delete, then it is gone.
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let e = api.get("b").await.unwrap_err();
    assert_eq!(reason(&e).0, 404);
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_watch_replay_expired_and_initial_events() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = api
        .create(&PostParams::default(), &cm("w1", &[]))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("w2", &[]))
        .await
        .unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();

    // Replay from a version: the events after it, in order.
    let mut s = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = vec![];
    while let Some(ev) = s.try_next().await.unwrap() {
        match ev {
            WatchEvent::Added(c) => seen.push(format!("ADDED {}", c.metadata.name.unwrap())),
            WatchEvent::Deleted(c) => seen.push(format!("DELETED {}", c.metadata.name.unwrap())),
            other => seen.push(format!("{other:?}")),
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, ["ADDED w2", "DELETED w1"]);

    // Initial events then the end bookmark (kind and apiVersion present).
    let wp = WatchParams::streaming_lists().timeout(5);
    let mut s = api.watch(&wp, "").await.unwrap().boxed();
    let mut added = 0;
    loop {
        match s.try_next().await.unwrap().expect("stream continues") {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.types.kind, "ConfigMap");
                assert_eq!(b.types.api_version, "v1");
                assert_eq!(
                    b.metadata
                        .annotations
                        .get("k8s.io/initial-events-end")
                        .map(String::as_str),
                    Some("true")
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 1);
    cp.shutdown().await.unwrap();

    // After a restart the old versions are gone: 200 with an in-stream 410 Expired.
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut s = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected an Expired error event, got {other:?}"),
    }
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_reflector_follows_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .applied_objects()
        .boxed();
    let task = tokio::spawn(async move {
        let _ = stream.for_each(|_| async {}).await;
    });
    reader.wait_until_ready().await.unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("r{i}"), &[]))
            .await
            .unwrap();
    }
    eventually(10, "5 objects in the reflector", || {
        let n = reader
            .state()
            .iter()
            .filter(|c| c.metadata.name.as_deref().unwrap_or("").starts_with('r'))
            .count();
        async move { (n == 5).then_some(()) }
    })
    .await;
    api.delete("r0", &DeleteParams::default()).await.unwrap();
    eventually(10, "r0 gone from the reflector", || {
        let gone = !reader
            .state()
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some("r0"));
        async move { gone.then_some(()) }
    })
    .await;
    task.abort();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_server_side_apply() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cfg = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"a":"1","b":"2"}});
    let made = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert_eq!(made.data.as_ref().unwrap()["a"], "1");
    let mf = made.metadata.managed_fields.unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Bob changing alice's field conflicts unless forced.
    let bob =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"a":"9"}});
    let e = api
        .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&bob))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = &e else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("conflict with \"alice\""),
        "{}",
        s.message
    );
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");

    // Alice drops b from her configuration: the server removes it.
    let alice2 =
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ssa"},"data":{"c":"3"}});
    let after = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&alice2))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("b"), None);
    assert_eq!(data["a"], "9");
    assert_eq!(data["c"], "3");

    // Merge and JSON patches.
    let merged = api
        .patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Merge(json!({"data":{"m":"1"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["m"], "1");
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op":"replace","path":"/data/m","value":"2"}])).unwrap();
    let patched = api
        .patch("ssa", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["m"], "2");
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_restart_keeps_objects_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata":{"name":"team"}})).unwrap(),
    )
    .await
    .unwrap();
    let before = api
        .create(&PostParams::default(), &cm("keep", &[("x", "y")]))
        .await
        .unwrap();
    let rv_before: u64 = before
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service =
        serde_json::from_value(json!({"metadata":{"name":"s"},"spec":{"ports":[{"port":80}]}}))
            .unwrap();
    let svc = svcs.create(&PostParams::default(), &svc).await.unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    cp.shutdown().await.unwrap();

    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let after = api.get("keep").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.get("team").await.unwrap();
    let next = api
        .create(&PostParams::default(), &cm("new", &[]))
        .await
        .unwrap();
    let rv_next: u64 = next.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv_next > rv_before, "{rv_next} > {rv_before}");
    // The allocator remembers the service's IP after the restart.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let dup: Service = serde_json::from_value(
        json!({"metadata":{"name":"dup"},"spec":{"clusterIP": ip, "ports":[{"port":80}]}}),
    )
    .unwrap();
    let e = svcs.create(&PostParams::default(), &dup).await.unwrap_err();
    assert_eq!(reason(&e), (422, "Invalid".into()));
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_rejects_missing_token() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let mut kc = kube::config::Kubeconfig::from_yaml(&cp.kubeconfig).unwrap();
    for u in &mut kc.auth_infos {
        if let Some(a) = u.auth_info.as_mut() {
            a.token = Some("wrong".to_string().into());
        }
    }
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let e = api.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(reason(&e), (401, "Unauthorized".into()));
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_watch_selector_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = api.list(&ListParams::default()).await.unwrap();
    let rv = start.metadata.resource_version.unwrap();
    let wp = WatchParams::default().labels("app=a").timeout(5);
    let mut s = api.watch(&wp, &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("t", &[("app", "a")]))
        .await
        .unwrap();
    let relabel = |v: &'static str| {
        let api = api.clone();
        async move {
            api.patch(
                "t",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"app": v}}})),
            )
            .await
            .unwrap();
        }
    };
    relabel("b").await;
    relabel("c").await;
    relabel("a").await;
    let mut seen = vec![];
    while seen.len() < 3 {
        match s.try_next().await.unwrap().expect("more events") {
            WatchEvent::Added(c) => {
                seen.push(format!("ADDED {}", c.metadata.labels.unwrap()["app"]))
            }
            WatchEvent::Modified(c) => {
                seen.push(format!("MODIFIED {}", c.metadata.labels.unwrap()["app"]))
            }
            WatchEvent::Deleted(c) => {
                seen.push(format!("DELETED {}", c.metadata.labels.unwrap()["app"]))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Leaving the selection is a DELETED, coming back an ADDED; b -> c is not seen at all.
    assert_eq!(seen, ["ADDED a", "DELETED b", "ADDED a"]);
    cp.shutdown().await.unwrap();
}

/// The node flow: the admin kubeconfig names `https://<node>:6443`; the CLI copies it out,
/// renames the entries and points it at the published address, and a client trusts the
/// serving certificate there (127.0.0.1 is in its names).
#[tokio::test]
async fn control_plane_kube_admin_kubeconfig_for_the_cli() {
    use minikind_apiserver::kubeconfig;
    use minikind_control_plane::{ControlPlaneConfig, start};
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("etc/kubernetes/admin.conf");
    let mut cfg = ControlPlaneConfig::loopback(dir.path().join("var"));
    cfg.kubeconfig_server = Some("https://lab-control-plane:6443".into());
    cfg.admin_kubeconfig = Some(admin.clone());
    cfg.sans = vec!["lab-control-plane".into(), "172.18.0.2".into()];
    let cp = start(cfg).await.unwrap();
    let written = std::fs::read_to_string(&admin).unwrap();
    assert!(
        written.contains("server: https://lab-control-plane:6443"),
        "{written}"
    );
    let renamed = kubeconfig::rename(&written, &kubeconfig::entry_name("lab")).unwrap();
    let local =
        kubeconfig::rewrite_server(&renamed, &format!("https://127.0.0.1:{}", cp.addr.port()))
            .unwrap();
    let merged = kubeconfig::merge("", &local, "minikind-lab", true).unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&merged).unwrap();
    assert_eq!(kc.current_context.as_deref(), Some("minikind-lab"));
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let nss: Api<Namespace> = Api::all(client);
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_watch_timeout_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let t = std::time::Instant::now();
    let mut s = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    while s.try_next().await.unwrap().is_some() {}
    let took = t.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "{took:?}"
    );
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_insecure_http_on_loopback() {
    use minikind_control_plane::{ControlPlaneConfig, start};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControlPlaneConfig::loopback(dir.path().to_path_buf());
    cfg.insecure_http = true;
    let cp = start(cfg).await.unwrap();
    assert!(cp.url().starts_with("http://127.0.0.1:"), "{}", cp.url());
    let client = cp.client().await.unwrap();
    let nss: Api<Namespace> = Api::all(client);
    assert_eq!(
        nss.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    assert!(
        !dir.path().join("pki").exists(),
        "no PKI in plain-HTTP mode"
    );
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kube_server_side_apply_keyed_lists() {
    use k8s_openapi::api::apps::v1::Deployment;
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<Deployment> = Api::namespaced(client, "default");
    let cfg = |env: serde_json::Value| {
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"selector":{"matchLabels":{"app":"d"}},"template":{"metadata":{"labels":{"app":"d"}},
            "spec":{"containers":[{"name":"c","image":"i:1","env":env}]}}}})
    };
    api.patch(
        "d",
        &PatchParams::apply("ci"),
        &Patch::Apply(&cfg(
            json!([{"name":"A","value":"1"},{"name":"B","value":"2"}]),
        )),
    )
    .await
    .unwrap();
    // Another manager adds a label; the applier's next configuration drops env B.
    api.patch(
        "d",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata":{"labels":{"team":"x"}}})),
    )
    .await
    .unwrap();
    let d = api
        .patch(
            "d",
            &PatchParams::apply("ci"),
            &Patch::Apply(&cfg(json!([{"name":"A","value":"1"}]))),
        )
        .await
        .unwrap();
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    let names: Vec<&str> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["A"]);
    assert_eq!(c.image.as_deref(), Some("i:1"));
    assert_eq!(d.metadata.labels.unwrap()["team"], "x");
    // Defaults set by the server survive the apply.
    let d = api.get("d").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(1));
    cp.shutdown().await.unwrap();
}

/// Sizes as kube-apiserver bounds them: at most 1 MiB of ConfigMap data (422 Invalid naming the
/// field), and request bodies beyond the server's limit refused before they are decoded.
#[tokio::test]
async fn control_plane_kube_bounds_object_and_request_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let sized = |name: &str, bytes: usize| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "data": {"blob": "x".repeat(bytes)},
        }))
        .unwrap()
    };
    // Just inside: 1 MiB minus the key.
    api.create(&PostParams::default(), &sized("fits", 1024 * 1024 - 4))
        .await
        .unwrap();
    let e = api
        .create(&PostParams::default(), &sized("too-big", 2 * 1024 * 1024))
        .await
        .unwrap_err();
    assert_eq!(reason(&e), (422, "Invalid".into()));
    let kube::Error::Api(status) = e else {
        unreachable!()
    };
    assert!(
        status
            .message
            .contains("Too long: must have at most 1048576 bytes"),
        "{}",
        status.message
    );
    // A body past the request limit (3 MiB, as kube-apiserver's) is refused whole.
    let e = api
        .create(&PostParams::default(), &sized("huge", 4 * 1024 * 1024))
        .await
        .unwrap_err();
    let (code, _) = reason(&e);
    assert!(code == 413 || code == 400, "{e:?}");
    assert!(api.get_opt("too-big").await.unwrap().is_none());
    assert!(api.get_opt("huge").await.unwrap().is_none());
    cp.shutdown().await.unwrap();
}

//! The controllers on the in-process server: node IPAM, scheduler spreading over ready nodes,
//! ClusterIP allocation, EndpointSlices (ready, hostname only under the service's subdomain,
//! named ports), Deployments (naming, scaling, template change, through ReplicaSets), `default/kubernetes`
//! (following the server to a new port), namespace deletion, owner GC, pod GC.
//! The tests play the kubelet's part by patching pod status.

mod control_plane_common;
use control_plane_common::{eventually, mark_running, register_node, register_node_with, server};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use minikind_control_plane::{ControlPlaneConfig, start};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

fn pod(name: &str, labels: serde_json::Value, extra_spec: serde_json::Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "app", "image": "busybox:1", "ports": [{"name": "http", "containerPort": 8080}]}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
        .unwrap()
}

#[tokio::test]
async fn control_plane_controllers_nodes_scheduler_and_kubernetes_service() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    register_node(&client, "n2", "172.18.0.3").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs = eventually(10, "pod CIDRs on both nodes", || {
        let nodes = nodes.clone();
        async move {
            let l = nodes.list(&ListParams::default()).await.ok()?;
            let c: Vec<String> = l
                .items
                .iter()
                .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
                .collect();
            (c.len() == 2).then_some(c)
        }
    })
    .await;
    assert_ne!(cidrs[0], cidrs[1]);
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.244.") && c.ends_with("/24")),
        "{cidrs:?}"
    );

    // Six pods spread three and three.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..6 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("p{i}"), json!({"app": "x"}), json!({})),
        )
        .await
        .unwrap();
    }
    let placement = eventually(10, "all pods scheduled", || {
        let pods = pods.clone();
        async move {
            let l = pods.list(&ListParams::default()).await.ok()?;
            let nodes: Vec<String> = l
                .items
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect();
            (nodes.len() == 6).then_some(nodes)
        }
    })
    .await;
    let on_n1 = placement.iter().filter(|n| *n == "n1").count();
    assert_eq!(on_n1, 3, "{placement:?}");
    let p0 = pods.get("p0").await.unwrap();
    let conds = p0.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );

    // default/kubernetes at the first service IP with its slice.
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let k = svcs.get("kubernetes").await.unwrap();
    assert_eq!(k.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let s = slices.get("kubernetes").await.unwrap();
    assert_eq!(s.endpoints[0].addresses, ["127.0.0.1"]);
    assert_eq!(s.ports.unwrap()[0].port, Some(cp.addr.port() as i32));

    // Graceful deletion on a ready node leaves the pod Terminating; the kubelet (here the
    // test) finishes with grace 0.
    pods.delete("p0", &DeleteParams::default()).await.unwrap();
    let p0 = pods.get("p0").await.unwrap();
    assert!(p0.metadata.deletion_timestamp.is_some());
    pods.delete("p0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("p0").await.unwrap().is_none());
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_controllers_cluster_ips() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let mk = |name: &str, ip: Option<&str>| -> Service {
        let mut spec = json!({"ports": [{"port": 53, "protocol": "UDP", "name": "dns"}]});
        if let Some(ip) = ip {
            spec["clusterIP"] = json!(ip);
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let dns = svcs
        .create(&PostParams::default(), &mk("dns", Some("10.96.0.10")))
        .await
        .unwrap();
    let spec = dns.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(spec.cluster_ips.unwrap(), ["10.96.0.10"]);
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        spec.ports.unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(53))
    );
    // Duplicate and out-of-range addresses are refused, naming the field.
    for (name, ip, text) in [
        ("dup", "10.96.0.10", "provided IP is already allocated"),
        ("far", "10.97.0.10", "not in the valid range"),
        ("bad", "banana", "must be a valid IP address"),
    ] {
        let e = svcs
            .create(&PostParams::default(), &mk(name, Some(ip)))
            .await
            .unwrap_err();
        let kube::Error::Api(s) = e else { panic!() };
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
        assert!(
            s.message.contains("spec.clusterIPs") && s.message.contains(text),
            "{}",
            s.message
        );
    }
    // Random allocations are distinct and in range.
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let s = svcs
            .create(&PostParams::default(), &mk(&format!("r{i}"), None))
            .await
            .unwrap();
        let ip = s.spec.unwrap().cluster_ip.unwrap();
        assert!(ip.starts_with("10.96."), "{ip}");
        assert!(seen.insert(ip));
    }
    // Headless keeps None; the IP is immutable.
    let h = svcs
        .create(&PostParams::default(), &mk("headless", Some("None")))
        .await
        .unwrap();
    assert_eq!(h.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    let e = svcs
        .patch(
            "dns",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}}),
            ),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert_eq!(s.code, 422);
    // Released on delete.
    svcs.delete("dns", &DeleteParams::default()).await.unwrap();
    svcs.create(&PostParams::default(), &mk("dns2", Some("10.96.0.10")))
        .await
        .unwrap();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_controllers_endpointslices() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod(
            "web-0",
            json!({"app": "web"}),
            json!({"hostname": "web-0", "subdomain": "web"}),
        ),
    )
    .await
    .unwrap();
    // A hostname under another subdomain: no `hostname` in this service's slice.
    pods.create(
        &PostParams::default(),
        &pod(
            "web-1",
            json!({"app": "web"}),
            json!({"hostname": "web-1", "subdomain": "elsewhere"}),
        ),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("other", json!({"app": "other"}), json!({})),
    )
    .await
    .unwrap();
    mark_running(&client, "default", "web-0", "10.244.0.5", true).await;
    mark_running(&client, "default", "web-1", "10.244.0.6", false).await;
    mark_running(&client, "default", "other", "10.244.0.7", true).await;

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = eventually(10, "a slice with both web pods", || {
        let slices = slices.clone();
        async move {
            let l = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let s = l.items.into_iter().next()?;
            (s.endpoints.len() == 2).then_some(s)
        }
    })
    .await;
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let ports = slice.ports.clone().unwrap();
    assert_eq!(ports[0].port, Some(8080), "named target port resolved");
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    let by_ip: BTreeMap<String, _> = slice
        .endpoints
        .iter()
        .map(|e| (e.addresses[0].clone(), e.clone()))
        .collect();
    let e0 = &by_ip["10.244.0.5"];
    assert_eq!(e0.conditions.as_ref().unwrap().ready, Some(true));
    assert_eq!(e0.hostname.as_deref(), Some("web-0"));
    assert_eq!(
        e0.target_ref.as_ref().unwrap().name.as_deref(),
        Some("web-0")
    );
    let e1 = &by_ip["10.244.0.6"];
    assert_eq!(e1.conditions.as_ref().unwrap().ready, Some(false));
    assert_eq!(
        e1.hostname, None,
        "subdomain \"elsewhere\" is not the service"
    );

    // Readiness flips follow; a deleted pod leaves.
    mark_running(&client, "default", "web-1", "10.244.0.6", true).await;
    eventually(10, "web-1 ready in the slice", || {
        let slices = slices.clone();
        async move {
            let l = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let s = l.items.into_iter().next()?;
            s.endpoints
                .iter()
                .all(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .then_some(())
        }
    })
    .await;
    pods.delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    eventually(10, "web-0 gone from the slice", || {
        let slices = slices.clone();
        async move {
            let l = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            let s = l.items.into_iter().next()?;
            (s.endpoints.len() == 1).then_some(())
        }
    })
    .await;
    // The service's deletion removes its slices.
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(10, "slices removed", || {
        let slices = slices.clone();
        async move {
            let l = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .ok()?;
            l.items.is_empty().then_some(())
        }
    })
    .await;
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_controllers_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "img:1"}]}}},
    }))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    let list = |n: usize| {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let live: Vec<Pod> = l
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            // The scheduler binds pods after the Deployment controller creates them: wait
            // for both.
            let scheduled = live
                .iter()
                .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()));
            (live.len() == n && scheduled).then_some(live)
        }
    };
    let first = eventually(10, "3 scheduled pods", || list(3)).await;
    let hash = first[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    for p in &first {
        let name = p.metadata.name.clone().unwrap();
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert_eq!(parts[0], "web");
        assert_eq!(parts[1], hash);
        assert_eq!(parts[2].len(), 5);
        assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
    }
    // The kubelet reports them ready; the status follows.
    for (i, p) in first.iter().enumerate() {
        mark_running(
            &client,
            "default",
            p.metadata.name.as_deref().unwrap(),
            &format!("10.244.0.{}", 10 + i),
            true,
        )
        .await;
    }
    eventually(10, "deployment status 3/3", || {
        let deps = deps.clone();
        async move {
            let d = deps.get("web").await.ok()?;
            let s = d.status?;
            (s.ready_replicas == Some(3) && s.updated_replicas == Some(3)).then_some(())
        }
    })
    .await;
    // Scale down and up through the scale subresource path kubectl uses.
    deps.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    eventually(10, "1 pod", || list(1)).await;
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let two = eventually(10, "2 pods", || list(2)).await;
    for (i, p) in two.iter().enumerate() {
        mark_running(
            &client,
            "default",
            p.metadata.name.as_deref().unwrap(),
            &format!("10.244.0.{}", 20 + i),
            true,
        )
        .await;
    }
    // A new template: new pods with a new hash replace the old ones as they get ready.
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img:2"}]}}}})),
    )
    .await
    .unwrap();
    // RollingUpdate with the defaults (maxSurge 25% → 1, maxUnavailable 25% → 0 of 2): one new
    // pod next to the two old ones, and no more until it is ready.
    let live_by_hash = |pods: Vec<Pod>| {
        let mut m: std::collections::BTreeMap<String, usize> = Default::default();
        for p in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            *m.entry(p.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone())
                .or_default() += 1;
        }
        m
    };
    let surge = eventually(10, "one surge pod", || {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let m = live_by_hash(l.items);
            (m.len() == 2).then_some(m)
        }
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let later = live_by_hash(
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items,
    );
    assert_eq!(later, surge, "nothing moves while the new pod is not ready");
    assert_eq!(surge.get(&hash), Some(&2), "{surge:?}");
    assert_eq!(surge.values().sum::<usize>(), 3, "2 old + 1 new: {surge:?}");
    let new_hash = eventually(10, "pods of the new template", || {
        let pods = pods.clone();
        let hash = hash.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            l.items
                .iter()
                .map(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone())
                .find(|h| *h != hash)
        }
    })
    .await;
    for _ in 0..20 {
        let l = pods
            .list(&ListParams::default().labels(&format!("pod-template-hash={new_hash}")))
            .await
            .unwrap();
        for (i, p) in l.items.iter().enumerate() {
            if p.status.as_ref().and_then(|s| s.pod_ip.clone()).is_none() {
                mark_running(
                    &client,
                    "default",
                    p.metadata.name.as_deref().unwrap(),
                    &format!("10.244.1.{}", 10 + i),
                    true,
                )
                .await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let done = eventually(10, "only new pods", || {
        let pods = pods.clone();
        let new_hash = new_hash.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let live: Vec<_> = l
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            (live.len() == 2
                && live
                    .iter()
                    .all(|p| p.metadata.labels.as_ref().unwrap()["pod-template-hash"] == new_hash))
            .then_some(live.len())
        }
    })
    .await;
    assert_eq!(done, 2);
    let images: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            p.spec.as_ref().unwrap().containers[0]
                .image
                .clone()
                .unwrap()
        })
        .collect();
    assert!(images.iter().all(|i| i == "img:2"), "{images:?}");
    // Deleting the deployment removes its pods (owner references).
    deps.delete("web", &DeleteParams::default()).await.unwrap();
    eventually(10, "pods garbage-collected", || list(0)).await;
    // A deployment whose selector does not match its template is invalid.
    let bad: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}},
    }))
    .unwrap();
    let e = deps.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert_eq!(s.code, 422);
    assert!(
        s.message.contains("spec.template.metadata.labels"),
        "{}",
        s.message
    );
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_controllers_namespace_deletion_empties_it() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    eventually(10, "namespace gone", || {
        let nss = nss.clone();
        async move { nss.get_opt("tmp").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_controllers_orphan_deletion_keeps_pods() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "keep"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "keep"}},
                 "template": {"metadata": {"labels": {"app": "keep"}},
                              "spec": {"containers": [{"name": "app", "image": "img:1"}]}}},
    }))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    eventually(10, "2 pods", || {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("app=keep"))
                .await
                .ok()?;
            (l.items.len() == 2).then_some(())
        }
    })
    .await;
    deps.delete("keep", &DeleteParams::orphan()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The Deployment's dependent, its ReplicaSet, is orphaned and keeps its pods.
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let left_rs = rss
        .list(&ListParams::default().labels("app=keep"))
        .await
        .unwrap();
    assert_eq!(left_rs.items.len(), 1);
    assert!(left_rs.items[0].metadata.owner_references.is_none());
    let rs_uid = left_rs.items[0].metadata.uid.clone().unwrap();
    let left = pods
        .list(&ListParams::default().labels("app=keep"))
        .await
        .unwrap();
    assert_eq!(left.items.len(), 2);
    assert!(left.items.iter().all(|p| {
        p.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.len() == 1 && o[0].uid == rs_uid)
    }));
    assert!(deps.get_opt("keep").await.unwrap().is_none());
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_controllers_dns_addon() {
    use minikind_control_plane::dns_addon::{DnsAddon, corefile};
    use minikind_control_plane::{ControlPlaneConfig, start};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControlPlaneConfig::loopback(dir.path().to_path_buf());
    cfg.dns_addon = Some(DnsAddon::default());
    let cp = start(cfg).await.unwrap();
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let dns = svcs.get("kube-dns").await.unwrap();
    assert_eq!(dns.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let cm = cms.get("coredns").await.unwrap();
    assert_eq!(cm.data.unwrap()["Corefile"], corefile("cluster.local"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let two = eventually(10, "two coredns pods", || {
        let pods = pods.clone();
        async move {
            let l = pods
                .list(&ListParams::default().labels("k8s-app=kube-dns"))
                .await
                .ok()?;
            (l.items.len() == 2).then_some(l.items)
        }
    })
    .await;
    for (i, p) in two.iter().enumerate() {
        assert!(p.metadata.name.as_deref().unwrap().starts_with("coredns-"));
        mark_running(
            &client,
            "kube-system",
            p.metadata.name.as_deref().unwrap(),
            &format!("10.244.0.{}", 2 + i),
            true,
        )
        .await;
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    eventually(10, "kube-dns slice with both pods ready", || {
        let slices = slices.clone();
        async move {
            let l = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=kube-dns"))
                .await
                .ok()?;
            let s = l.items.into_iter().next()?;
            let ready = s
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            (ready == 2 && s.ports.as_ref().map_or(0, Vec::len) == 3).then_some(())
        }
    })
    .await;
    cp.shutdown().await.unwrap();
}

/// podgc leaves a terminating pod on a live node to its kubelet however long past its
/// deletionTimestamp; it finishes the deletion once the node is out of service (NotReady and
/// tainted), and removes pods bound to a node that was deleted.
#[tokio::test]
async fn control_plane_controllers_podgc_spares_live_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    register_node(&client, "live", "172.18.0.2").await;
    register_node(&client, "doomed", "172.18.0.3").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, node) in [("stopping", "live"), ("bound", "doomed")] {
        let p = pod(
            name,
            json!({"app": name}),
            json!({"nodeName": node, "terminationGracePeriodSeconds": 1}),
        );
        pods.create(&PostParams::default(), &p).await.unwrap();
        mark_running(&client, "default", name, "10.244.1.5", true).await;
    }
    pods.delete("stopping", &DeleteParams::default())
        .await
        .unwrap();
    // Grace 1 s, podgc every second: three seconds is well past the deletionTimestamp.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let p = pods.get_opt("stopping").await.unwrap().expect("pod kept");
    assert!(p.metadata.deletion_timestamp.is_some());

    // The node stops and an operator marks it out of service: podgc finishes the deletion.
    nodes
        .patch_status(
            "live",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "gone quiet"}
            ]}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        pods.get_opt("stopping").await.unwrap().is_some(),
        "NotReady alone is not enough"
    );
    nodes
        .patch(
            "live",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}
            ]}})),
        )
        .await
        .unwrap();
    eventually(10, "out-of-service pod removed", || {
        let pods = pods.clone();
        async move { pods.get_opt("stopping").await.ok()?.is_none().then_some(()) }
    })
    .await;

    // A pod bound to a deleted node is an orphan.
    assert!(pods.get_opt("bound").await.unwrap().is_some());
    nodes
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "orphan removed", || {
        let pods = pods.clone();
        async move { pods.get_opt("bound").await.ok()?.is_none().then_some(()) }
    })
    .await;
    cp.shutdown().await.unwrap();
}

/// Pods go only to ready nodes: with one node NotReady (and one that never reported a
/// condition) every pod lands on the ready one; once the NotReady node turns ready it takes
/// the next pods, being the least loaded.
#[tokio::test]
async fn control_plane_controllers_scheduler_skips_not_ready_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    register_node_with(&client, "n2", "172.18.0.3", "False").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let silent: Node = serde_json::from_value(json!({"metadata": {"name": "n0"}})).unwrap();
    nodes.create(&PostParams::default(), &silent).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let placement = |names: Vec<String>| {
        let pods = pods.clone();
        async move {
            let mut out = BTreeMap::new();
            for n in &names {
                let p = pods.get(n).await.ok()?;
                out.insert(n.clone(), p.spec?.node_name?);
            }
            Some(out)
        }
    };
    let first: Vec<String> = (0..4).map(|i| format!("a{i}")).collect();
    create_pods(&pods, &first).await;
    let got = eventually(10, "the first pods scheduled", || placement(first.clone())).await;
    assert!(got.values().all(|n| n == "n1"), "{got:?}");

    nodes
        .patch_status(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}
            ]}})),
        )
        .await
        .unwrap();
    let second: Vec<String> = (0..2).map(|i| format!("b{i}")).collect();
    create_pods(&pods, &second).await;
    let got = eventually(10, "the later pods scheduled", || placement(second.clone())).await;
    assert!(got.values().all(|n| n == "n2"), "{got:?}");
    cp.shutdown().await.unwrap();
}

/// Plain pods of these names, for the scheduler to place.
/// Preferred pod anti-affinity (kubeadm's CoreDNS term) outweighs the load: the second replica
/// goes to the other node although that node runs more pods.
#[tokio::test]
async fn control_plane_controllers_scheduler_spreads_by_preferred_anti_affinity() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    register_node(&client, "n2", "172.18.0.3").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let node_of = |name: &'static str| {
        let pods = pods.clone();
        async move { pods.get(name).await.ok()?.spec?.node_name }
    };
    // n2 gets busy first (pinned), so load alone would put both replicas on n1.
    for name in ["busy-1", "busy-2"] {
        pods.create(
            &PostParams::default(),
            &pod(name, json!({"app": "other"}), json!({"nodeName": "n2"})),
        )
        .await
        .unwrap();
    }
    let anti = json!({"affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                "topologyKey": "kubernetes.io/hostname",
            },
        }],
    }}});
    let dns = json!({"k8s-app": "kube-dns"});
    pods.create(
        &PostParams::default(),
        &pod("dns-1", dns.clone(), anti.clone()),
    )
    .await
    .unwrap();
    let first = eventually(10, "dns-1 scheduled", || node_of("dns-1")).await;
    assert_eq!(first, "n1");
    pods.create(&PostParams::default(), &pod("dns-2", dns, anti))
        .await
        .unwrap();
    let second = eventually(10, "dns-2 scheduled", || node_of("dns-2")).await;
    assert_eq!(second, "n2", "the anti-affinity term spreads the replicas");
    // Without the term the load decides: a plain pod goes to the emptier n1.
    pods.create(
        &PostParams::default(),
        &pod("plain", json!({"app": "x"}), json!({})),
    )
    .await
    .unwrap();
    let plain = eventually(10, "plain scheduled", || node_of("plain")).await;
    assert_eq!(plain, "n1");
}

async fn create_pods(pods: &Api<Pod>, names: &[String]) {
    for n in names {
        pods.create(
            &PostParams::default(),
            &pod(n, json!({"app": "x"}), json!({})),
        )
        .await
        .unwrap();
    }
}

/// `default/kubernetes` as clients see it: (Service targetPort, EndpointSlice port, Endpoints
/// port), the cluster IP, and the three resourceVersions.
async fn kubernetes_service(client: &Client) -> ([i32; 3], String, [String; 3]) {
    let svc = Api::<Service>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let slice = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let ep = Api::<Endpoints>::namespaced(client.clone(), "default")
        .get("kubernetes")
        .await
        .unwrap();
    let spec = svc.spec.clone().unwrap();
    let sp = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(sp.port, 443, "{sp:?}");
    let target = match &sp.target_port {
        Some(IntOrString::Int(p)) => *p,
        other => panic!("targetPort {other:?}"),
    };
    let slice_port = slice.ports.as_ref().unwrap()[0].port.unwrap();
    let ep_port = ep.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0].port;
    let rv = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.resource_version.clone().unwrap()
    };
    (
        [target, slice_port, ep_port],
        spec.cluster_ip.unwrap(),
        [rv(&svc.metadata), rv(&slice.metadata), rv(&ep.metadata)],
    )
}

/// A restart on another port moves `default/kubernetes` with it (the Service's targetPort, the
/// slice's and the Endpoints' ports), as kube-apiserver's reconciler does; the cluster IP stays,
/// and a restart on the same port writes nothing.
#[tokio::test]
async fn control_plane_controllers_kubernetes_service_follows_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let p1 = cp.addr.port();
    let client = cp.client().await.unwrap();
    let (ports, ip, _) = kubernetes_service(&client).await;
    assert_eq!(ports, [i32::from(p1); 3]);
    assert_eq!(ip, "10.96.0.1");
    cp.shutdown().await.unwrap();

    // Holding the old port makes the restart take another one.
    let blocker = std::net::TcpListener::bind(("127.0.0.1", p1)).unwrap();
    let cp = server(dir.path()).await;
    drop(blocker);
    let addr = cp.addr;
    assert_ne!(addr.port(), p1);
    let client = cp.client().await.unwrap();
    let (ports, ip, rvs) = kubernetes_service(&client).await;
    assert_eq!(ports, [i32::from(addr.port()); 3], "old port was {p1}");
    assert_eq!(ip, "10.96.0.1");
    cp.shutdown().await.unwrap();

    let mut cfg = ControlPlaneConfig::loopback(dir.path().to_path_buf());
    cfg.listen = addr;
    let cp = start(cfg).await.expect("restart on the same port");
    let client = cp.client().await.unwrap();
    let (ports, _, same) = kubernetes_service(&client).await;
    assert_eq!(ports, [i32::from(addr.port()); 3]);
    assert_eq!(same, rvs, "nothing rewritten when the port is unchanged");
    cp.shutdown().await.unwrap();
}

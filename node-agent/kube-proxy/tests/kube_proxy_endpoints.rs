//! The whole path from pods: the API server's EndpointSlice controller fills the slice from
//! pods (resolving the service's named target port from their container ports), kube-proxy
//! turns it into rules with kube-proxy's endpoint choice — ready endpoints only, and when
//! none is ready, the serving-and-terminating ones.

mod kube_proxy_common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube_proxy_common::*;
use minikind_kube_proxy::service_rules::Protocol;
use serde_json::json;

const NS: &str = "default";

async fn web_pod(pods: &Api<Pod>, name: &str) {
    // A finalizer keeps the deleted pod (terminating) as a kubelet would while it stops.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}, "finalizers": ["minikind.test/hold"]},
        "spec": {"nodeName": "node-a", "containers": [{"name": "main", "image": "web",
                 "ports": [{"name": "web", "containerPort": 8080}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("creating a pod");
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patching pod status");
}

/// The endpoints of the service chain, sorted, once they equal `want`.
async fn wait_endpoints(c: &minikind_iptables::Commands, want: &[&str]) {
    let chain = port(NS, "web", "http", Protocol::Tcp).svc_chain();
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let cc = c.clone();
    eventually(10, &format!("web's endpoints = {want:?}"), move || {
        let save = dump(&cc, "nat");
        let mut got: Vec<String> = rules_of(&save, &chain)
            .iter()
            .filter_map(|l| l.split(" -> ").nth(1))
            .filter_map(|r| r.split('"').next())
            .map(str::to_string)
            .collect();
        got.sort();
        (got == want)
            .then_some(())
            .ok_or(format!("{got:?}\n{save}"))
    })
    .await;
}

#[test]
fn kube_proxy_follows_pods_through_the_endpointslice_controller() {
    let c = nft();
    isolated(&c.clone(), || async move {
        let lab = Lab::start(c.clone(), Duration::from_secs(30)).await;
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.100.60",
                     "ports": [{"name": "http", "port": 80, "targetPort": "web"}]},
        }))
        .unwrap();
        lab.services(NS)
            .create(&PostParams::default(), &svc)
            .await
            .expect("creating the service");
        let pods: Api<Pod> = Api::namespaced(lab.client.clone(), NS);
        web_pod(&pods, "web-1").await;
        web_pod(&pods, "web-2").await;
        set_status(&pods, "web-1", "10.244.0.21", true).await;
        set_status(&pods, "web-2", "10.244.0.22", false).await;
        // web-2 is not ready: only web-1, at the port its container names "web".
        wait_endpoints(&c, &["10.244.0.21:8080"]).await;

        set_status(&pods, "web-2", "10.244.0.22", true).await;
        wait_endpoints(&c, &["10.244.0.21:8080", "10.244.0.22:8080"]).await;

        // web-1 terminates: the ready web-2 takes all traffic.
        pods.delete("web-1", &DeleteParams::default())
            .await
            .expect("deleting web-1");
        wait_endpoints(&c, &["10.244.0.22:8080"]).await;

        // Both terminate, both still serving: kube-proxy keeps sending to them.
        pods.delete("web-2", &DeleteParams::default())
            .await
            .expect("deleting web-2");
        wait_endpoints(&c, &["10.244.0.21:8080", "10.244.0.22:8080"]).await;

        // A terminating pod that stops serving drops out.
        set_status(&pods, "web-2", "10.244.0.22", false).await;
        wait_endpoints(&c, &["10.244.0.21:8080"]).await;

        // The last one stops serving: no endpoints, so the REJECT.
        set_status(&pods, "web-1", "10.244.0.21", false).await;
        let cc = c.clone();
        eventually(10, "web's REJECT", move || {
            let s = dump(&cc, "filter");
            s.contains("default/web:http has no endpoints")
                .then_some(())
                .ok_or(s)
        })
        .await;
        // The service's nat chains go in the same or a following sync: wait for it.
        let cc = c.clone();
        eventually(10, "web's nat rules gone", move || {
            let nat = dump(&cc, "nat");
            (!nat.contains("default/web:http")).then_some(()).ok_or(nat)
        })
        .await;
        lab.shutdown().await;
    });
}

//! Pod start time: from a pod bound to the node (created with `spec.nodeName`, i.e. right after
//! scheduling) to its `Running` phase seen by a watch on the API — sandbox (netns, veth, IP,
//! resolver files), process start and the status patch included. Also: through the
//! scheduler, and a burst of pods at once. Target: ≤ 300 ms after scheduling.
//!
//! Runs as root in network, mount and UTS namespaces of its own (like the kubelet tests):
//! `cargo bench -p minikind-kubelet --bench kubelet_pod_start`.

#[path = "../tests/kubelet_common/mod.rs"]
mod kubelet_common;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kubelet_common::*;

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "n={} min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        v.len(),
        ms(v[0]),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(*v.last().unwrap())
    )
}

async fn start_and_wait(lab: &Lab, name: &str, bound: bool) -> Duration {
    let mut p = pod(name, &["sleep", "3600"]);
    if !bound {
        p["spec"].as_object_mut().unwrap().remove("nodeName");
    }
    let pod: Pod = serde_json::from_value(p).unwrap();
    let api = lab.pods();
    let started = Instant::now();
    let (a, n) = (api.clone(), name.to_string());
    let wait =
        tokio::spawn(async move { await_condition(a, &n, conditions::is_pod_running()).await });
    api.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("Running within 20 s")
        .expect("watch task")
        .expect("watch");
    started.elapsed()
}

fn main() {
    isolated(|| async {
        let lab = Lab::start().await;
        // Warm-up: first pod pays for the first API connections.
        start_and_wait(&lab, "warmup", true).await;

        let mut bound = Vec::new();
        for i in 0..30 {
            bound.push(start_and_wait(&lab, &format!("bound-{i}"), true).await);
        }
        println!(
            "pod bound to the node -> Running (sequential): {}",
            stats(bound)
        );

        let mut scheduled = Vec::new();
        for i in 0..10 {
            scheduled.push(start_and_wait(&lab, &format!("sched-{i}"), false).await);
        }
        println!(
            "pod created unscheduled -> scheduled -> Running: {}",
            stats(scheduled)
        );

        let started = Instant::now();
        let burst: Vec<_> = (0..20)
            .map(|i| {
                let name = format!("burst-{i}");
                let api = lab.pods();
                let p: Pod = serde_json::from_value(pod(&name, &["sleep", "3600"])).unwrap();
                async move {
                    let (a, n) = (api.clone(), name.clone());
                    let wait = tokio::spawn(async move {
                        await_condition(a, &n, conditions::is_pod_running()).await
                    });
                    api.create(&PostParams::default(), &p)
                        .await
                        .expect("create");
                    let _ = wait.await;
                }
            })
            .collect();
        futures::future::join_all(burst).await;
        println!(
            "burst of 20 bound pods -> all Running: {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );

        let delete_started = Instant::now();
        let names: Vec<String> = lab
            .pods()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        for n in &names {
            let _ = lab.pods().delete(n, &DeleteParams::default()).await;
        }
        for n in &names {
            lab.wait_gone(n, 30).await;
        }
        println!(
            "deleting {} pods -> all torn down and removed: {:.1} ms",
            names.len(),
            delete_started.elapsed().as_secs_f64() * 1000.0
        );
        lab.shutdown().await;
    });
}

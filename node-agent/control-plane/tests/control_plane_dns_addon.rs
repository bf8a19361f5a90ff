//! The DNS add-on's live path: `dns_addon::install`, which the node agent runs against the
//! control plane it just started, here run against the in-process API server. Checks every
//! object kubeadm would make (labels, ports, 10.96.0.10, the Corefile, tolerations, the rolling
//! update), that a second install changes nothing, that what a user changed survives, and that
//! the standalone server's `--dns-addon` (`ControlPlaneConfig::dns_addon`) makes the very same
//! objects.

mod control_plane_common;
use control_plane_common::{eventually, server};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use minikind_control_plane::dns_addon::{DnsAddon, install};
use minikind_control_plane::{ControlPlaneConfig, start};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// kubeadm's Corefile for cluster.local, written out here rather than taken from the code
/// under test.
const KUBEADM_COREFILE: &str = ".:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Apis {
    cms: Api<ConfigMap>,
    deps: Api<Deployment>,
    svcs: Api<Service>,
}

impl Apis {
    fn new(client: &Client) -> Self {
        Apis {
            cms: Api::namespaced(client.clone(), "kube-system"),
            deps: Api::namespaced(client.clone(), "kube-system"),
            svcs: Api::namespaced(client.clone(), "kube-system"),
        }
    }

    /// The three objects' resourceVersions.
    async fn versions(&self) -> [String; 3] {
        let rv = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.resource_version.clone().expect("a resourceVersion")
        };
        [
            rv(&self.cms.get("coredns").await.unwrap().metadata),
            rv(&self.deps.get("coredns").await.unwrap().metadata),
            rv(&self.svcs.get("kube-dns").await.unwrap().metadata),
        ]
    }

    /// The versions once the Deployment controller is done with the new Deployment (its pods
    /// made and its status written; with no node nothing changes after that), so that a
    /// change seen afterwards can only come from the install.
    async fn settled(&self) -> [String; 3] {
        eventually(10, "the coredns Deployment settled", || async {
            let d = self.deps.get("coredns").await.ok()?;
            let st = d.status?;
            if st.replicas != Some(2) || st.observed_generation != d.metadata.generation {
                return None;
            }
            let first = self.versions().await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            (self.versions().await == first).then_some(first)
        })
        .await
    }

    /// What the add-on consists of, without the fields the server fills per object (uid,
    /// resourceVersion, timestamps, managedFields, status).
    async fn essence(&self) -> Value {
        let cm = self.cms.get("coredns").await.unwrap();
        let d = self.deps.get("coredns").await.unwrap();
        let s = self.svcs.get("kube-dns").await.unwrap();
        json!({
            "configmap": {"labels": cm.metadata.labels, "data": cm.data},
            "deployment": {"labels": d.metadata.labels, "spec": d.spec},
            "service": {"labels": s.metadata.labels, "annotations": s.metadata.annotations, "spec": s.spec},
        })
    }
}

fn check_config_map(cm: &ConfigMap) {
    assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
    let data = cm.data.as_ref().expect("ConfigMap data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["Corefile"]);
    assert_eq!(data["Corefile"], KUBEADM_COREFILE);
}

fn check_deployment(d: &Deployment) {
    let app = map(&[("k8s-app", "kube-dns")]);
    assert_eq!(d.metadata.labels.as_ref(), Some(&app));
    let spec = d.spec.as_ref().expect("Deployment spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&app));
    let strategy = spec.strategy.as_ref().expect("a strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));

    let template = &spec.template;
    assert_eq!(
        template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
        Some(&app)
    );
    let pod = template.spec.as_ref().expect("pod template spec");
    assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    let tolerations: Vec<_> = pod
        .tolerations
        .as_ref()
        .expect("tolerations")
        .iter()
        .map(|t| (t.key.as_deref(), t.operator.as_deref(), t.effect.as_deref()))
        .collect();
    assert_eq!(
        tolerations,
        [
            (Some("CriticalAddonsOnly"), Some("Exists"), None),
            // No operator: Equal, with the empty value the taint has.
            (
                Some("node-role.kubernetes.io/control-plane"),
                None,
                Some("NoSchedule")
            ),
        ]
    );

    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.name, "coredns");
    let image = c.image.as_deref().expect("an image");
    assert!(
        image.starts_with("registry.k8s.io/coredns/coredns:v1."),
        "{image}"
    );
    assert_eq!(
        c.args.as_deref(),
        Some(&["-conf".to_string(), "/etc/coredns/Corefile".to_string()][..])
    );
    assert!(
        c.command.is_none(),
        "no command: the kubelet runs cluster-dns for it"
    );
    let ports: Vec<_> = c
        .ports
        .as_ref()
        .expect("container ports")
        .iter()
        .map(|p| {
            (
                p.name.as_deref().unwrap(),
                p.container_port,
                p.protocol.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns", 53, "UDP"),
            ("dns-tcp", 53, "TCP"),
            ("metrics", 9153, "TCP")
        ]
    );
    let http = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let g = p
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("an HTTP probe");
        (g.path.clone().unwrap(), g.port.clone(), g.scheme.clone())
    };
    assert_eq!(
        http(&c.readiness_probe),
        ("/ready".into(), IntOrString::Int(8181), Some("HTTP".into()))
    );
    assert_eq!(
        http(&c.liveness_probe),
        (
            "/health".into(),
            IntOrString::Int(8080),
            Some("HTTP".into())
        )
    );
    let live = c.liveness_probe.as_ref().unwrap();
    assert_eq!(
        (
            live.initial_delay_seconds,
            live.timeout_seconds,
            live.failure_threshold
        ),
        (Some(60), Some(5), Some(5))
    );

    let mounts = c.volume_mounts.as_ref().expect("volume mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        (
            mounts[0].name.as_str(),
            mounts[0].mount_path.as_str(),
            mounts[0].read_only
        ),
        ("config-volume", "/etc/coredns", Some(true))
    );
    let vols = pod.volumes.as_ref().expect("volumes");
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].name, "config-volume");
    let src = vols[0].config_map.as_ref().expect("a configMap volume");
    assert_eq!(src.name, "coredns");
    let items: Vec<_> = src
        .items
        .as_ref()
        .expect("items")
        .iter()
        .map(|i| (i.key.as_str(), i.path.as_str()))
        .collect();
    assert_eq!(items, [("Corefile", "Corefile")]);
}

fn check_service(s: &Service, ip: &str) {
    assert_eq!(
        s.metadata.labels.as_ref(),
        Some(&map(&[
            ("k8s-app", "kube-dns"),
            ("kubernetes.io/cluster-service", "true"),
            ("kubernetes.io/name", "CoreDNS"),
        ]))
    );
    assert_eq!(
        s.metadata.annotations.as_ref(),
        Some(&map(&[
            ("prometheus.io/port", "9153"),
            ("prometheus.io/scrape", "true"),
        ]))
    );
    let spec = s.spec.as_ref().expect("Service spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.cluster_ip.as_deref(), Some(ip));
    assert_eq!(spec.cluster_ips.as_deref(), Some(&[ip.to_string()][..]));
    assert_eq!(
        spec.selector.as_ref(),
        Some(&map(&[("k8s-app", "kube-dns")]))
    );
    let ports: Vec<_> = spec
        .ports
        .as_ref()
        .expect("service ports")
        .iter()
        .map(|p| {
            (
                p.name.as_deref().unwrap(),
                p.port,
                p.protocol.as_deref().unwrap(),
                p.target_port.clone(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("dns", 53, "UDP", Some(IntOrString::Int(53))),
            ("dns-tcp", 53, "TCP", Some(IntOrString::Int(53))),
            ("metrics", 9153, "TCP", Some(IntOrString::Int(9153))),
        ]
    );
}

#[tokio::test]
async fn dns_addon_install_creates_kubeadms_objects_once() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let apis = Apis::new(&client);
    let subnet = "10.96.0.0/16".parse().unwrap();

    let created = install(&client, subnet, &DnsAddon::default())
        .await
        .unwrap();
    assert_eq!(created, 4, "ServiceAccount, ConfigMap, Service, Deployment");
    check_config_map(&apis.cms.get("coredns").await.unwrap());
    check_deployment(&apis.deps.get("coredns").await.unwrap());
    check_service(&apis.svcs.get("kube-dns").await.unwrap(), "10.96.0.10");

    // A second install (the agent restarting) creates nothing and writes nothing.
    let before = apis.settled().await;
    let created = install(&client, subnet, &DnsAddon::default())
        .await
        .unwrap();
    assert_eq!(created, 0);
    assert_eq!(apis.versions().await, before);
    cp.shutdown().await.unwrap();
}

/// What a user changed stays changed across installs; only a missing object is made again.
#[tokio::test]
async fn dns_addon_install_keeps_user_changes_and_restores_missing_objects() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(dir.path()).await;
    let client = cp.client().await.unwrap();
    let apis = Apis::new(&client);
    let subnet = "10.96.0.0/16".parse().unwrap();
    install(&client, subnet, &DnsAddon::default())
        .await
        .unwrap();

    let logging = KUBEADM_COREFILE.replacen("errors", "errors\n    log", 1);
    apis.cms
        .patch(
            "coredns",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"Corefile": logging}})),
        )
        .await
        .unwrap();
    apis.deps
        .patch(
            "coredns",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    apis.svcs
        .delete("kube-dns", &DeleteParams::default())
        .await
        .unwrap();

    let created = install(&client, subnet, &DnsAddon::default())
        .await
        .unwrap();
    assert_eq!(created, 1, "only the deleted Service is made again");
    let cm = apis.cms.get("coredns").await.unwrap();
    assert_eq!(cm.data.unwrap()["Corefile"], logging);
    let d = apis.deps.get("coredns").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    check_service(&apis.svcs.get("kube-dns").await.unwrap(), "10.96.0.10");
    cp.shutdown().await.unwrap();
}

/// The standalone server's `--dns-addon` (here over plain HTTP, the scheme the TLS test in
/// control_plane_controllers.rs does not cover) makes exactly what the agent's install makes:
/// one implementation, no drift. The agent's side also runs on another service subnet and
/// domain, which move the Service's address and the Corefile's zone.
#[tokio::test]
async fn dns_addon_standalone_server_makes_the_agents_objects() {
    let dir_a = tempfile::tempdir().unwrap();
    let mut cfg = ControlPlaneConfig::loopback(dir_a.path().to_path_buf());
    cfg.insecure_http = true;
    cfg.dns_addon = Some(DnsAddon::default());
    let standalone = start(cfg).await.unwrap();
    let a = Apis::new(&standalone.client().await.unwrap());
    check_config_map(&a.cms.get("coredns").await.unwrap());
    check_deployment(&a.deps.get("coredns").await.unwrap());
    check_service(&a.svcs.get("kube-dns").await.unwrap(), "10.96.0.10");

    let dir_b = tempfile::tempdir().unwrap();
    let agent_side = server(dir_b.path()).await;
    let client = agent_side.client().await.unwrap();
    install(
        &client,
        "10.96.0.0/16".parse().unwrap(),
        &DnsAddon::default(),
    )
    .await
    .unwrap();
    let b = Apis::new(&client);
    assert_eq!(a.essence().await, b.essence().await);
    standalone.shutdown().await.unwrap();
    agent_side.shutdown().await.unwrap();

    let dir_c = tempfile::tempdir().unwrap();
    let mut cfg = ControlPlaneConfig::loopback(dir_c.path().to_path_buf());
    cfg.service_cidr = "10.100.0.0/16".parse().unwrap();
    let other = start(cfg).await.unwrap();
    let client = other.client().await.unwrap();
    install(
        &client,
        "10.100.0.0/16".parse().unwrap(),
        &DnsAddon::for_domain("corp.internal"),
    )
    .await
    .unwrap();
    let c = Apis::new(&client);
    check_service(&c.svcs.get("kube-dns").await.unwrap(), "10.100.0.10");
    let corefile = c.cms.get("coredns").await.unwrap().data.unwrap()["Corefile"].clone();
    assert_eq!(
        corefile,
        KUBEADM_COREFILE.replace("cluster.local", "corp.internal")
    );
    other.shutdown().await.unwrap();
}

//! The node side of pod networking: the Node object the kubelet registers, routes to the
//! other nodes' pod CIDRs via their InternalIPs (kindnet's job), the masquerade chain, and
//! hostNetwork pods; plus volumes (a CoreDNS image with a ConfigMap Corefile runs
//! `cluster-dns` with it). Each test runs in namespaces of its own.

mod kubelet_common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kubelet_common::*;
use serde_json::json;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The output of a command that may fail while the state it reads is still being made.
fn run_status(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn node_registration_routes_to_peers_and_masquerade() {
    isolated(|| async {
        // A stand-in for the cluster's Docker network, so peers are on-link.
        run("ip", &["link", "add", "nodenet", "type", "bridge"]);
        run("ip", &["addr", "add", "172.18.0.2/16", "dev", "nodenet"]);
        run("ip", &["link", "set", "nodenet", "up"]);
        let lab = Lab::start().await;
        let nodes: Api<Node> = Api::all(lab.client.clone());
        let me = nodes.get(NODE).await.unwrap();
        let labels = me.metadata.labels.clone().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], NODE);
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let st = me.status.clone().unwrap();
        let ready = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        let addrs: Vec<(String, String)> = st
            .addresses
            .unwrap()
            .into_iter()
            .map(|a| (a.type_, a.address))
            .collect();
        assert_eq!(
            addrs,
            vec![
                ("InternalIP".into(), "127.0.0.1".into()),
                ("Hostname".into(), NODE.into())
            ]
        );
        assert_eq!(me.spec.unwrap().pod_cidr.as_deref(), Some("10.244.0.0/24"));
        // The kubelet makes the bridge once it has read its pod CIDR: wait for it.
        eventually(10, "the bridge's gateway address", || async {
            run_status("ip", &["-4", "addr", "show", "dev", "mkbr0"])
                .filter(|out| out.contains("inet 10.244.0.1/24"))
        })
        .await;

        // Two peers register; the IPAM controller gives them CIDRs.
        for (name, ip) in [("peer-1", "172.18.0.3"), ("peer-2", "172.18.0.4")] {
            let n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
            nodes.create(&PostParams::default(), &n).await.unwrap();
            let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}],
                                 "conditions": [{"type": "Ready", "status": "True"}]}});
            nodes
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
        }
        let routes = eventually(10, "routes to both peers", || async {
            let r = run("ip", &["-4", "route", "show", "proto", "77"]);
            (r.lines().count() == 2).then_some(r)
        })
        .await;
        assert!(
            routes.contains("10.244.1.0/24 via 172.18.0.3 dev nodenet"),
            "{routes}"
        );
        assert!(
            routes.contains("10.244.2.0/24 via 172.18.0.4 dev nodenet"),
            "{routes}"
        );
        nodes
            .delete("peer-2", &DeleteParams::default())
            .await
            .unwrap();
        eventually(10, "the route to a deleted node removed", || async {
            let r = run("ip", &["-4", "route", "show", "proto", "77"]);
            (r.lines().count() == 1).then_some(())
        })
        .await;

        // Masquerade: one jump from this node's CIDR, RETURN inside the pod subnet.
        let save = run("iptables-save", &["-t", "nat"]);
        let jumps = save
            .lines()
            .filter(|l| l.starts_with("-A POSTROUTING") && l.contains("-j MINIKIND-MASQ"))
            .count();
        assert_eq!(jumps, 1, "{save}");
        assert!(save.contains("-A POSTROUTING -s 10.244.0.0/24 "), "{save}");
        assert!(
            save.contains("-A MINIKIND-MASQ -d 10.244.0.0/16 "),
            "{save}"
        );
        assert!(save.contains("-j MASQUERADE"), "{save}");
        lab.shutdown().await;
    });
}

#[test]
fn restarting_the_kubelet_does_not_duplicate_the_masquerade_rules() {
    isolated(|| async {
        let mut lab = Lab::start().await;
        lab.stop_kubelet().await;
        lab.start_kubelet().await;
        let save = run("iptables-save", &["-t", "nat"]);
        assert_eq!(save.matches("-j MINIKIND-MASQ").count(), 1, "{save}");
        assert_eq!(save.matches("-j MASQUERADE").count(), 1, "{save}");
        lab.shutdown().await;
    });
}

#[test]
fn host_network_pods_keep_the_node_network_and_name() {
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        let mut p = pod("hostnet", &["sleep", "3600"]);
        p["spec"]["hostNetwork"] = json!(true);
        lab.create(p).await;
        let running = lab.wait_running("hostnet").await;
        assert_eq!(
            pod_ip(&running),
            Some(Ipv4Addr::LOCALHOST),
            "the node's address"
        );
        let links = exec(
            ep,
            "hostnet",
            &["ip", "-o", "link", "show", "mkbr0"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(
            links.status["status"], "Success",
            "the node's links are visible: {links:?}"
        );
        let name = exec(
            ep,
            "hostnet",
            &["cat", "/proc/sys/kernel/hostname"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(name.stdout, "kubelet-test-node\n");
        // ClusterFirst on the host network falls back to the node's resolver file.
        let resolv = exec(
            ep,
            "hostnet",
            &["cat", "/etc/resolv.conf"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(
            resolv.stdout,
            "search corp.example\nnameserver 172.18.0.1\noptions edns0 ndots:0\n"
        );
        assert!(
            crate_netns_count() == 0,
            "no network namespace for a hostNetwork pod"
        );
        lab.shutdown().await;
    });
}

fn crate_netns_count() -> usize {
    std::fs::read_dir("/run/netns")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_coredns_image_runs_cluster_dns_with_its_config_map_corefile() {
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        // A stand-in `cluster-dns` on the pod's PATH (a hostPath volume: the container sees
        // only its root) that prints its arguments and the Corefile it was given, then stays
        // up.
        let bin = lab.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = bin.join("cluster-dns");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho \"args: $*\"\ncat \"$2\"\nexec sleep 3600\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "default");
        let corefile = ".:53 {\n    errors\n    forward . /etc/resolv.conf\n}\n";
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("coredns".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "Corefile".to_string(),
                corefile.to_string(),
            )])),
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let mount = lab.dir.path().join("etc-coredns");
        let p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "coredns-1", "namespace": "default"},
            "spec": {
                "nodeName": NODE,
                "dnsPolicy": "Default",
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "main",
                    "image": "registry.k8s.io/coredns/coredns:v1.12.0",
                    "args": ["-conf", format!("{}/Corefile", mount.display())],
                    "env": [{"name": "PATH", "value": "/opt/fake-bin:/usr/bin:/bin"}],
                    "volumeMounts": [{"name": "config-volume", "mountPath": mount.to_str().unwrap(), "readOnly": true},
                                     {"name": "fake-bin", "mountPath": "/opt/fake-bin", "readOnly": true}],
                }],
                "volumes": [{"name": "config-volume",
                             "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}},
                            {"name": "fake-bin", "hostPath": {"path": bin.to_str().unwrap()}}],
            }
        });
        lab.create(p).await;
        lab.wait_running("coredns-1").await;
        let (_, logs) = eventually(10, "cluster-dns's output", || async {
            let r = http_get(ep, "/containerLogs/default/coredns-1/main").await;
            r.1.contains("forward").then_some(r)
        })
        .await;
        assert!(
            logs.starts_with(&format!("args: -conf {}/Corefile\n", mount.display())),
            "{logs}"
        );
        assert!(logs.contains(corefile), "{logs}");
        // The volume is mounted read-only, and an edited ConfigMap reaches the file.
        let w = exec(
            ep,
            "coredns-1",
            &[
                "sh",
                "-c",
                &format!("echo x > {}/Corefile", mount.display()),
            ],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(w.status["status"], "Failure", "{w:?}");
        let edited = ".:53 {\n    errors\n    cache 30\n}\n";
        let patch = json!({"data": {"Corefile": edited}});
        cms.patch("coredns", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        eventually(10, "the edited Corefile in the pod", || async {
            let o = exec(
                ep,
                "coredns-1",
                &["cat", &format!("{}/Corefile", mount.display())],
                None,
                "v5.channel.k8s.io",
            )
            .await;
            (o.stdout == edited).then_some(())
        })
        .await;
        lab.shutdown().await;
    });
}

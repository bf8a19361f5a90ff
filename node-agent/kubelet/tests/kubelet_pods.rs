//! The kubelet running real pods: network namespaces with addresses from the node's pod
//! CIDR, resolver files per dnsPolicy, hosts file, hostname, service-account files,
//! restarts with CrashLoopBackOff, readiness probes, deletion leaving nothing behind, and a
//! kubelet restart keeping the pods' addresses. Each test runs in namespaces of its own.

mod kubelet_common;

use std::net::Ipv4Addr;
use std::time::Duration;

use kube::api::DeleteParams;
use kubelet_common::*;
use serde_json::json;

#[test]
fn a_pod_with_sleep_gets_an_ip_resolver_files_hosts_and_hostname() {
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        let mut p = pod("web-0", &["sleep", "3600"]);
        p["spec"]["hostname"] = json!("web-0");
        p["spec"]["subdomain"] = json!("web");
        p["spec"]["hostAliases"] = json!([{"ip": "10.1.2.3", "hostnames": ["foo.remote"]}]);
        lab.create(p).await;
        let running = lab.wait_running("web-0").await;
        let ip = pod_ip(&running).expect("pod IP");
        assert!(
            "10.244.0.0/24"
                .parse::<ipnet::Ipv4Net>()
                .unwrap()
                .contains(&ip),
            "{ip} is in the node's pod CIDR"
        );
        assert_ne!(
            ip,
            Ipv4Addr::new(10, 244, 0, 1),
            "the bridge keeps the first address"
        );
        let st = running.status.clone().unwrap();
        assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(condition(&running, "PodScheduled").as_deref(), Some("True"));

        let resolv = exec(
            ep,
            "web-0",
            &["cat", "/etc/resolv.conf"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(resolv.protocol, "v5.channel.k8s.io");
        assert_eq!(
            resolv.stdout,
            "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(resolv.status["status"], "Success");
        let hosts = exec(
            ep,
            "web-0",
            &["cat", "/etc/hosts"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert!(
            hosts
                .stdout
                .starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
            "{}",
            hosts.stdout
        );
        assert!(
            hosts.stdout.contains(&format!(
                "{ip}\tweb-0.web.default.svc.cluster.local\tweb-0\n"
            )),
            "{}",
            hosts.stdout
        );
        assert!(
            hosts
                .stdout
                .ends_with("# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\n")
        );
        let hostname = exec(
            ep,
            "web-0",
            &["cat", "/proc/sys/kernel/hostname"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(hostname.stdout, "web-0\n");
        // The address really is on the pod's eth0, and the default route is the bridge.
        let addr = exec(
            ep,
            "web-0",
            &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
            None,
            "v4.channel.k8s.io",
        )
        .await;
        assert!(
            addr.stdout.contains(&format!("inet {ip}/24")),
            "{}",
            addr.stdout
        );
        let route = exec(
            ep,
            "web-0",
            &["ip", "route", "show", "default"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert!(
            route.stdout.starts_with("default via 10.244.0.1 dev eth0"),
            "{}",
            route.stdout
        );
        // The node can reach the pod over the bridge.
        let ping = std::process::Command::new("ip")
            .args(["route", "get", &ip.to_string()])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&ping.stdout).contains("dev mkbr0"));
        // Service-account files and the API's address in the environment.
        let ns = exec(
            ep,
            "web-0",
            &[
                "cat",
                "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
            ],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(ns.stdout, "default");
        let ca = exec(
            ep,
            "web-0",
            &[
                "cat",
                "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            ],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert!(
            ca.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
            "{}",
            ca.stdout
        );
        // The token is the pod's own: a JWT of default/default bound to this pod, never the
        // admin token the kubelet holds, and the API server takes it as that account.
        let token = exec(
            ep,
            "web-0",
            &["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"],
            None,
            "v5.channel.k8s.io",
        )
        .await
        .stdout;
        assert_ne!(token, lab.cp.state.token.clone().unwrap());
        let payload = token.split('.').nth(1).expect("a JWT");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:default:default");
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web-0");
        assert_eq!(
            claims["kubernetes.io"]["pod"]["uid"],
            json!(running.metadata.uid)
        );
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            3607
        );
        let user =
            minikind_apiserver::auth::authenticate(&lab.cp.state, &format!("Bearer {token}"))
                .expect("the API server accepts the pod's token");
        assert_eq!(user.name, "system:serviceaccount:default:default");
        assert!(!user.is_master());
        let env = exec(
            ep,
            "web-0",
            &[
                "sh",
                "-c",
                "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $HOSTNAME",
            ],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(env.stdout, "10.96.0.1:443 web-0\n");

        // automountServiceAccountToken: false on the pod, or on its service account: no token.
        let mut nt = pod("no-token", &["sleep", "3600"]);
        nt["spec"]["automountServiceAccountToken"] = json!(false);
        lab.create(nt).await;
        lab.wait_running("no-token").await;
        let probe = [
            "sh",
            "-c",
            "test -e /var/run/secrets/kubernetes.io/serviceaccount/token && echo present || echo absent",
        ];
        let out = exec(ep, "no-token", &probe, None, "v5.channel.k8s.io").await;
        assert_eq!(out.stdout, "absent\n");

        // dnsPolicy Default: the node's file; None: only dnsConfig.
        let mut d = pod("dns-default", &["sleep", "3600"]);
        d["spec"]["dnsPolicy"] = json!("Default");
        lab.create(d).await;
        let mut n = pod("dns-none", &["sleep", "3600"]);
        n["spec"]["dnsPolicy"] = json!("None");
        n["spec"]["dnsConfig"] = json!({"nameservers": ["192.0.2.53"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]});
        lab.create(n).await;
        lab.wait_running("dns-default").await;
        lab.wait_running("dns-none").await;
        let d = exec(
            ep,
            "dns-default",
            &["cat", "/etc/resolv.conf"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(
            d.stdout,
            "search corp.example\nnameserver 172.18.0.1\noptions edns0 ndots:0\n"
        );
        let n = exec(
            ep,
            "dns-none",
            &["cat", "/etc/resolv.conf"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(
            n.stdout,
            "search a.example\nnameserver 192.0.2.53\noptions ndots:2\n"
        );
        lab.shutdown().await;
    });
}

#[test]
fn a_crashing_container_shows_crash_loop_back_off_with_restarts_rising() {
    isolated(|| async {
        let lab = Lab::start().await;
        lab.create(pod("crasher", &["sh", "-c", "echo boom; exit 3"]))
            .await;
        let p = lab
            .wait_pod("crasher", 20, "CrashLoopBackOff with 2 restarts", |p| {
                let Some(cs) = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                else {
                    return false;
                };
                let c = &cs[0];
                c.restart_count >= 2
                    && c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
            .await;
        let c = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert!(
            waiting
                .message
                .as_deref()
                .unwrap_or("")
                .starts_with("back-off "),
            "{waiting:?}"
        );
        assert!(
            waiting
                .message
                .as_deref()
                .unwrap()
                .contains("restarting failed container=main pod=crasher_default(")
        );
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
        assert!(!c.ready);
        // The pod stays Running (restartPolicy Always), not Ready.
        assert_eq!(phase(&p), "Running");
        assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
        // The count keeps rising.
        let before = c.restart_count;
        lab.wait_pod("crasher", 20, "more restarts", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| cs[0].restart_count > before)
        })
        .await;
        // The previous run's log is kept.
        let ep = lab.endpoint().await;
        let (code, body) = http_get(ep, "/containerLogs/default/crasher/main?previous=true").await;
        assert_eq!((code, body.as_str()), (200, "boom\n"));

        // The events `kubectl describe` shows.
        let events: kube::Api<k8s_openapi::api::core::v1::Event> =
            kube::Api::namespaced(lab.client.clone(), "default");
        let reasons = eventually(10, "Started and BackOff events", || {
            let events = events.clone();
            async move {
                let list = events.list(&Default::default()).await.ok()?.items;
                let mine: Vec<_> = list
                    .into_iter()
                    .filter(|e| e.involved_object.name.as_deref() == Some("crasher"))
                    .collect();
                let has = |r: &str| mine.iter().any(|e| e.reason.as_deref() == Some(r));
                (has("Started") && has("BackOff")).then_some(mine)
            }
        })
        .await;
        let started = reasons
            .iter()
            .find(|e| e.reason.as_deref() == Some("Started"))
            .unwrap();
        assert_eq!(started.message.as_deref(), Some("Started container main"));
        assert_eq!(
            started.involved_object.field_path.as_deref(),
            Some("spec.containers{main}")
        );
        assert_eq!(started.type_.as_deref(), Some("Normal"));
        let backoff = reasons
            .iter()
            .find(|e| e.reason.as_deref() == Some("BackOff"))
            .unwrap();
        assert_eq!(backoff.type_.as_deref(), Some("Warning"));
        assert!(
            backoff
                .message
                .as_deref()
                .unwrap()
                .starts_with("Back-off restarting failed container main in pod crasher_default(")
        );

        // restartPolicy Never: one run, then Failed; OnFailure with success: Succeeded.
        let mut never = pod("once", &["sh", "-c", "exit 4"]);
        never["spec"]["restartPolicy"] = json!("Never");
        lab.create(never).await;
        let p = lab
            .wait_pod("once", 20, "Failed", |p| phase(p) == "Failed")
            .await;
        let c = &p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(c.restart_count, 0);
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            4
        );
        let mut ok = pod("done", &["true"]);
        ok["spec"]["restartPolicy"] = json!("OnFailure");
        lab.create(ok).await;
        lab.wait_pod("done", 20, "Succeeded", |p| phase(p) == "Succeeded")
            .await;
        // A command that does not exist is a StartError, also backed off.
        lab.create(pod("missing", &["no-such-program-anywhere"]))
            .await;
        let p = lab
            .wait_pod("missing", 20, "StartError", |p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| {
                        cs[0]
                            .last_state
                            .as_ref()
                            .and_then(|l| l.terminated.as_ref())
                            .and_then(|t| t.reason.as_deref())
                            == Some("StartError")
                    })
            })
            .await;
        let t = p.status.unwrap().container_statuses.unwrap()[0]
            .last_state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(t.exit_code, 128);
        assert!(
            t.message
                .unwrap()
                .contains("executable file not found in $PATH")
        );
        lab.shutdown().await;
    });
}

#[test]
fn a_readiness_probe_gates_ready() {
    isolated(|| async {
        let lab = Lab::start().await;
        // The flag lives on the node; the container sees it through a hostPath volume.
        let flag = lab.dir.path().join("flags/ready-flag");
        std::fs::create_dir_all(flag.parent().unwrap()).unwrap();
        let mut p = pod("probed", &["sleep", "3600"]);
        p["spec"]["volumes"] =
            json!([{"name": "flags", "hostPath": {"path": flag.parent().unwrap()}}]);
        p["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "flags", "mountPath": "/flags"}]);
        p["spec"]["containers"][0]["readinessProbe"] = json!({
            "exec": {"command": ["cat", "/flags/ready-flag"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        });
        p["spec"]["containers"][0]["livenessProbe"] = json!({
            "tcpSocket": {"port": 1},
            "initialDelaySeconds": 3600,
        });
        lab.create(p).await;
        lab.wait_running("probed").await;
        // Running but not Ready while the probe fails.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let p = lab.pods().get("probed").await.unwrap();
        assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
        assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("False"));
        std::fs::write(&flag, "ok").unwrap();
        lab.wait_pod("probed", 10, "Ready", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
        std::fs::remove_file(&flag).unwrap();
        lab.wait_pod("probed", 10, "not Ready again", |p| {
            condition(p, "Ready").as_deref() == Some("False")
        })
        .await;

        // httpGet: from the node, here to a server on the node's bridge address that turns
        // healthy when told to.
        let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("10.244.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let h2 = healthy.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let ok = h2.load(std::sync::atomic::Ordering::SeqCst)
                    && req.starts_with("GET /healthz HTTP/1.1")
                    && req.contains("User-Agent: kube-probe/");
                let line = if ok {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {line}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let mut h = pod("http", &["sleep", "3600"]);
        h["spec"]["containers"][0]["ports"] = json!([{"name": "web", "containerPort": port}]);
        h["spec"]["containers"][0]["readinessProbe"] = json!({"httpGet": {"host": "10.244.0.1", "port": "web", "path": "/healthz"}, "periodSeconds": 1});
        lab.create(h).await;
        lab.wait_running("http").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let p = lab.pods().get("http").await.unwrap();
        assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
        healthy.store(true, std::sync::atomic::Ordering::SeqCst);
        lab.wait_pod("http", 10, "Ready by httpGet", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;

        // tcpSocket: Ready once something accepts on the port (here on the node's bridge
        // address, bound only after a few failed probes).
        let port = {
            let l = std::net::TcpListener::bind("10.244.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut t = pod("tcp", &["sleep", "3600"]);
        t["spec"]["containers"][0]["readinessProbe"] =
            json!({"tcpSocket": {"host": "10.244.0.1", "port": port}, "periodSeconds": 1});
        lab.create(t).await;
        lab.wait_running("tcp").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let p = lab.pods().get("tcp").await.unwrap();
        assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
        let _listener = tokio::net::TcpListener::bind(("10.244.0.1", port))
            .await
            .unwrap();
        lab.wait_pod("tcp", 10, "Ready by tcpSocket", |p| {
            condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
        lab.shutdown().await;
    });
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    isolated(|| async {
        let lab = Lab::start().await;
        let mut p = pod("unhealthy", &["sleep", "3600"]);
        p["spec"]["containers"][0]["livenessProbe"] = json!({
            "exec": {"command": ["false"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
        });
        lab.create(p).await;
        let p = lab
            .wait_pod("unhealthy", 20, "a restart by the liveness probe", |p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| cs[0].restart_count >= 1)
            })
            .await;
        let last = p.status.unwrap().container_statuses.unwrap()[0]
            .last_state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert!(
            last.message
                .unwrap_or_default()
                .contains("failed liveness probe")
        );
        lab.shutdown().await;
    });
}

#[test]
fn deleting_a_pod_leaves_no_netns_veth_process_or_files() {
    isolated(|| async {
        let lab = Lab::start().await;
        let marker = "3600.4242";
        lab.create(pod("doomed", &["sleep", marker])).await;
        let p = lab.wait_running("doomed").await;
        let uid = p.metadata.uid.clone().unwrap();
        let netns = format!("mk-{uid}");
        assert!(std::path::Path::new("/run/netns").join(&netns).exists());
        let veths: Vec<String> = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("veth"))
            .collect();
        assert_eq!(veths.len(), 1, "{veths:?}");
        assert_eq!(processes_with(marker).len(), 1);
        let pod_dir = lab.root().join("pods").join(&uid);
        assert!(pod_dir.join("resolv.conf").exists());
        let ip = pod_ip(&p).unwrap();

        lab.pods()
            .delete("doomed", &DeleteParams::default())
            .await
            .unwrap();
        lab.wait_gone("doomed", 15).await;
        assert!(
            !std::path::Path::new("/run/netns").join(&netns).exists(),
            "netns left"
        );
        assert!(
            !std::path::Path::new("/sys/class/net")
                .join(&veths[0])
                .exists(),
            "veth left"
        );
        assert!(processes_with(marker).is_empty(), "process left");
        assert!(!pod_dir.exists(), "pod files left");
        let ipam = std::fs::read_to_string(lab.root().join("ipam.json")).unwrap();
        assert!(!ipam.contains(&uid), "IP {ip} still allocated: {ipam}");
        // A container that ignores SIGTERM is killed after the grace period (the control
        // plane may drop the object when the grace period ends: watch the processes).
        lab.create(pod(
            "stubborn",
            &[
                "sh",
                "-c",
                "trap '' TERM; sleep 3600.5151 & wait; sleep 3600.5151",
            ],
        ))
        .await;
        lab.wait_running("stubborn").await;
        eventually(10, "the stubborn pod's sleep", || async {
            // The shell and its background sleep.
            (processes_with("3600.5151").len() >= 2).then_some(())
        })
        .await;
        let started = std::time::Instant::now();
        lab.pods()
            .delete("stubborn", &DeleteParams::default().grace_period(1))
            .await
            .unwrap();
        eventually(10, "the stubborn pod's processes gone", || async {
            processes_with("3600.5151").is_empty().then_some(())
        })
        .await;
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "grace period honoured: {:?}",
            started.elapsed()
        );
        lab.wait_gone("stubborn", 15).await;
        lab.shutdown().await;
    });
}

#[test]
fn a_kubelet_restart_keeps_pod_ips_and_cleans_up_pods_deleted_meanwhile() {
    isolated(|| async {
        let mut lab = Lab::start().await;
        lab.create(pod("keep-a", &["sleep", "3600"])).await;
        lab.create(pod("keep-b", &["sleep", "3600"])).await;
        lab.create(pod("gone", &["sleep", "3600"])).await;
        let a = pod_ip(&lab.wait_running("keep-a").await).unwrap();
        let b = pod_ip(&lab.wait_running("keep-b").await).unwrap();
        let gone = lab.wait_running("gone").await;
        let gone_uid = gone.metadata.uid.clone().unwrap();
        let gone_ip = pod_ip(&gone).unwrap();

        lab.stop_kubelet().await;
        // Deleted while no kubelet runs: the API marks it; the next kubelet finishes it.
        lab.pods()
            .delete("gone", &DeleteParams::default())
            .await
            .unwrap();
        lab.start_kubelet().await;
        lab.wait_gone("gone", 15).await;
        assert!(
            !std::path::Path::new("/run/netns")
                .join(format!("mk-{gone_uid}"))
                .exists()
        );

        let ep = lab.endpoint().await;
        for (name, ip) in [("keep-a", a), ("keep-b", b)] {
            let p = lab.wait_running(name).await;
            assert_eq!(pod_ip(&p), Some(ip), "{name} keeps its address");
            // The restart stopped the container and the new kubelet started it again: the
            // count rises. The pod may still show the old kubelet's status for a moment: wait for the new.
            let p = lab
                .wait_pod(name, 15, "the restart counted", |p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|cs| cs[0].restart_count >= 1)
                })
                .await;
            let st = &p
                .status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()[0];
            assert_eq!(st.restart_count, 1, "{name}: {st:?}");
            // The last state is the run the restart ended: its own termination where the old
            // kubelet saw it, else Unknown/255. `sleep` is PID 1 of its container and has no
            // SIGTERM handler, so the kernel ignores SIGTERM and the grace period ends in
            // SIGKILL, as with containerd.
            let last = st.last_state.as_ref().and_then(|l| l.terminated.as_ref());
            assert!(
                last.is_some_and(
                    |t| (t.reason.as_deref(), t.exit_code) == (Some("Unknown"), 255)
                        || t.signal == Some(9)
                ),
                "{name}: {st:?}"
            );
            let out = eventually(10, "exec after the restart", || async {
                let o = exec(
                    ep,
                    name,
                    &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
                    None,
                    "v5.channel.k8s.io",
                )
                .await;
                (o.status["status"] == "Success").then_some(o)
            })
            .await;
            assert!(
                out.stdout.contains(&format!("inet {ip}/24")),
                "{}",
                out.stdout
            );
        }
        lab.create(pod("new", &["sleep", "3600"])).await;
        let n = pod_ip(&lab.wait_running("new").await).unwrap();
        assert!(n != a && n != b, "a new pod gets a fresh address, not {n}");
        assert_ne!(n, gone_ip, "a just-released address is not reused at once");
        lab.shutdown().await;
    });
}

#[test]
fn dns_config_over_the_limits_is_trimmed_with_a_warning_event() {
    use k8s_openapi::api::core::v1::Event;
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        let mut p = pod("many-servers", &["sleep", "3600"]);
        p["spec"]["dnsConfig"] = json!({"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3"]});
        lab.create(p).await;
        lab.wait_running("many-servers").await;
        let resolv = exec(
            ep,
            "many-servers",
            &["cat", "/etc/resolv.conf"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert!(
            resolv
                .stdout
                .contains("nameserver 10.96.0.10\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"),
            "{}",
            resolv.stdout
        );
        assert!(!resolv.stdout.contains("192.0.2.3"));
        let events: kube::Api<Event> = kube::Api::namespaced(lab.client.clone(), "default");
        let ev = eventually(10, "the DNSConfigForming event", || {
            let events = events.clone();
            async move {
                events
                    .list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("DNSConfigForming"))
            }
        })
        .await;
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert_eq!(ev.involved_object.name.as_deref(), Some("many-servers"));
        assert_eq!(
            ev.message.as_deref(),
            Some(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.96.0.10 192.0.2.1 192.0.2.2"
            )
        );
        lab.shutdown().await;
    });
}

#[test]
fn init_containers_run_first_and_share_volumes() {
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        let mut p = pod("with-init", &["sh", "-c", "cat /work/greeting; sleep 3600"]);
        p["spec"]["volumes"] = json!([{"name": "work", "emptyDir": {}}]);
        p["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "work", "mountPath": "/work"}]);
        p["spec"]["initContainers"] = json!([
            {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo hello > /work/greeting"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
            {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo world >> /work/greeting"],
             "volumeMounts": [{"name": "work", "mountPath": "/work"}]},
        ]);
        lab.create(p).await;
        let running = lab.wait_running("with-init").await;
        assert_eq!(condition(&running, "Initialized").as_deref(), Some("True"));
        let inits = running.status.unwrap().init_container_statuses.unwrap();
        assert_eq!(inits.len(), 2);
        for c in &inits {
            let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
            assert!(c.ready);
        }
        let (_, logs) = eventually(10, "the app container's output", || async {
            let r = http_get(ep, "/containerLogs/default/with-init/main").await;
            (!r.1.is_empty()).then_some(r)
        })
        .await;
        assert_eq!(logs, "hello\nworld\n");

        // A failing init container with restartPolicy Never fails the pod; the app never runs.
        let mut f = pod("init-fails", &["sh", "-c", "echo should not run"]);
        f["spec"]["restartPolicy"] = json!("Never");
        f["spec"]["initContainers"] =
            json!([{"name": "check", "image": "busybox", "command": ["sh", "-c", "exit 9"]}]);
        lab.create(f).await;
        let failed = lab
            .wait_pod("init-fails", 20, "Failed", |p| phase(p) == "Failed")
            .await;
        assert_eq!(condition(&failed, "Initialized").as_deref(), Some("False"));
        let st = failed.status.unwrap();
        let app = &st.container_statuses.unwrap()[0];
        assert!(app.state.as_ref().unwrap().waiting.is_some(), "{app:?}");
        lab.shutdown().await;
    });
}

#[test]
fn a_finished_pod_is_not_run_again_by_a_restarted_kubelet() {
    isolated(|| async {
        let mut lab = Lab::start().await;
        let mut p = pod("finished", &["sh", "-c", "echo ran once"]);
        p["spec"]["restartPolicy"] = json!("Never");
        lab.create(p).await;
        lab.wait_pod("finished", 20, "Succeeded", |p| phase(p) == "Succeeded")
            .await;
        lab.stop_kubelet().await;
        lab.start_kubelet().await;
        let ep = lab.endpoint().await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let p = lab.pods().get("finished").await.unwrap();
        assert_eq!(phase(&p), "Succeeded");
        let (code, logs) = http_get(ep, "/containerLogs/default/finished/main").await;
        assert_eq!((code, logs.as_str()), (200, "ran once\n"));
        lab.pods()
            .delete("finished", &DeleteParams::default())
            .await
            .unwrap();
        lab.wait_gone("finished", 15).await;
        lab.shutdown().await;
    });
}

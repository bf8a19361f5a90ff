//! The kubelet endpoint: container logs (tail, previous, follow) and exec over websocket
//! (v5 and v4 channel protocols, stdin, exit codes carried in the status channel).

mod kubelet_common;

use std::time::Duration;

use kubelet_common::*;
use serde_json::json;

#[test]
fn logs_through_the_kubelet_endpoint() {
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        lab.create(pod(
            "talker",
            &["sh", "-c", "echo one; echo two >&2; echo three; sleep 3600"],
        ))
        .await;
        lab.wait_running("talker").await;
        let (code, body) = eventually(10, "three log lines", || async {
            let r = http_get(ep, "/containerLogs/default/talker/main").await;
            (r.1.lines().count() == 3).then_some(r)
        })
        .await;
        assert_eq!(code, 200);
        let mut lines: Vec<&str> = body.lines().collect();
        lines.sort();
        assert_eq!(lines, vec!["one", "three", "two"]);
        let (_, tail) = http_get(ep, "/containerLogs/default/talker/main?tailLines=1").await;
        assert_eq!(tail.lines().count(), 1);
        let (_, ts) = http_get(
            ep,
            "/containerLogs/default/talker/main?timestamps=true&tailLines=1",
        )
        .await;
        assert!(
            ts.split(' ')
                .next()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok(),
            "{ts}"
        );
        let (code, msg) = http_get(ep, "/containerLogs/default/talker/main?previous=true").await;
        assert_eq!(code, 400);
        assert!(msg.contains("previous terminated container"), "{msg}");
        let (code, _) = http_get(ep, "/containerLogs/default/nobody/main").await;
        assert_eq!(code, 404);
        let (code, _) = http_get(ep, "/containerLogs/default/talker/main?tailLines=x").await;
        assert_eq!(code, 400);

        // follow: what is there, then lines as they come, until the container ends.
        lab.create(pod(
            "ticker",
            &[
                "sh",
                "-c",
                "for i in 1 2 3; do echo tick $i; sleep 0.3; done",
            ],
        ))
        .await;
        lab.wait_running("ticker").await;
        let (code, body) = http_get(ep, "/containerLogs/default/ticker/main?follow=true").await;
        assert_eq!(code, 200);
        assert!(body.starts_with("tick 1\ntick 2\ntick 3\n"), "{body:?}");
        lab.shutdown().await;
    });
}

#[test]
fn exec_through_the_kubelet_endpoint_carries_streams_and_exit_codes() {
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        let mut p = pod("box", &["sleep", "3600"]);
        p["spec"]["containers"][0]["workingDir"] = json!("/tmp");
        p["spec"]["containers"][0]["env"] =
            json!([{"name": "GREETING", "value": "hi from $(HOSTNAME)"}]);
        lab.create(p).await;
        lab.wait_running("box").await;

        let ok = exec(
            ep,
            "box",
            &["sh", "-c", "echo $GREETING; pwd"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(ok.stdout, "hi from box\n/tmp\n");
        assert_eq!(ok.status, json!({"metadata": {}, "status": "Success"}));

        let fail = exec(
            ep,
            "box",
            &["sh", "-c", "echo out; echo err >&2; exit 7"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(
            (fail.stdout.as_str(), fail.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(fail.status["status"], "Failure");
        assert_eq!(fail.status["reason"], "NonZeroExitCode");
        assert_eq!(
            fail.status["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "7"})
        );

        // stdin, closed through v5's close channel.
        let cat = exec(
            ep,
            "box",
            &["cat"],
            Some(b"piped through\n"),
            "v5.channel.k8s.io",
        )
        .await;
        assert_eq!(cat.stdout, "piped through\n");
        assert_eq!(cat.status["status"], "Success");

        // v4 only.
        let v4 = exec(
            ep,
            "box",
            &["sh", "-c", "exit 2"],
            None,
            "v4.channel.k8s.io",
        )
        .await;
        assert_eq!(v4.protocol, "v4.channel.k8s.io");
        assert_eq!(v4.status["details"]["causes"][0]["message"], "2");

        // A program that is not there.
        let missing = exec(ep, "box", &["no-such-program"], None, "v5.channel.k8s.io").await;
        assert_eq!(missing.status["status"], "Failure");
        assert!(
            missing.status["message"]
                .as_str()
                .unwrap()
                .contains("executable file not found")
        );

        // With a terminal: one stream, the terminal's line endings, the exit code kept.
        let tty = exec_with(
            ep,
            "box",
            &["sh", "-c", "tty; echo err >&2; exit 3"],
            None,
            "v5.channel.k8s.io",
            true,
        )
        .await;
        assert!(tty.stdout.starts_with("/dev/pts/"), "{tty:?}");
        assert!(tty.stdout.ends_with("\r\nerr\r\n"), "{tty:?}");
        assert_eq!(tty.stderr, "");
        assert_eq!(tty.status["details"]["causes"][0]["message"], "3");

        // Plain HTTP without an upgrade is refused with a reason.
        let (code, msg) = http_get(ep, "/exec/default/box/main?command=true").await;
        assert_eq!(code, 400);
        assert!(msg.contains("websocket"), "{msg}");
        let (code, _) = http_get(ep, "/exec/default/box/nope?command=true").await;
        assert_eq!(code, 400);
        tokio::time::sleep(Duration::from_millis(10)).await;
        lab.shutdown().await;
    });
}

#[test]
fn kube_rs_logs_and_exec_go_through_the_api_server_to_the_kubelet() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Api;
    use kube::api::{AttachParams, LogParams};
    use tokio::io::AsyncReadExt;
    isolated(|| async {
        let lab = Lab::start().await;
        lab.create(pod(
            "proxied",
            &["sh", "-c", "echo via the API; sleep 3600"],
        ))
        .await;
        lab.wait_running("proxied").await;
        let pods: Api<Pod> = Api::namespaced(lab.client.clone(), "default");
        let logs = eventually(10, "the log through the API server", || {
            let pods = pods.clone();
            async move {
                let l = pods.logs("proxied", &LogParams::default()).await.ok()?;
                (!l.is_empty()).then_some(l)
            }
        })
        .await;
        assert_eq!(logs, "via the API\n");

        let mut proc = pods
            .exec(
                "proxied",
                vec!["sh", "-c", "echo $HOSTNAME; exit 5"],
                &AttachParams::default().stderr(false),
            )
            .await
            .expect("exec through the API server");
        let mut out = String::new();
        proc.stdout()
            .expect("stdout")
            .read_to_string(&mut out)
            .await
            .unwrap();
        let status = proc.take_status().expect("status").await.expect("a status");
        assert_eq!(out, "proxied\n");
        assert_eq!(status.status.as_deref(), Some("Failure"));
        assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
        let cause = &status.details.unwrap().causes.unwrap()[0];
        assert_eq!(
            (cause.reason.as_deref(), cause.message.as_deref()),
            (Some("ExitCode"), Some("5"))
        );
        lab.shutdown().await;
    });
}

/// The endpoint answers only the API server's kubelet client identity, as a kubelet with
/// `--client-ca-file` and webhook authorization does: no certificate → 401, a certificate of
/// another CA → the handshake fails, a certificate of the cluster CA for another user → 403,
/// the API server's certificate (or `system:masters`) → served. `/healthz` answers anyone with
/// `ok` and nothing else. The serving certificate is the cluster CA's for the node's IP (every
/// client here verifies it).
#[test]
fn the_kubelet_endpoint_serves_only_the_api_server() {
    use minikind_control_plane::pki;
    isolated(|| async {
        let lab = Lab::start().await;
        let ep = lab.endpoint().await;
        lab.create(pod("quiet", &["sh", "-c", "echo secret; sleep 3600"]))
            .await;
        lab.wait_running("quiet").await;
        let api_data = lab.dir.path().join("api");
        let ca = pki::Ca::load(&api_data).unwrap();
        let paths = [
            "/pods",
            "/containerLogs/default/quiet/main",
            "/exec/default/quiet/main?command=id&stdout=true",
            "/no-such-path",
        ];

        // No client certificate: 401 everywhere but /healthz.
        let anonymous = tls_as(&api_data, None);
        for path in paths {
            let (code, body) = http_get_with(ep, path, anonymous.clone()).await.unwrap();
            assert_eq!((code, body.as_str()), (401, "Unauthorized\n"), "{path}");
        }
        let (code, body) = http_get_with(ep, "/healthz", anonymous.clone())
            .await
            .unwrap();
        assert_eq!((code, body.as_str()), (200, "ok"));

        // A certificate of another CA, even with the API server's name: refused in the
        // handshake, no HTTP answer at all.
        let other_dir = lab.dir.path().join("other-ca");
        pki::load_or_create(&other_dir, &[]).unwrap();
        let impostor = pki::Ca::load(&other_dir)
            .unwrap()
            .client(pki::KUBELET_CLIENT_CN, &[pki::KUBELET_CLIENT_ORG])
            .unwrap();
        for path in ["/pods", "/healthz"] {
            let r = http_get_with(ep, path, tls_as(&api_data, Some(&impostor))).await;
            assert!(r.is_err(), "{path}: {r:?}");
        }

        // The cluster CA's certificate for another user (a node's): 403, the user named.
        let node = ca.client("system:node:other", &["system:nodes"]).unwrap();
        let as_node = tls_as(&api_data, Some(&node));
        for path in paths {
            let (code, body) = http_get_with(ep, path, as_node.clone()).await.unwrap();
            assert_eq!(code, 403, "{path}: {body}");
            assert_eq!(
                body,
                "Forbidden (user=system:node:other, verb=get, resource=nodes, subresource=proxy)\n"
            );
        }
        let (code, _) = http_get_with(ep, "/healthz", as_node).await.unwrap();
        assert_eq!(code, 200);

        // The API server's kubelet client certificate, and a system:masters one: served.
        let (code, body) = http_get(ep, "/pods").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"quiet\""), "{body}");
        let (code, body) = eventually(10, "the log line", || async {
            let r = http_get(ep, "/containerLogs/default/quiet/main").await;
            (!r.1.is_empty()).then_some(r)
        })
        .await;
        assert_eq!((code, body.as_str()), (200, "secret\n"));
        let admin = ca.client("someone", &["system:masters"]).unwrap();
        let (code, _) = http_get_with(ep, "/pods", tls_as(&api_data, Some(&admin)))
            .await
            .unwrap();
        assert_eq!(code, 200);

        // Plain HTTP gets nothing from it.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(ep).await.unwrap();
            s.write_all(b"GET /pods HTTP/1.0\r\n\r\n").await.unwrap();
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
            assert!(!String::from_utf8_lossy(&buf).contains("quiet"));
        }
        lab.shutdown().await;
    });
}

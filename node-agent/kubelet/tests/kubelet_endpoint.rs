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

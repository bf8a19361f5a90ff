//! Service accounts and RBAC through a real kubectl against the in-process API server:
//! `kubectl create token`, `auth whoami`, `auth can-i` (and `--list`), a service account
//! forbidden until a RoleBinding grants it, tokens refused once their service account or bound
//! pod is gone, and pods refused for a service account that does not exist.

mod control_plane_common;
use base64::Engine;
use control_plane_common::{Kubectl, eventually, kubectl, server};
use serde_json::Value;

/// The claims of a JWT (its payload, unverified: the server verifies).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn service_account_tokens_and_rbac_through_kubectl() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);

    // The admin is kind's kubernetes-admin in system:masters, allowed everything.
    let me: Value =
        serde_json::from_str(&k.ok(&["auth", "whoami", "-o", "json"], None).await).unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], "kubernetes-admin");
    assert!(
        me["status"]["userInfo"]["groups"]
            .to_string()
            .contains("system:masters")
    );
    assert_eq!(k.ok(&["auth", "can-i", "*", "*"], None).await.trim(), "yes");

    // Every namespace gets its default ServiceAccount from the controller.
    k.ok(&["create", "namespace", "app"], None).await;
    eventually(20, "app/default ServiceAccount", || {
        let k = &k;
        async move {
            let (ok, _, _) = k.run(&["get", "sa", "default", "-n", "app"], None).await;
            ok.then_some(())
        }
    })
    .await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        k.ok(&["get", "serviceaccount", "default", "-n", ns], None)
            .await;
    }

    k.ok(&["create", "serviceaccount", "reader", "-n", "app"], None)
        .await;
    let token = k
        .ok(
            &[
                "create",
                "token",
                "reader",
                "-n",
                "app",
                "--duration",
                "20m",
            ],
            None,
        )
        .await
        .trim()
        .to_string();
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:app:reader");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(c["aud"][0], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1200
    );
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "reader");
    assert_ne!(token, cp.state.token.clone().unwrap());

    let as_sa = |args: &[&str]| {
        let mut v = vec!["--token", token.as_str()];
        v.extend_from_slice(args);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run_sa = |args: &[&str]| {
        let a = as_sa(args);
        let k = &k;
        async move {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            k.run(&refs, None).await
        }
    };

    let (ok, out, _) = run_sa(&["auth", "whoami", "-o", "json"]).await;
    assert!(ok, "{out}");
    let me: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        me["status"]["userInfo"]["username"],
        "system:serviceaccount:app:reader"
    );
    let groups = me["status"]["userInfo"]["groups"].to_string();
    for g in [
        "system:serviceaccounts",
        "system:serviceaccounts:app",
        "system:authenticated",
    ] {
        assert!(groups.contains(g), "{groups}");
    }

    // Without a binding: 403 with kube-apiserver's message, and can-i says no.
    let (ok, _, err) = run_sa(&["get", "configmaps", "-n", "app"]).await;
    assert!(!ok);
    assert!(
        err.contains(
            "Error from server (Forbidden): configmaps is forbidden: User \
             \"system:serviceaccount:app:reader\" cannot list resource \"configmaps\" in API \
             group \"\" in the namespace \"app\""
        ),
        "{err}"
    );
    let (ok, out, _) = run_sa(&["auth", "can-i", "list", "configmaps", "-n", "app"]).await;
    assert!(!ok);
    assert_eq!(out.trim(), "no");

    // A Role and RoleBinding grant it, in that namespace only.
    k.ok(
        &[
            "create",
            "role",
            "cm-reader",
            "--verb=get,list",
            "--resource=configmaps",
            "-n",
            "app",
        ],
        None,
    )
    .await;
    k.ok(
        &[
            "create",
            "rolebinding",
            "cm-reader",
            "--role=cm-reader",
            "--serviceaccount=app:reader",
            "-n",
            "app",
        ],
        None,
    )
    .await;
    let (ok, out, err) = run_sa(&["get", "configmaps", "-n", "app"]).await;
    assert!(ok, "{out}{err}");
    let (_, out, _) = run_sa(&["auth", "can-i", "list", "configmaps", "-n", "app"]).await;
    assert_eq!(out.trim(), "yes");
    let (_, out, _) = run_sa(&["auth", "can-i", "list", "configmaps", "-n", "kube-system"]).await;
    assert_eq!(out.trim(), "no");
    let (_, out, _) = run_sa(&["auth", "can-i", "delete", "configmaps", "-n", "app"]).await;
    assert_eq!(out.trim(), "no");
    let (ok, out, err) = run_sa(&["auth", "can-i", "--list", "-n", "app"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("configmaps ") && l.contains("[get list]")),
        "{out}"
    );
    assert!(
        out.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{out}"
    );
    let (ok, _, err) = run_sa(&["get", "configmaps", "-n", "kube-system"]).await;
    assert!(
        !ok && err.contains("in the namespace \"kube-system\""),
        "{err}"
    );

    // A pod for a ServiceAccount that does not exist is refused; `default` is the default.
    let (ok, _, err) = k
        .run(
            &[
                "run",
                "p",
                "-n",
                "app",
                "--image=busybox",
                "--restart=Never",
                "--overrides={\"spec\":{\"serviceAccountName\":\"ghost\"}}",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains(
            "error looking up service account app/ghost: serviceaccount \"ghost\" not found"
        ),
        "{err}"
    );
    k.ok(
        &[
            "run",
            "p",
            "-n",
            "app",
            "--image=busybox",
            "--restart=Never",
        ],
        None,
    )
    .await;
    let sa = k
        .ok(
            &[
                "get",
                "pod",
                "p",
                "-n",
                "app",
                "-o",
                "jsonpath={.spec.serviceAccountName}",
            ],
            None,
        )
        .await;
    assert_eq!(sa, "default");

    // A token bound to the pod dies with the pod.
    let bound = k
        .ok(
            &[
                "create",
                "token",
                "reader",
                "-n",
                "app",
                "--bound-object-kind",
                "Pod",
                "--bound-object-name",
                "p",
            ],
            None,
        )
        .await
        .trim()
        .to_string();
    assert_eq!(claims(&bound)["kubernetes.io"]["pod"]["name"], "p");
    let with = |t: &str, args: &[&str]| {
        let mut v: Vec<String> = vec!["--token".into(), t.into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run_with = |v: Vec<String>| {
        let k = &k;
        async move {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            k.run(&refs, None).await
        }
    };
    let (ok, _, err) = run_with(with(&bound, &["get", "cm", "-n", "app"])).await;
    assert!(ok, "{err}");
    k.ok(
        &[
            "delete",
            "pod",
            "p",
            "-n",
            "app",
            "--grace-period=0",
            "--force",
        ],
        None,
    )
    .await;
    eventually(20, "the pod gone", || {
        let k = &k;
        async move {
            let (ok, _, _) = k.run(&["get", "pod", "p", "-n", "app"], None).await;
            (!ok).then_some(())
        }
    })
    .await;
    let (ok, _, err) = run_with(with(&bound, &["get", "cm", "-n", "app"])).await;
    assert!(!ok && err.contains("Unauthorized"), "{err}");

    // Deleting the ServiceAccount revokes its tokens.
    k.ok(&["delete", "serviceaccount", "reader", "-n", "app"], None)
        .await;
    let (ok, _, err) = run_sa(&["get", "configmaps", "-n", "app"]).await;
    assert!(!ok && err.contains("Unauthorized"), "{err}");

    // The RBAC kinds are listed like any other.
    let out = k.ok(&["get", "clusterroles"], None).await;
    for role in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
        "system:coredns",
    ] {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(role)),
            "{role}: {out}"
        );
    }
    let out = k
        .ok(
            &["get", "clusterrolebinding", "system:coredns", "-o", "json"],
            None,
        )
        .await;
    let b: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(b["subjects"][0]["name"], "coredns");
    assert_eq!(b["subjects"][0]["namespace"], "kube-system");
    cp.shutdown().await.unwrap();
}

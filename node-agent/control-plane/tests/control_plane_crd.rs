//! CustomResourceDefinitions through kubectl 1.37 (validation on, as a user runs it) against
//! the in-process API server: the CRD is established, its custom objects are served with
//! discovery (short names, categories), printer columns, schema defaulting, pruning and
//! validation, the status subresource, every patch kind and server-side apply, several
//! versions; deleting the CRD removes its objects; a restart serves them again.

mod control_plane_common;
use control_plane_common::{Kubectl, eventually, kubectl, server};

use serde_json::Value;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.crd.minikind.dev
spec:
  group: crd.minikind.dev
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [all, gadgets]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.size
        statusReplicasPath: .status.replicas
    selectableFields:
    - jsonPath: .spec.color
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a thing made for the tests.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size:
                type: integer
                minimum: 1
                maximum: 10
                description: How big the widget is.
              color:
                type: string
                enum: [red, blue]
                default: red
              name:
                type: string
                pattern: '^[a-z]+$'
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              ready:
                type: boolean
"#;

fn widget(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: crd.minikind.dev/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n{spec}\n"
    )
}

async fn json_of(k: &Kubectl, args: &[&str]) -> Value {
    serde_json::from_str(&k.ok(args, None).await).unwrap()
}

#[tokio::test]
async fn control_plane_crd_custom_resources_through_kubectl() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cp = server(&data).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);

    let out = k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/widgets.crd.minikind.dev created"
    );
    k.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.crd.minikind.dev",
            "--timeout=20s",
        ],
        None,
    )
    .await;
    let crd = json_of(
        &k,
        &["get", "crd", "widgets.crd.minikind.dev", "-o", "json"],
    )
    .await;
    let conds: Vec<(String, String)> = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        conds,
        [
            ("NamesAccepted".into(), "True".into()),
            ("Established".into(), "True".into())
        ]
    );
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
    assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
    assert_eq!(
        crd["metadata"]["finalizers"],
        serde_json::json!(["customresourcecleanup.apiextensions.k8s.io"])
    );
    let crds = k.ok(&["get", "crd"], None).await;
    assert!(crds.starts_with("NAME"), "{crds}");
    assert!(
        crds.lines().next().unwrap().contains("CREATED AT"),
        "{crds}"
    );
    assert!(crds.contains("widgets.crd.minikind.dev"), "{crds}");

    // Created with validation on; the default is filled from the schema.
    let out = k
        .ok(&["apply", "-f", "-"], Some(&widget("small", "  size: 2")))
        .await;
    assert_eq!(out.trim(), "widget.crd.minikind.dev/small created");
    let w = json_of(&k, &["get", "widget", "small", "-o", "json"]).await;
    assert_eq!(w["spec"]["color"], "red");
    assert_eq!(w["metadata"]["generation"], 1);
    // Short name, printer columns, the `all` category.
    let table = k.ok(&["get", "wd"], None).await;
    let head: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["NAME", "SIZE", "COLOR", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["small", "2", "red"], "{table}");
    let all = k.ok(&["get", "all"], None).await;
    assert!(all.contains("widget.crd.minikind.dev/small"), "{all}");
    let gadgets = k.ok(&["get", "gadgets", "-o", "name"], None).await;
    assert_eq!(gadgets.trim(), "widget.crd.minikind.dev/small");

    // An unknown field: kubectl's strict validation reports it, as for a built-in kind.
    let (ok, _, err) = k
        .run(
            &["apply", "-f", "-"],
            Some(&widget("odd", "  size: 2\n  bogus: 1")),
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.bogus\""),
        "{err}"
    );
    // Without validation it is pruned; preserved subtrees keep theirs.
    k.ok(
        &["apply", "--validate=false", "-f", "-"],
        Some(&widget(
            "odd",
            "  size: 2\n  bogus: 1\n  extra:\n    any: [1, 2]",
        )),
    )
    .await;
    let w = json_of(&k, &["get", "widget", "odd", "-o", "json"]).await;
    assert!(w["spec"].get("bogus").is_none(), "{w}");
    assert_eq!(w["spec"]["extra"], serde_json::json!({"any": [1, 2]}));

    // Schema validation, worded as kube-apiserver words it.
    let (ok, _, err) = k
        .run(
            &["apply", "-f", "-"],
            Some(&widget("big", "  size: 20\n  color: pink")),
        )
        .await;
    assert!(!ok);
    assert!(err.contains("The Widget \"big\" is invalid"), "{err}");
    assert!(
        err.contains(
            "spec.size: Invalid value: 20: spec.size in body should be less than or equal to 10"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\""
        ),
        "{err}"
    );
    let (ok, _, err) = k
        .run(
            &["apply", "-f", "-"],
            Some(&widget("nosize", "  color: blue")),
        )
        .await;
    assert!(!ok);
    assert!(err.contains("spec.size: Required value"), "{err}");

    // Status only through the status subresource.
    k.ok(
        &[
            "patch",
            "widget",
            "small",
            "--type=merge",
            "-p",
            r#"{"status":{"ready":true}}"#,
        ],
        None,
    )
    .await;
    let w = json_of(&k, &["get", "widget", "small", "-o", "json"]).await;
    assert!(w.get("status").is_none(), "{w}");
    k.ok(
        &[
            "patch",
            "widget",
            "small",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"ready":true}}"#,
        ],
        None,
    )
    .await;
    let w = json_of(&k, &["get", "widget", "small", "-o", "json"]).await;
    assert_eq!(w["status"]["ready"], true);
    assert_eq!(w["metadata"]["generation"], 1);

    // Strategic merge is not offered for custom resources (kubectl patch's default type).
    let (ok, _, err) = k
        .run(
            &["patch", "widget", "small", "-p", r#"{"spec":{"size":3}}"#],
            None,
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"),
        "{err}"
    );

    // Client-side apply again: kubectl sends a JSON merge patch for a custom resource.
    let out = k
        .ok(&["apply", "-f", "-"], Some(&widget("small", "  size: 4")))
        .await;
    assert_eq!(out.trim(), "widget.crd.minikind.dev/small configured");

    // The scale subresource reads and writes the CRD's replica paths.
    let out = k
        .ok(&["scale", "widget", "small", "--replicas=5"], None)
        .await;
    assert_eq!(out.trim(), "widget.crd.minikind.dev/small scaled");
    let sc = json_of(
        &k,
        &[
            "get",
            "--raw",
            "/apis/crd.minikind.dev/v1/namespaces/default/widgets/small/scale",
        ],
    )
    .await;
    assert_eq!(
        (sc["kind"].as_str(), sc["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(5))
    );
    let (ok, _, err) = k
        .run(&["scale", "widget", "small", "--replicas=50"], None)
        .await;
    assert!(
        !ok && err.contains("should be less than or equal to 10"),
        "{err}"
    );
    k.ok(&["scale", "widget", "small", "--replicas=2"], None)
        .await;

    // JSON patch and merge patch; a spec change bumps the generation.
    k.ok(
        &[
            "patch",
            "widget",
            "small",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/size","value":3}]"#,
        ],
        None,
    )
    .await;
    k.ok(
        &[
            "patch",
            "widget",
            "small",
            "--type=merge",
            "-p",
            r#"{"spec":{"color":"blue"}}"#,
        ],
        None,
    )
    .await;
    let w = json_of(&k, &["get", "widget", "small", "-o", "json"]).await;
    assert_eq!(
        (w["spec"]["size"].as_i64(), w["spec"]["color"].as_str()),
        (Some(3), Some("blue"))
    );
    assert_eq!(w["metadata"]["generation"], 6);
    let (ok, _, err) = k
        .run(
            &[
                "patch",
                "widget",
                "small",
                "--type=merge",
                "-p",
                r#"{"spec":{"size":0}}"#,
            ],
            None,
        )
        .await;
    assert!(
        !ok && err.contains("should be greater than or equal to 1"),
        "{err}"
    );
    // The CRD's selectable field works in field selectors.
    let blue = k
        .ok(
            &[
                "get",
                "widgets",
                "--field-selector",
                "spec.color=blue",
                "-o",
                "name",
            ],
            None,
        )
        .await;
    assert_eq!(blue.trim(), "widget.crd.minikind.dev/small");
    let (ok, _, err) = k
        .run(&["get", "widgets", "--field-selector", "spec.size=3"], None)
        .await;
    assert!(
        !ok && err.contains("field label not supported: spec.size"),
        "{err}"
    );

    // Server-side apply with managed fields, as for built-in kinds.
    k.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=tester",
            "-f",
            "-",
        ],
        Some(&widget("ssa", "  size: 4")),
    )
    .await;
    let w = json_of(
        &k,
        &[
            "get",
            "widget",
            "ssa",
            "-o",
            "json",
            "--show-managed-fields",
        ],
    )
    .await;
    let managers: Vec<&str> = w["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"tester"), "{w}");
    assert_eq!(w["spec"]["color"], "red");

    // The other served version: the same object, at that apiVersion.
    let b = json_of(
        &k,
        &[
            "get",
            "widgets.v1beta1.crd.minikind.dev",
            "small",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(b["apiVersion"], "crd.minikind.dev/v1beta1");
    assert_eq!(b["spec"]["size"], 3);
    let list = json_of(
        &k,
        &["get", "widgets.v1beta1.crd.minikind.dev", "-o", "json"],
    )
    .await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["apiVersion"] == "crd.minikind.dev/v1beta1")
    );

    // Written at v1beta1 (which keeps unknown fields), stored at v1: pruned by v1's schema,
    // defaulted by it.
    let beta = widget("beta", "  size: 1\n  bogus: 2")
        .replace("crd.minikind.dev/v1", "crd.minikind.dev/v1beta1");
    k.ok(&["apply", "-f", "-"], Some(&beta)).await;
    let w = json_of(
        &k,
        &["get", "widgets.v1.crd.minikind.dev", "beta", "-o", "json"],
    )
    .await;
    assert_eq!(w["spec"], serde_json::json!({"size": 1, "color": "red"}));
    k.ok(&["delete", "widget", "beta"], None).await;

    // Tables with whole objects carry them at the requested version too.
    let client = cp.client().await.unwrap();
    let req = http::Request::get(
        "/apis/crd.minikind.dev/v1beta1/namespaces/default/widgets?includeObject=Object",
    )
    .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap();
    let t: Value = serde_json::from_str(&client.request_text(req).await.unwrap()).unwrap();
    let rows = t["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{t}");
    assert!(
        rows.iter()
            .all(|r| r["object"]["apiVersion"] == "crd.minikind.dev/v1beta1"),
        "{t}"
    );

    // Watch sees changes, at either version.
    let mut watch = k.cmd(&["get", "widgets", "-w", "-o", "name", "--request-timeout=4s"]);
    let mut watch_beta = k.cmd(&[
        "get",
        "widgets.v1beta1.crd.minikind.dev",
        "-w",
        "-o",
        "name",
        "--request-timeout=4s",
    ]);
    let mut late = k.cmd(&["apply", "-f", "-"]);
    let late_body = widget("late", "  size: 1");
    let (w_out, b_out, _) = tokio::join!(
        tokio::task::spawn_blocking(move || watch.output()),
        tokio::task::spawn_blocking(move || watch_beta.output()),
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            use std::io::Write;
            let mut child = late
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(late_body.as_bytes())
                .unwrap();
            child.wait().unwrap()
        })
    );
    for out in [w_out, b_out] {
        let out = out.unwrap().unwrap();
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(o.contains("widget.crd.minikind.dev/small"), "{o}\n{e}");
        assert!(o.contains("widget.crd.minikind.dev/late"), "{o}\n{e}");
    }
    k.ok(&["delete", "widget", "odd", "late"], None).await;

    // Objects survive a restart (the definition is loaded before them).
    cp.shutdown().await.unwrap();
    let cp = server(&data).await;
    let k = Kubectl::new(kubectl(), dir.path(), &cp.kubeconfig);
    let names = k.ok(&["get", "widgets", "-o", "name"], None).await;
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "widget.crd.minikind.dev/small",
            "widget.crd.minikind.dev/ssa"
        ]
    );

    // deletecollection, with a selector.
    k.ok(&["apply", "-f", "-"], Some(&widget("extra", "  size: 1")))
        .await;
    k.ok(
        &[
            "delete", "--raw",
            "/apis/crd.minikind.dev/v1/namespaces/default/widgets?fieldSelector=metadata.name%3Dextra",
        ],
        None,
    )
    .await;
    let names = k.ok(&["get", "widgets", "-o", "name"], None).await;
    assert_eq!(names.lines().count(), 2, "{names}");

    // Deleting the definition removes its objects and stops serving them; its watches end.
    let mut watcher = k
        .cmd(&["get", "widgets", "-w", "-o", "name"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    k.ok(
        &["delete", "crd", "widgets.crd.minikind.dev", "--timeout=20s"],
        None,
    )
    .await;
    // A kubectl with a cold discovery cache (a warm one keeps the resource for its TTL and
    // gets 404 from the list, as against kube-apiserver).
    let cold = tempfile::tempdir().unwrap();
    let fresh = Kubectl::new(kubectl(), cold.path(), &cp.kubeconfig);
    eventually(20, "the CRD and its objects gone", || async {
        let (ok, _, err) = fresh.run(&["get", "widgets"], None).await;
        (!ok && err.contains("the server doesn't have a resource type \"widgets\"")).then_some(())
    })
    .await;
    let ended = tokio::task::spawn_blocking(move || {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < until {
            if watcher.try_wait().unwrap().is_some() {
                let _ = watcher.wait();
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = watcher.kill();
        let _ = watcher.wait();
        false
    })
    .await
    .unwrap();
    assert!(ended, "the watch of the deleted resource did not end");
    assert!(
        cp.state
            .store
            .list(
                minikind_apiserver::resources::by_id("crd.minikind.dev/widgets").unwrap(),
                None,
                None,
                0,
                |_| true
            )
            .0
            .is_empty()
    );
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_crd_bad_definitions_are_refused_with_the_field() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let bad = CRD
        .replace(
            "name: widgets.crd.minikind.dev",
            "name: gadgets.crd.minikind.dev",
        )
        .replace("    storage: false", "    storage: true");
    let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(&bad)).await;
    assert!(!ok);
    assert!(err.contains("metadata.name: Invalid value: \"gadgets.crd.minikind.dev\": must be spec.names.plural+\".\"+spec.group"), "{err}");
    assert!(
        err.contains("must have exactly one version marked as storage version"),
        "{err}"
    );
    let untyped = CRD.replace(
        "              color:\n                type: string\n",
        "              color:\n",
    );
    let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(&untyped)).await;
    assert!(!ok);
    assert!(err.contains("spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[color].type: Required value"), "{err}");

    // A second CRD wanting a kind its group already serves is stored but not established.
    k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    let twin = CRD
        .replace(
            "name: widgets.crd.minikind.dev",
            "name: gadgets.crd.minikind.dev",
        )
        .replace("plural: widgets", "plural: gadgets")
        .replace("singular: widget", "singular: gadget")
        .replace("shortNames: [wd]", "shortNames: [gd]");
    k.ok(&["apply", "-f", "-"], Some(&twin)).await;
    let crd: Value = serde_json::from_str(
        &k.ok(
            &["get", "crd", "gadgets.crd.minikind.dev", "-o", "json"],
            None,
        )
        .await,
    )
    .unwrap();
    let cond = |ty: &str| {
        crd["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == ty)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            cond("NamesAccepted")["status"].as_str(),
            cond("NamesAccepted")["reason"].as_str()
        ),
        (Some("False"), Some("KindConflict"))
    );
    assert_eq!(cond("Established")["status"], "False");
    let resources = k
        .ok(
            &[
                "api-resources",
                "--api-group=crd.minikind.dev",
                "-o",
                "name",
            ],
            None,
        )
        .await;
    assert_eq!(resources.trim(), "widgets.crd.minikind.dev");
    cp.shutdown().await.unwrap();
}

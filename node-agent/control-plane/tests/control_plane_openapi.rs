//! OpenAPI through kubectl 1.37: `kubectl explain` describes built-in fields (from the
//! generated schemas) and custom resources (from their CRD), `kubectl apply` with validation
//! on takes Deployment/StatefulSet/CRD manifests and reports an unknown field as kubectl
//! does, and probe defaults are filled on create.

mod control_plane_common;
use control_plane_common::{Kubectl, kubectl, server};

use serde_json::Value;

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: tools:1
        livenessProbe:
          httpGet: {port: 80}
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 3
"#;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: c
        image: tools:1
        ports:
        - containerPort: 80
"#;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.openapi.minikind.dev
spec:
  group: openapi.minikind.dev
  scope: Namespaced
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A Gizmo is a small device.
        properties:
          spec:
            type: object
            properties:
              speed:
                type: integer
                description: How fast the gizmo spins, in turns per second.
"#;

#[tokio::test]
async fn control_plane_openapi_explain_validate_and_defaults() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);

    let out = k
        .ok(&["explain", "pod.spec.containers.livenessProbe"], None)
        .await;
    assert!(out.contains("KIND:       Pod"), "{out}");
    assert!(out.contains("FIELD: livenessProbe <Probe>"), "{out}");
    assert!(out.contains("periodSeconds\t<integer>"), "{out}");
    assert!(
        out.contains("How often (in seconds) to perform the probe"),
        "{out}"
    );
    let out = k.ok(&["explain", "deployment.spec.replicas"], None).await;
    assert!(out.contains("GROUP:      apps"), "{out}");
    assert!(out.contains("FIELD: replicas <integer>"), "{out}");

    // Validation on (kubectl's default): the manifests go through; the server checks fields.
    let out = k.ok(&["apply", "-f", "-"], Some(STS)).await;
    assert_eq!(out.trim(), "statefulset.apps/web created");
    let out = k.ok(&["apply", "-f", "-"], Some(DEPLOY)).await;
    assert_eq!(out.trim(), "deployment.apps/api created");
    // A second client-side apply computes a strategic merge patch from the v3 schema (merge
    // key of `containers`), without falling back to the v2 document or kubectl's own types.
    let (ok, out, err) = k
        .run(
            &["apply", "-f", "-", "-v=8"],
            Some(
                &DEPLOY
                    .replace("replicas: 1", "replicas: 2")
                    .replace("tools:1", "tools:2"),
            ),
        )
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "deployment.apps/api configured");
    assert!(err.contains("$setElementOrder/containers"), "{err}");
    assert!(!err.contains("/openapi/v2"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    let out = k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/gizmos.openapi.minikind.dev created"
    );
    let (ok, _, err) = k
        .run(
            &["apply", "-f", "-"],
            Some(&DEPLOY.replace("replicas: 1", "replicas: 1\n  replicaz: 2")),
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replicaz\""),
        "{err}"
    );

    // Probe defaults, as SetDefaults_Probe fills them.
    let sts: Value =
        serde_json::from_str(&k.ok(&["get", "sts", "web", "-o", "json"], None).await).unwrap();
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
    assert_eq!(c["livenessProbe"]["timeoutSeconds"], 1);
    assert_eq!(c["livenessProbe"]["failureThreshold"], 3);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/");
    assert_eq!(c["livenessProbe"]["httpGet"]["scheme"], "HTTP");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 3);
    assert_eq!(c["readinessProbe"]["successThreshold"], 1);

    // A custom resource is explained from its CRD's schema.
    k.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/gizmos.openapi.minikind.dev",
        ],
        None,
    )
    .await;
    let out = k.ok(&["explain", "gizmo.spec.speed"], None).await;
    assert!(out.contains("GROUP:      openapi.minikind.dev"), "{out}");
    assert!(out.contains("How fast the gizmo spins"), "{out}");
    let out = k.ok(&["explain", "gizmo"], None).await;
    assert!(out.contains("A Gizmo is a small device."), "{out}");

    // The v2 document, as JSON.
    let v2: Value =
        serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v2"], None).await).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["dev.minikind.openapi.v1.Gizmo"].is_object());
    cp.shutdown().await.unwrap();
}

//! Containers from the node's image store, with no registry: an image `load`ed into the store
//! runs in a root of its own files, with the status's `image`/`imageID` as the kubelet fills
//! them, and its root is given back when the pod goes; an image the store lacks fails as a
//! pull does (`ErrImageNeverPull`, `ErrImagePull` then `ImagePullBackOff`) with an event
//! saying how to load it. No name is special: `busybox` not in the store fails like any other
//! (the node image's own images are pre-loaded into the store by the node agent).

mod kubelet_common;

use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, Pod};
use kubelet_common::*;
use minikind_image_store::Store;
use minikind_kubelet::image_roots::StoreRoots;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A docker-save archive of one image: a single layer holding busybox's root, tagged `tags`.
/// Returns the archive and the image's ID.
fn busybox_archive(tags: &[&str]) -> (Vec<u8>, String) {
    let files = tempfile::tempdir().unwrap();
    busybox_root(files.path()).unwrap();
    let mut layer = tar::Builder::new(Vec::new());
    layer.follow_symlinks(false);
    layer.append_dir_all(".", files.path()).unwrap();
    let layer = layer.into_inner().unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers",
                   "diff_ids": [format!("sha256:{:x}", Sha256::digest(&layer))]},
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    }))
    .unwrap();
    let id = format!("{:x}", Sha256::digest(&config));
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("{id}.json"), "RepoTags": tags, "Layers": ["layer.tar"]
    }]))
    .unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    for (name, data) in [
        (format!("{id}.json"), &config),
        ("layer.tar".to_string(), &layer),
        ("manifest.json".to_string(), &manifest),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        archive.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    (archive.into_inner().unwrap(), format!("sha256:{id}"))
}

fn status_of(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn waiting_reason(p: &Pod) -> Option<(String, String)> {
    let w = status_of(p)?.state.as_ref()?.waiting.as_ref()?;
    Some((w.reason.clone()?, w.message.clone().unwrap_or_default()))
}

fn image_pod(name: &str, image: &str, policy: Option<&str>) -> serde_json::Value {
    let mut p = pod(name, &["sleep", "3600"]);
    p["spec"]["containers"][0]["image"] = json!(image);
    if let Some(policy) = policy {
        p["spec"]["containers"][0]["imagePullPolicy"] = json!(policy);
    }
    p
}

async fn events_for(lab: &Lab, pod: &str) -> Vec<Event> {
    let api: kube::Api<Event> = kube::Api::namespaced(lab.client.clone(), "default");
    api.list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .collect()
}

#[test]
fn images_come_from_the_store_and_missing_ones_fail_as_pulls_do() {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install -y busybox-static"
    );
    isolated(|| async {
        let store_dir = tempfile::tempdir().unwrap();
        let (archive, id) = busybox_archive(&["busybox:1.36"]);
        Store::open(store_dir.path())
            .unwrap()
            .import(archive.as_slice())
            .unwrap();
        let roots = StoreRoots::open(store_dir.path(), "lab").unwrap();
        let lab = Lab::start_with(|cfg| cfg.roots = Arc::new(roots)).await;

        // From the store: the image's files only, the status naming it as containerd does.
        lab.create(image_pod("stored", "busybox:1.36", Some("Never")))
            .await;
        let p = lab.wait_running("stored").await;
        let st = status_of(&p).unwrap();
        assert_eq!(st.image, "docker.io/library/busybox:1.36");
        assert_eq!(st.image_id, id);
        let ls = exec(
            lab.endpoint().await,
            "stored",
            &["ls", "/"],
            None,
            "v5.channel.k8s.io",
        )
        .await;
        let entries: Vec<&str> = ls.stdout.split_whitespace().collect();
        assert!(entries.contains(&"bin"), "{ls:?}");
        assert!(
            !entries.contains(&"usr"),
            "not the node's files: {entries:?}"
        );
        let in_use = std::fs::read_dir(store_dir.path().join("containers"))
            .unwrap()
            .count();
        assert_eq!(in_use, 1, "one container root in the store");

        // The tag the store has is `busybox:1.36`; `busybox` (`:latest`) is another image,
        // not in the store, and nothing stands in for it.
        lab.create(image_pod("latest", "busybox", Some("Never")))
            .await;
        let p = lab
            .wait_pod("latest", 20, "ErrImageNeverPull", |p| {
                waiting_reason(p).is_some_and(|(r, _)| r == "ErrImageNeverPull")
            })
            .await;
        assert!(status_of(&p).unwrap().image_id.is_empty());

        // Not in the store, pull policy Never.
        lab.create(image_pod("never", "example.com/team/app:v1", Some("Never")))
            .await;
        let p = lab
            .wait_pod("never", 20, "ErrImageNeverPull", |p| {
                waiting_reason(p).is_some_and(|(r, _)| r == "ErrImageNeverPull")
            })
            .await;
        let (_, msg) = waiting_reason(&p).unwrap();
        assert!(
            msg.starts_with(
                "Container image \"example.com/team/app:v1\" is not present with pull policy of Never"
            ),
            "{msg}"
        );
        let fix = "minikind load docker-image example.com/team/app:v1 --name lab";
        assert!(msg.contains(fix), "{msg}");
        let ev = eventually(10, "the ErrImageNeverPull event", || async {
            events_for(&lab, "never")
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ErrImageNeverPull"))
        })
        .await;
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert!(ev.message.unwrap_or_default().contains(fix));

        // Not in the store, may be pulled: ErrImagePull, then ImagePullBackOff.
        lab.create(image_pod("pull", "nginx", None)).await;
        lab.wait_pod("pull", 20, "ErrImagePull", |p| {
            waiting_reason(p).is_some_and(|(r, _)| r == "ErrImagePull")
        })
        .await;
        let p = lab
            .wait_pod("pull", 20, "ImagePullBackOff", |p| {
                waiting_reason(p).is_some_and(|(r, _)| r == "ImagePullBackOff")
            })
            .await;
        assert_eq!(phase(&p), "Pending");
        assert!(status_of(&p).unwrap().image_id.is_empty());
        let events = eventually(10, "the pull failure and back-off events", || async {
            let ev = events_for(&lab, "pull").await;
            let failed = ev.iter().find(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Failed to pull image \"nginx\""))
            });
            let backoff = ev.iter().find(|e| {
                e.reason.as_deref() == Some("BackOff")
                    && e.message.as_deref() == Some("Back-off pulling image \"nginx\"")
            });
            (failed.is_some() && backoff.is_some()).then_some(ev)
        })
        .await;
        let failed = events
            .iter()
            .find(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Failed to pull image"))
            })
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("Failed"));
        assert_eq!(failed.type_.as_deref(), Some("Warning"));
        assert!(
            failed
                .message
                .as_deref()
                .unwrap()
                .contains("minikind load docker-image nginx --name lab"),
            "{failed:?}"
        );

        // Removing the pod gives its root back to the store.
        lab.pods()
            .delete("stored", &Default::default())
            .await
            .unwrap();
        lab.wait_gone("stored", 20).await;
        eventually(10, "the store's container root released", || async {
            let n = std::fs::read_dir(store_dir.path().join("containers"))
                .ok()?
                .count();
            (n == 0).then_some(())
        })
        .await;
        lab.shutdown().await;
    });
}

#[test]
fn a_pod_waits_for_an_image_being_imported_as_for_a_pull() {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install -y busybox-static"
    );
    isolated(|| async {
        let store_dir = tempfile::tempdir().unwrap();
        let imports = minikind_kubelet::image_imports::Imports::default();
        // As the node agent does with its pre-loaded images: the import is announced, the
        // kubelet starts, the store gets the image later.
        let importing = imports.begin(vec!["docker.io/library/busybox:1.36".to_string()]);
        let roots = StoreRoots::open(store_dir.path(), "lab")
            .unwrap()
            .with_imports(imports);
        let lab = Lab::start_with(|cfg| cfg.roots = Arc::new(roots)).await;
        // `IfNotPresent` would fail at once with ErrImagePull for an image the store lacks.
        lab.create(image_pod("early", "busybox:1.36", Some("IfNotPresent")))
            .await;
        eventually(10, "the Pulling event", || async {
            events_for(&lab, "early").await.into_iter().find(|e| {
                e.reason.as_deref() == Some("Pulling")
                    && e.message.as_deref() == Some("Pulling image \"busybox:1.36\"")
            })
        })
        .await;
        // While the import runs the container is being created, not failing.
        for _ in 0..10 {
            let p = lab.pods().get("early").await.unwrap();
            assert_eq!(phase(&p), "Pending");
            if let Some((reason, msg)) = waiting_reason(&p) {
                assert_eq!(reason, "ContainerCreating", "{msg}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let (archive, id) = busybox_archive(&["busybox:1.36"]);
        Store::open(store_dir.path())
            .unwrap()
            .import(archive.as_slice())
            .unwrap();
        drop(importing);
        let p = lab.wait_running("early").await;
        assert_eq!(status_of(&p).unwrap().image_id, id);
        let events = events_for(&lab, "early").await;
        assert!(
            !events.iter().any(|e| e.type_.as_deref() == Some("Warning")),
            "no failure while the image was on its way: {events:#?}"
        );
        let pulled = events
            .iter()
            .find(|e| e.reason.as_deref() == Some("Pulled"))
            .and_then(|e| e.message.clone())
            .unwrap_or_default();
        assert!(
            pulled.starts_with("Successfully pulled image \"busybox:1.36\" in ")
                && pulled.contains(" including waiting). Image size: "),
            "{pulled}"
        );
    });
}

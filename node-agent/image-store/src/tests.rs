//! Imports of archives built here, in both layouts, into a store in a temporary directory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;

/// One entry of a synthetic layer.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str, u32, u64),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
}

/// A tar header with any name, `..` and absolute ones too (the tar crate's builder refuses
/// those, and these tests need them).
fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (mut h, data): (tar::Header, &[u8]) = match e {
            E::Dir(p) => (header(p, tar::EntryType::Directory, 0), b""),
            E::File(p, body, mode, uid) => {
                let mut h = header(p, tar::EntryType::Regular, body.len() as u64);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(uid + 1);
                (h, body.as_bytes())
            }
            E::Link(p, target) => {
                let mut h = header(p, tar::EntryType::Symlink, 0);
                h.as_ustar_mut().unwrap().linkname[..target.len()]
                    .copy_from_slice(target.as_bytes());
                (h, b"")
            }
            E::Hard(p, target) => {
                let mut h = header(p, tar::EntryType::Link, 0);
                h.as_ustar_mut().unwrap().linkname[..target.len()]
                    .copy_from_slice(target.as_bytes());
                (h, b"")
            }
            E::Char(p, major, minor) => {
                let mut h = header(p, tar::EntryType::Char, 0);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                h.set_mode(0o666);
                (h, b"")
            }
        };
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/etc"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
}

/// `docker save`'s legacy layout.
fn docker_save(tags: &[&str], layers: &[Vec<u8>]) -> (Vec<u8>, String) {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest::of_bytes(l)).collect();
    let cfg = config(&diff_ids);
    let id = digest::of_bytes(&cfg);
    let mut b = tar::Builder::new(Vec::new());
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let name = format!("{i:064}/layer.tar");
        add(&mut b, &name, l);
        names.push(name);
    }
    let cfg_name = format!("{}.json", &id[7..]);
    add(&mut b, &cfg_name, &cfg);
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": tags, "Layers": names}]);
    add(&mut b, "manifest.json", manifest.to_string().as_bytes());
    (b.into_inner().unwrap(), id)
}

/// The OCI image layout, layers gzipped, named by containerd's annotation.
fn oci_layout(name: &str, layers: &[Vec<u8>]) -> (Vec<u8>, String) {
    use std::io::Write;
    let diff_ids: Vec<String> = layers.iter().map(|l| digest::of_bytes(l)).collect();
    let cfg = config(&diff_ids);
    let id = digest::of_bytes(&cfg);
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut descs = Vec::new();
    for l in layers {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(l).unwrap();
        let gz = gz.finish().unwrap();
        let d = digest::of_bytes(&gz);
        add(&mut b, &format!("blobs/sha256/{}", &d[7..]), &gz);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d, "size": gz.len()}));
    }
    add(&mut b, &format!("blobs/sha256/{}", &id[7..]), &cfg);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": id, "size": cfg.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = digest::of_bytes(&manifest);
    add(&mut b, &format!("blobs/sha256/{}", &md[7..]), &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": md, "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": "1"}}],
    });
    add(&mut b, "index.json", index.to_string().as_bytes());
    (b.into_inner().unwrap(), id)
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    (dir, store)
}

/// Everything in the store but the lock and `tmp/` (what an import must leave as it was).
fn snapshot(store: &Store) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "tmp" || rel == "lock" {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(root, &p, out);
            }
            let body = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push(format!("{rel} {:o} {}", m.mode(), digest::of_bytes(&body)));
        }
    }
    let mut out = Vec::new();
    walk(store.root(), store.root(), &mut out);
    out.sort();
    out
}

fn base_layer() -> Vec<u8> {
    layer(&[
        E::Dir("etc/"),
        E::File("etc/a", "alpha", 0o640, 1000),
        E::File("etc/b", "bravo", 0o644, 0),
        E::Dir("d/"),
        E::File("d/x", "x", 0o644, 0),
        E::File("d/y", "y", 0o644, 0),
        E::Dir("bin/"),
        E::File("bin/busybox", "#!", 0o4755, 0),
        E::Link("bin/sh", "busybox"),
        E::Dir("dev/"),
        E::Char("dev/null", 1, 3),
    ])
}

fn top_layer() -> Vec<u8> {
    layer(&[
        E::File("etc/.wh.a", "", 0o644, 0),
        E::Dir("d/"),
        E::File("d/.wh..wh..opq", "", 0o644, 0),
        E::File("d/z", "zulu", 0o600, 7),
        E::Hard("etc/c", "etc/b"),
        E::File("etc/b2", "new b", 0o644, 0),
    ])
}

fn top_tree(store: &Store, id: &str) -> std::path::PathBuf {
    let rec = store.find(id).unwrap().unwrap();
    store.layer_dir(rec.chain_ids.last().unwrap()).unwrap()
}

#[test]
fn a_docker_save_archive_is_unpacked_with_whiteouts_links_owners_and_devices() {
    let (_d, store) = store();
    let (tar, id) = docker_save(&["t:1"], &[base_layer(), top_layer()]);
    let report = store.import(&tar[..]).unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].id, id);
    assert_eq!(report[0].repo_tags, ["docker.io/library/t:1"]);
    assert_eq!(report[0].layers_unpacked, 2);
    assert!(!report[0].retagged_only);

    let root = top_tree(&store, "t:1");
    // The whiteout removed a lower file; the opaque dir kept only this layer's entry.
    assert!(!root.join("etc/a").exists());
    let d: Vec<_> = fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(d, ["z"]);
    let z = fs::metadata(root.join("d/z")).unwrap();
    assert_eq!((z.mode() & 0o7777, z.uid(), z.gid()), (0o600, 7, 8));
    // Hard link: one inode.
    let (b, c) = (
        fs::metadata(root.join("etc/b")).unwrap(),
        fs::metadata(root.join("etc/c")).unwrap(),
    );
    assert_eq!(b.ino(), c.ino());
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // Set-uid survives the chown.
    assert_eq!(
        fs::metadata(root.join("bin/busybox")).unwrap().mode() & 0o7777,
        0o4755
    );
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    if report[0].skipped_devices.is_empty() {
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    }
    // The lower chain's tree is untouched by the upper layer (hard-linked, never written
    // through).
    let rec = store.find(&id).unwrap().unwrap();
    let lower = store.layer_dir(&rec.chain_ids[0]).unwrap();
    assert_eq!(fs::read_to_string(lower.join("etc/a")).unwrap(), "alpha");
    let a = fs::metadata(lower.join("etc/a")).unwrap();
    assert_eq!((a.mode() & 0o7777, a.uid(), a.gid()), (0o640, 1000, 1001));
    assert_eq!(fs::read_dir(lower.join("d")).unwrap().count(), 2);
    assert_eq!(rec.size, (base_layer().len() + top_layer().len()) as u64);
    // The config is kept by its digest and read back for a container.
    assert!(store.blob_path(&id).unwrap().exists());
}

#[test]
fn an_oci_layout_with_gzip_layers_is_imported() {
    let (_d, store) = store();
    let (tar, id) = oci_layout("example.test/app:1", &[base_layer(), top_layer()]);
    let report = store.import(&tar[..]).unwrap();
    assert_eq!(report[0].id, id);
    assert_eq!(report[0].repo_tags, ["example.test/app:1"]);
    let rec = store.find("example.test/app:1").unwrap().unwrap();
    assert!(rec.manifest.is_some());
    let root = top_tree(&store, &id);
    assert_eq!(fs::read_to_string(root.join("etc/b2")).unwrap(), "new b");
    assert!(!root.join("etc/a").exists());
    // By ID prefix too.
    assert_eq!(store.find(&id[7..19]).unwrap().unwrap().id, id);
}

#[test]
fn the_same_image_again_is_only_retagged() {
    let (_d, store) = store();
    let (tar, id) = docker_save(&["t:1"], &[base_layer()]);
    store.import(&tar[..]).unwrap();
    let before = snapshot(&store);
    let (tar2, id2) = docker_save(&["t:2", "other/t:1"], &[base_layer()]);
    assert_eq!(id, id2);
    let report = store.import(&tar2[..]).unwrap();
    assert!(report[0].retagged_only);
    assert_eq!(report[0].layers_unpacked, 0);
    assert_eq!(
        report[0].repo_tags,
        [
            "docker.io/library/t:1",
            "docker.io/library/t:2",
            "docker.io/other/t:1"
        ]
    );
    // Only the index changed.
    let after = snapshot(&store);
    let changed: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].starts_with("index.json "));
}

#[test]
fn a_tag_moves_to_the_newly_imported_image() {
    let (_d, store) = store();
    store
        .import(&docker_save(&["t:1"], &[base_layer()]).0[..])
        .unwrap();
    let (tar, id) = docker_save(&["t:1"], &[base_layer(), top_layer()]);
    store.import(&tar[..]).unwrap();
    assert_eq!(store.find("t:1").unwrap().unwrap().id, id);
    let images = store.list().unwrap();
    assert_eq!(images.len(), 2);
    assert!(images.iter().any(|i| i.repo_tags.is_empty()));
    // And back by re-importing the first one (its ID is there: a re-tag only).
    let report = store
        .import(&docker_save(&["t:1"], &[base_layer()]).0[..])
        .unwrap();
    assert!(report[0].retagged_only);
    assert_eq!(store.find("t:1").unwrap().unwrap().id, report[0].id);
    assert!(store.find(&id).unwrap().unwrap().repo_tags.is_empty());
}

#[test]
fn entries_that_escape_the_root_are_refused_and_nothing_is_written_outside() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            layer(&[E::File("../escaped", "x", 0o644, 0)]),
            "climbs out",
        ),
        (
            "absolute",
            layer(&[E::File("/escaped", "x", 0o644, 0)]),
            "absolute",
        ),
        (
            "symlink above the root",
            layer(&[
                E::Link("up", "../../../.."),
                E::File("up/escaped", "x", 0o644, 0),
            ]),
            "points above the image's root",
        ),
        (
            "hard link outside",
            layer(&[E::Hard("h", "../../../../etc/hostname")]),
            "climbs out",
        ),
    ];
    for (what, l, expect) in cases {
        let (d, store) = store();
        let before = snapshot(&store);
        let (tar, _) = docker_save(&["evil:1"], &[l]);
        let err = format!("{:#}", store.import(&tar[..]).unwrap_err());
        assert!(err.contains(expect), "{what}: {err}");
        assert!(
            err.contains("escaped") || err.contains("etc/hostname") || err.contains("up"),
            "{what}: {err}"
        );
        assert_eq!(snapshot(&store), before, "{what}");
        assert!(store.list().unwrap().is_empty());
        // Nothing landed beside or above the store.
        for p in [
            d.path().join("escaped"),
            d.path().join("images/escaped"),
            "/escaped".into(),
        ] {
            assert!(!Path::new(&p).exists(), "{what}: {}", p.display());
        }
    }
}

#[test]
fn an_absolute_symlink_on_the_way_resolves_inside_the_image() {
    let (d, store) = store();
    let l = layer(&[
        E::Dir("etc/"),
        E::Link("abs", "/etc"),
        E::File("abs/inside", "x", 0o644, 0),
    ]);
    let (tar, id) = docker_save(&["abs:1"], &[l]);
    store.import(&tar[..]).unwrap();
    let root = top_tree(&store, &id);
    assert_eq!(fs::read_to_string(root.join("etc/inside")).unwrap(), "x");
    assert!(!Path::new("/etc/inside").exists());
    drop(d);
}

#[test]
fn a_corrupt_layer_is_named_and_the_store_is_unchanged() {
    let (_d, store) = store();
    store
        .import(&docker_save(&["good:1"], &[base_layer()]).0[..])
        .unwrap();
    let before = snapshot(&store);
    // The config promises one layer, the archive carries another.
    let good = top_layer();
    let diff_ids = vec![digest::of_bytes(&good)];
    let cfg = config(&diff_ids);
    let mut b = tar::Builder::new(Vec::new());
    add(
        &mut b,
        "l/layer.tar",
        &layer(&[E::File("evil", "x", 0o644, 0)]),
    );
    let cfg_name = format!("{}.json", &digest::of_bytes(&cfg)[7..]);
    add(&mut b, &cfg_name, &cfg);
    add(
        &mut b,
        "manifest.json",
        serde_json::json!([{"Config": cfg_name, "RepoTags": ["bad:1"], "Layers": ["l/layer.tar"]}])
            .to_string()
            .as_bytes(),
    );
    let err = format!(
        "{:#}",
        store.import(&b.into_inner().unwrap()[..]).unwrap_err()
    );
    assert!(err.contains("layer \"l/layer.tar\" is corrupt"), "{err}");
    assert!(err.contains(&diff_ids[0]), "{err}");
    assert_eq!(snapshot(&store), before);

    // The same for an image the store already has (it would only be re-tagged).
    let (mut tar, _) = docker_save(&["good:2"], &[base_layer()]);
    let pos = tar.windows(5).position(|w| w == b"alpha").unwrap();
    tar[pos] = b'A';
    let err = format!("{:#}", store.import(&tar[..]).unwrap_err());
    assert!(err.contains("layer.tar\" is corrupt"), "{err}");
    assert_eq!(snapshot(&store), before);
    assert!(store.find("good:2").unwrap().is_none());

    // A config that does not hash to its name.
    let (mut tar, id) = docker_save(&["bad:2"], &[top_layer()]);
    let pos = tar.windows(9).position(|w| w == b"/bin/sh\"]").unwrap();
    tar[pos + 1] = b'X';
    let err = format!("{:#}", store.import(&tar[..]).unwrap_err());
    assert!(
        err.contains("is corrupt") && err.contains(&id[7..]),
        "{err}"
    );
    assert_eq!(snapshot(&store), before);

    // An OCI blob that does not hash to its name.
    let (mut tar, _) = oci_layout("bad:3", &[top_layer()]);
    let pos = tar.windows(9).position(|w| w == b"/bin/sh\"]").unwrap();
    tar[pos + 1] = b'X';
    let err = format!("{:#}", store.import(&tar[..]).unwrap_err());
    assert!(
        err.contains("image config blobs/sha256/") && err.contains("corrupt"),
        "{err}"
    );
    assert_eq!(snapshot(&store), before);
}

#[test]
fn a_truncated_stream_leaves_the_store_as_it_was() {
    let (_d, store) = store();
    store
        .import(&docker_save(&["good:1"], &[base_layer()]).0[..])
        .unwrap();
    let before = snapshot(&store);
    let (tar, _) = docker_save(&["next:1"], &[base_layer(), top_layer()]);
    // Cut mid-entry, and at a block boundary before manifest.json.
    for cut in [tar.len() / 2 + 100, tar.len() - 2048] {
        let err = format!("{:#}", store.import(&tar[..cut]).unwrap_err());
        assert!(
            err.contains("truncated") || err.contains("not in the archive"),
            "cut at {cut}: {err}"
        );
        assert_eq!(snapshot(&store), before, "cut at {cut}");
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    }
    assert!(store.find("next:1").unwrap().is_none());
    let err = format!("{:#}", store.import(&b"not a tar at all"[..]).unwrap_err());
    assert!(err.contains("archive"), "{err}");
}

#[test]
fn a_container_root_is_prepared_used_and_released() {
    for overlay in [false, true] {
        let (_d, store) = store();
        let (tar, id) = docker_save(&["t:1"], &[base_layer(), top_layer()]);
        store.import(&tar[..]).unwrap();
        let p = store.prepare_with("c1", "t:1", overlay).unwrap();
        if !overlay {
            assert_eq!(p.mode, RootMode::Copy);
        }
        assert_eq!(p.image_id, id);
        let cfg = p.config.config().as_ref().unwrap();
        assert_eq!(
            cfg.entrypoint().as_deref(),
            Some(&["/bin/sh".to_string()][..])
        );
        assert_eq!(cfg.working_dir().as_deref(), Some("/etc"));
        assert_eq!(
            fs::read_to_string(p.rootfs.join("etc/b2")).unwrap(),
            "new b"
        );
        assert!(!p.rootfs.join("etc/a").exists());
        // Writing in the container does not touch the image.
        fs::write(p.rootfs.join("etc/b"), "changed").unwrap();
        let image_tree = top_tree(&store, &id);
        assert_eq!(
            fs::read_to_string(image_tree.join("etc/b")).unwrap(),
            "bravo"
        );
        assert_eq!(
            fs::read_to_string(image_tree.join("etc/c")).unwrap(),
            "bravo"
        );

        let err = format!("{:#}", store.check_remove("t:1").unwrap_err());
        assert!(err.contains("used by container(s) c1"), "{err}");
        let err = format!("{:#}", store.remove("t:1").unwrap_err());
        assert!(err.contains("used by container(s) c1"), "{err}");
        assert!(
            store.prepare("c1", "t:1").is_err(),
            "a second root for one container"
        );

        store.release("c1").unwrap();
        store.release("c1").unwrap();
        let before = snapshot(&store);
        assert!(store.check_remove("t:1").unwrap().deleted);
        assert_eq!(snapshot(&store), before);
        assert!(!store.root().join("containers/c1").exists());
        let removed = store.remove("t:1").unwrap();
        assert!(removed.deleted);
        assert!(store.list().unwrap().is_empty());
        // Layers and blobs went with it.
        assert_eq!(
            fs::read_dir(store.root().join("layers")).unwrap().count(),
            0
        );
        assert_eq!(
            fs::read_dir(store.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}

#[test]
fn removing_one_of_two_tags_only_untags() {
    let (_d, store) = store();
    store
        .import(&docker_save(&["t:1", "t:2"], &[base_layer()]).0[..])
        .unwrap();
    let r = store.remove("t:2").unwrap();
    assert!(!r.deleted);
    assert_eq!(
        store.list().unwrap()[0].repo_tags,
        ["docker.io/library/t:1"]
    );
    assert!(format!("{:#}", store.remove("nope:1").unwrap_err()).contains("no image"));
    store.tag("t:1", &["u:3".into()]).unwrap();
    assert!(store.find("u:3").unwrap().is_some());
    assert!(store.prepare("../x", "t:1").is_err());
}

#[test]
fn empty_owner_fields_read_as_root() {
    let (_d, store) = store();
    let mut h = header("f", tar::EntryType::Regular, 1);
    // What `docker import` keeps from a tar whose writer left them unset.
    h.as_old_mut().uid = [0; 8];
    h.as_old_mut().gid = [0; 8];
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"x"[..]).unwrap();
    let (tar, id) = docker_save(&["e:1"], &[b.into_inner().unwrap()]);
    store.import(&tar[..]).unwrap();
    let m = fs::metadata(top_tree(&store, &id).join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}

#[test]
fn references_are_normalised_as_containerd_names_them() {
    assert_eq!(
        normalize_reference("busybox").unwrap(),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        normalize_reference("me/app:1").unwrap(),
        "docker.io/me/app:1"
    );
    assert_eq!(
        normalize_reference("registry.k8s.io/pause:3.10").unwrap(),
        "registry.k8s.io/pause:3.10"
    );
    assert!(normalize_reference("UPPER").is_err());
}

#[test]
fn gc_above_the_high_threshold_removes_unused_images_least_recently_used_first() {
    use crate::gc::{DiskUsage, GcPolicy};
    let (_d, store) = store();
    let file = |name: &'static str| layer(&[E::File(name, "some bytes of content", 0o644, 0)]);
    for (tag, name) in [("a:1", "a"), ("b:1", "b"), ("c:1", "c")] {
        store
            .import(&docker_save(&[tag], &[file(name)]).0[..])
            .unwrap();
    }
    let id = |t: &str| store.find(t).unwrap().unwrap();
    let (a, b, c) = (id("a:1"), id("b:1"), id("c:1"));
    // b is in use; c was used (later than a, which never was).
    store.prepare_with("uses-b", "b:1", false).unwrap();
    store.prepare_with("used-c", "c:1", false).unwrap();
    store.release("used-c").unwrap();
    let later = a.imported_at + 1000;
    let policy = GcPolicy::default();

    // Below the high threshold: nothing to do.
    let calm = DiskUsage {
        capacity: 1_000_000,
        available: 200_000,
    };
    let r = store.gc(&policy, calm, later).unwrap();
    assert_eq!((r.used_percent, r.to_free, r.removed.len()), (80, 0, 0));

    // 85 % used or more, 80 % wanted: exactly a's size to free (a disk of 20 such images);
    // a goes (least recently used), c stays.
    let capacity = a.size * 20 / 100 * 100;
    let busy = DiskUsage {
        capacity,
        available: capacity / 100 * 20 - a.size,
    };
    assert!(busy.used_percent() >= 85);
    // Too young to collect: nothing eligible, and the error says so.
    let e = format!("{:#}", store.gc(&policy, busy, a.imported_at).unwrap_err());
    assert!(e.contains("only found 0 bytes eligible"), "{e}");
    let r = store.gc(&policy, busy, later).unwrap();
    assert_eq!(r.removed, vec![a.id.clone()]);
    assert_eq!(r.freed, a.size);
    assert!(store.find("a:1").unwrap().is_none());
    assert!(store.find("c:1").unwrap().is_some());
    assert!(!store.layer_dir(&a.chain_ids[0]).unwrap().exists());

    // Needing more than every unused image holds: c goes, b (in use) stays, and the error
    // says how much could be freed.
    let full = DiskUsage {
        capacity,
        available: 0,
    };
    let e = format!("{:#}", store.gc(&policy, full, later).unwrap_err());
    assert!(
        e.contains(&format!("only found {} bytes eligible", c.size)) && e.contains(&c.id),
        "{e}"
    );
    assert!(store.find("c:1").unwrap().is_none());
    assert_eq!(store.find("b:1").unwrap().unwrap().id, b.id);

    // The kubelet's validation of the thresholds.
    let bad = GcPolicy {
        low_threshold_percent: 90,
        ..GcPolicy::default()
    };
    let e = store.gc(&bad, full, later).unwrap_err().to_string();
    assert!(
        e.contains("must be less than imageGCHighThresholdPercent"),
        "{e}"
    );
}

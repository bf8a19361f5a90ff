//! Images into nodes without a registry: a busybox image built here from the host's
//! `busybox-static` (the engine's import endpoint) goes into a two-node cluster with
//! `load docker-image`, is listed per node, reloaded (re-tag only: no transfer), refused
//! intact when the archive is corrupt, kept across a node restart, run by a pod (and a pod
//! whose image no node has waits in `ImagePullBackOff`), and deleted. The node image's own
//! images (minikind's tools, CoreDNS under kubeadm's name) are real images in every node's
//! store from the start, and pods run from their files, not the node's.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use minikind_test_support::images::busybox_image;
use minikind_test_support::{
    Cluster, Run, docker, eventually, minikind_command, minikind_stdin, unique_name,
};

const HERMETIC: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\n";
/// kubeadm's CoreDNS image, pre-loaded in every node (the DNS add-on's Deployment names it).
const COREDNS: &str = "registry.k8s.io/coredns/coredns:v1.12.0";

/// A host image this test made; removed when dropped.
struct HostImage(String);

impl Drop for HostImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}

/// `minikind load image-archive - --name C` with `archive` on standard input.
fn load_archive_stdin(c: &Cluster, archive: &[u8]) -> Run {
    let mut child = minikind_command()
        .args(["load", "image-archive", "-", "--name", &c.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The command may stop reading early (it failed): its own error says why.
    let _ = child.stdin.take().unwrap().write_all(archive);
    Run::from(child.wait_with_output().unwrap())
}

fn node_store(c: &Cluster, node: &str) -> (String, String) {
    let list = c.exec_ok(node, &["minikind", "node", "images", "list", "-o", "json"]);
    let layers = c.exec_ok(node, &["ls", "/var/lib/minikind/images/layers"]);
    (list, layers)
}

#[test]
fn images_load_list_survive_a_restart_and_go() {
    let repo = unique_name("minikind-e2e-img");
    let tag = format!("{repo}:1");
    let id = busybox_image(&tag, 0);
    let _image = HostImage(tag.clone());
    let c = Cluster::create(
        "e2e-images",
        &format!("nodes:\n- role: control-plane\n- role: worker\n{HERMETIC}"),
    );
    let nodes = [c.node("control-plane"), c.node("worker")];
    let full = format!("docker.io/library/{tag}");
    let short = &id[7..19];
    // What the nodes' stores hold before anything is loaded: the pre-loaded images.
    let preloaded_layers: Vec<String> = nodes
        .iter()
        .map(|n| c.exec_ok(n, &["ls", "/var/lib/minikind/images/layers"]))
        .collect();
    preloaded_images_are_real_images(&c, &nodes);

    let t = Instant::now();
    let out = c.minikind_ok(&["load", "docker-image", &tag]);
    let first = t.elapsed();
    for n in &nodes {
        assert!(
            out.contains(&format!("not yet present on node \"{n}\"")),
            "{out}"
        );
    }
    let listed = c.minikind_ok(&["get", "images"]);
    for n in &nodes {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(n.as_str()) && l.contains(&full) && l.contains(short)),
            "{n} lacks {full} ({short}):\n{listed}"
        );
    }

    // Again: every node has the ID, nothing is transferred.
    let t = Instant::now();
    let out = c.minikind_ok(&["load", "docker-image", &tag]);
    let again = t.elapsed();
    for n in &nodes {
        assert!(
            out.contains(&format!("already present on node \"{n}\"")),
            "{out}"
        );
    }
    assert!(
        again < first,
        "reload {again:?} not faster than load {first:?}"
    );
    eprintln!("load docker-image: first {first:?}, again (re-tag only) {again:?}");

    // A corrupt archive: one byte flipped inside the layer's data.
    let saved = std::process::Command::new("docker")
        .args(["save", &tag])
        .output()
        .unwrap();
    assert!(saved.status.success());
    let before: Vec<_> = nodes.iter().map(|n| node_store(&c, n)).collect();
    let mut corrupt = saved.stdout.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let r = load_archive_stdin(&c, &corrupt);
    assert!(!r.ok, "{}", r.stdout);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&nodes[0]) && r.stderr.contains(&nodes[1]),
        "{}",
        r.stderr
    );
    // Truncated too.
    let r = load_archive_stdin(&c, &saved.stdout[..saved.stdout.len() / 3]);
    assert!(!r.ok);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    let after: Vec<_> = nodes.iter().map(|n| node_store(&c, n)).collect();
    assert_eq!(before, after, "a refused archive changed a store");

    // The store is on the node's /var volume: a restart keeps it.
    let r = docker(&["restart", &nodes[1]]);
    assert!(r.ok, "{}", r.stderr);
    let listed = c.minikind_ok(&["get", "images", "--node", &nodes[1]]);
    assert!(listed.contains(&full), "{listed}");

    // Pods: the loaded image runs from its own files on the worker, as containerd names it;
    // an image no node has fails as a pull does, with the fix in the message.
    let pod = |name: &str, image: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": nodes[1], "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": image,
                                "command": ["/bin/busybox", "sleep", "3600"]}]}})
        .to_string()
    };
    let missing = format!("{repo}-missing:1");
    for (name, image) in [("from-store", tag.as_str()), ("no-image", missing.as_str())] {
        let r = minikind_stdin(&["apply", "-f", "-", "--name", &c.name], &pod(name, image));
        assert!(r.ok, "{}", r.stderr);
    }
    let p = c.wait_pod_ready("default", "from-store");
    let st = &p["status"]["containerStatuses"][0];
    assert_eq!(st["image"], full.as_str(), "{st}");
    assert_eq!(st["imageID"], id.as_str(), "{st}");
    let ls = c.pod_exec("from-store", &["/bin/busybox", "ls", "/"]);
    assert!(
        ls.ok && !ls.stdout.split_whitespace().any(|e| e == "usr"),
        "{}",
        ls.stdout
    );
    let waiting = eventually(
        "no-image in ImagePullBackOff",
        Duration::from_secs(60),
        || {
            let p = c.pod_json("default", "no-image")?;
            let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (w["reason"] == "ImagePullBackOff").then_some(w)
        },
    );
    let fix = format!("minikind load docker-image {missing} --name {}", c.name);
    assert!(
        waiting["message"].as_str().unwrap().contains(&fix),
        "{waiting}"
    );
    c.minikind_ok(&["delete", "pods", "from-store", "no-image"]);
    eventually("the pods gone", Duration::from_secs(60), || {
        (c.pod_json("default", "from-store").is_none()
            && c.pod_json("default", "no-image").is_none())
        .then_some(())
    });

    // A container root from it: overlayfs on the node's /var volume; the image cannot go
    // while the root exists.
    let node_cmd = |n: &str, args: &[&str]| {
        let mut full = vec!["minikind", "node", "images"];
        full.extend_from_slice(args);
        c.exec(n, &full)
    };
    let prepared = node_cmd(&nodes[0], &["prepare", "e2e-c1", &tag]);
    assert!(prepared.ok, "{}", prepared.stderr);
    let prepared: serde_json::Value = serde_json::from_str(&prepared.stdout).unwrap();
    assert_eq!(prepared["mode"], "overlay", "{prepared}");
    assert_eq!(prepared["image_id"], id.as_str());
    let rootfs = prepared["rootfs"].as_str().unwrap();
    // The image's own busybox, run from the container's root.
    let sh = c.exec_ok(
        &nodes[0],
        &[
            &format!("{rootfs}/bin/busybox"),
            "readlink",
            &format!("{rootfs}/bin/sh"),
        ],
    );
    assert_eq!(sh.trim(), "busybox");
    let r = c.minikind(&["delete", "image", &tag]);
    assert!(
        !r.ok && r.stderr.contains("used by container(s) e2e-c1"),
        "{}",
        r.stderr
    );
    // Refused on one node, done on none.
    let listed = c.minikind_ok(&["get", "images"]);
    for n in &nodes {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(n.as_str()) && l.contains(&full)),
            "{n}:\n{listed}"
        );
    }
    assert!(node_cmd(&nodes[0], &["release", "e2e-c1"]).ok);

    let out = c.minikind_ok(&["delete", "image", &tag]);
    for n in &nodes {
        assert!(out.contains(&format!("from node \"{n}\"")), "{out}");
    }
    let listed = c.minikind_ok(&["get", "images"]);
    assert!(!listed.contains(&full), "{listed}");
    for (n, before) in nodes.iter().zip(&preloaded_layers) {
        assert_eq!(
            &c.exec_ok(n, &["ls", "/var/lib/minikind/images/layers"]),
            before,
            "{n}: only the pre-loaded images' layers are left"
        );
    }
}

/// Every node lists the tools image and kubeadm's CoreDNS image; the CoreDNS pods run from the
/// latter (status `image`/`imageID` as the store names it), and a tools pod sees the image's
/// files only (none of the node's: no iptables, no image store).
fn preloaded_images_are_real_images(c: &Cluster, nodes: &[String]) {
    let tools = format!("docker.io/{}", minikind_contract::TOOLS_IMAGE);
    let listed = c.minikind_ok(&["get", "images"]);
    for n in nodes {
        for name in [tools.as_str(), COREDNS] {
            assert!(
                listed
                    .lines()
                    .any(|l| l.starts_with(n.as_str()) && l.contains(name)),
                "{n} lacks {name}:\n{listed}"
            );
        }
    }
    let store: serde_json::Value = serde_json::from_str(&c.exec_ok(
        &nodes[0],
        &["minikind", "node", "images", "list", "-o", "json"],
    ))
    .unwrap();
    let coredns_id = store
        .as_array()
        .unwrap()
        .iter()
        .find(|i| {
            i["repo_tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == COREDNS)
        })
        .unwrap_or_else(|| panic!("no {COREDNS} in {store}"))["id"]
        .clone();
    for p in c.coredns_pods() {
        let st = &p["status"]["containerStatuses"][0];
        assert_eq!(st["image"], COREDNS, "{st}");
        assert_eq!(st["imageID"], coredns_id, "{st}");
    }
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "tools", "namespace": "default"},
        "spec": {"nodeName": nodes[1], "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": minikind_contract::TOOLS_IMAGE,
                            "command": ["sleep", "3600"]}]}});
    let r = minikind_stdin(&["apply", "-f", "-", "--name", &c.name], &pod.to_string());
    assert!(r.ok, "{}", r.stderr);
    let p = c.wait_pod_ready("default", "tools");
    assert_eq!(p["status"]["containerStatuses"][0]["image"], tools.as_str());
    // busybox's applets and minikind's tools are there; the node's own files are not.
    let r = c.pod_exec("tools", &["sh", "-c", "hostname"]);
    assert!(r.ok && r.stdout.trim() == "tools", "{r:?}");
    // (The image carries iptables and `ip` itself, for node-cache's pods: not node files.)
    for absent in ["/etc/kubernetes", "/var/lib/minikind", "/var/lib/kubelet"] {
        let r = c.pod_exec("tools", &["ls", absent]);
        assert!(!r.ok, "{absent} is visible in the tools pod: {}", r.stdout);
    }
    let r = c.pod_exec("tools", &["getent", "ahostsv4", "localhost"]);
    assert!(r.ok && r.stdout.contains("127.0.0.1"), "{r:?}");
    c.minikind_ok(&["delete", "pods", "tools"]);
}

/// A layer tar with `entries` (name, symlink target or file body), names written raw so that
/// hostile ones (`../x`) get in as an attacker would write them.
fn raw_layer(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, link, body) in entries {
        let mut h = tar::Header::new_old();
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match link {
            Some(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(body.len() as u64);
                h.set_cksum();
                b.append(&h, *body).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A legacy `docker save` archive of one image: `config` as given (its name is its digest, as
/// the layout wants), `layers`, tagged `tag`.
fn docker_save(config: &[u8], layers: &[Vec<u8>], tag: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut names = Vec::new();
    for l in layers {
        let name = format!("{}/layer.tar", sha256_hex(l));
        add(&name, l);
        names.push(name);
    }
    let config_name = format!("{}.json", sha256_hex(config));
    add(&config_name, config);
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": names}]);
    add("manifest.json", manifest.to_string().as_bytes());
    b.into_inner().unwrap()
}

/// A config naming `layers` by their digests.
fn config_for(layers: &[Vec<u8>], cmd: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": cmd}})
    .to_string()
    .into_bytes()
}

/// Bad input of every kind the issue lists: each refused with a message naming what and where,
/// and the node unharmed — its store as it was, nothing written outside an image's tree, pods
/// still served.
#[test]
fn bad_images_and_names_are_refused_clearly_and_leave_the_node_unharmed() {
    let c = Cluster::create(
        "e2e-badimg",
        &format!("nodes:\n- role: control-plane\n{HERMETIC}"),
    );
    let node = c.node("control-plane");
    let before = node_store(&c, &node);
    let sh = |cmd: &str| c.exec(&node, &["sh", "-c", cmd]);

    // A malformed image config (its digest is right: it is the content that is wrong).
    let layer = raw_layer(&[("hello", None, b"hi\n")]);
    let r = load_archive_stdin(
        &c,
        &docker_save(b"{not json", std::slice::from_ref(&layer), "bad/config:1"),
    );
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr.contains(&node) && r.stderr.contains("config"),
        "{}",
        r.stderr
    );
    // Layers that write outside their tree: `..`, and a path through a symlink that climbs
    // above the root.
    for (what, entries, name) in [
        (
            "dot-dot",
            vec![("../../../../../minikind-escape", None, b"x\n".as_slice())],
            "minikind-escape",
        ),
        (
            "symlink climb",
            vec![
                ("up", Some("../../../../../.."), b"".as_slice()),
                ("up/minikind-escape", None, b"x\n".as_slice()),
            ],
            "up/minikind-escape",
        ),
    ] {
        let layer = raw_layer(&entries);
        let layers = [layer];
        let archive = docker_save(&config_for(&layers, &["/hello"]), &layers, "bad/escape:1");
        let r = load_archive_stdin(&c, &archive);
        assert!(!r.ok, "{what}: {}", r.stdout);
        assert!(
            r.stderr.contains(&node) && r.stderr.contains(name),
            "{what}: {}",
            r.stderr
        );
    }
    assert!(
        !sh("find / -xdev -name minikind-escape 2>/dev/null | grep -q .").ok,
        "an escaping entry was written on the node"
    );
    assert_eq!(
        before,
        node_store(&c, &node),
        "a refused archive changed the store"
    );

    // Names: an image the engine does not have, a reference that is not one, an image the
    // node does not have.
    let missing = format!("{}:1", unique_name("minikind-e2e-never-built"));
    let r = c.minikind(&["load", "docker-image", &missing]);
    assert!(!r.ok && r.stderr.contains(&missing), "{}", r.stderr);
    let r = c.minikind(&["load", "docker-image", "Not A/Name!"]);
    assert!(!r.ok && r.stderr.contains("Not A/Name!"), "{}", r.stderr);
    let r = c.minikind(&["delete", "image", &missing]);
    assert!(!r.ok && r.stderr.contains(&missing), "{}", r.stderr);

    // Pods: a reference that does not parse, and an image whose entrypoint is not in it.
    let layer = raw_layer(&[("hello", None, b"hi\n")]);
    let layers = [layer];
    let r = load_archive_stdin(
        &c,
        &docker_save(
            &config_for(&layers, &["/no/such/program"]),
            &layers,
            "e2e/noentry:1",
        ),
    );
    assert!(r.ok, "{}", r.stderr);
    for (name, image) in [("badname", "UPPER/Case:1"), ("noentry", "e2e/noentry:1")] {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "main", "image": image}]}});
        let r = minikind_stdin(&["apply", "-f", "-", "--name", &c.name], &pod.to_string());
        assert!(r.ok, "{}", r.stderr);
    }
    let waiting = eventually(
        "badname in InvalidImageName",
        Duration::from_secs(60),
        || {
            let p = c.pod_json("default", "badname")?;
            let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (w["reason"] == "InvalidImageName").then_some(w)
        },
    );
    assert!(
        waiting["message"].as_str().unwrap().contains("UPPER/Case"),
        "{waiting}"
    );
    let ended = eventually("noentry's StartError", Duration::from_secs(60), || {
        let p = c.pod_json("default", "noentry")?;
        let st = &p["status"]["containerStatuses"][0];
        [&st["state"]["terminated"], &st["lastState"]["terminated"]]
            .into_iter()
            .find(|t| t["reason"] == "StartError")
            .cloned()
    });
    assert!(
        ended["message"]
            .as_str()
            .unwrap_or("")
            .contains("/no/such/program"),
        "{ended}"
    );
    let events = c.minikind_ok(&["get", "events", "-o", "json"]);
    assert!(
        events.contains("/no/such/program"),
        "no event names the missing entrypoint:\n{events}"
    );

    // The node is unharmed: a pod from the pre-loaded tools image still runs and resolves.
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": minikind_contract::TOOLS_IMAGE,
                                 "command": ["sleep", "3600"]}]}});
    let r = minikind_stdin(&["apply", "-f", "-", "--name", &c.name], &pod.to_string());
    assert!(r.ok, "{}", r.stderr);
    c.wait_pod_ready("default", "after");
    let r = c.pod_exec("after", &["getent", "ahostsv4", "kubernetes.default"]);
    assert!(r.ok && r.stdout.contains("10.96.0.1"), "{r:?}");
}

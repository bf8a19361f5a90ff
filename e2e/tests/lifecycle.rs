//! Cluster lifecycle on the real Docker engine: create, DNS through the network magic from the
//! node and from a pod-like namespace, restart, delete, and the failure paths.
//!
//! Every cluster here sits on an `--internal` network with the lab upstream, so no query can
//! leave the machine.

use std::time::Duration;

use minikind_test_support::{
    Cluster, cluster_body, docker, eventually, labelled_objects, minikind, minikind_stdin,
    rule_lines, unique_name,
};

const HERMETIC: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\n";

/// `dig +short` answers, one per line.
fn answers(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn nat_rules(c: &Cluster, node: &str) -> Vec<String> {
    rule_lines(&c.exec_ok(node, &["iptables-save", "-t", "nat"]))
}

/// The port Docker's resolver listens on for UDP, from its DNAT rule.
fn embedded_udp_port(c: &Cluster, node: &str) -> String {
    let rules = nat_rules(c, node);
    let rule = rules
        .iter()
        .find(|r| r.contains("-p udp") && r.contains("--to-destination 127.0.0.11:"))
        .unwrap_or_else(|| panic!("no DNAT rule to 127.0.0.11: {rules:#?}"));
    rule.rsplit(':').next().unwrap().trim().to_string()
}

/// The upstream's own answer for a name, asked directly (the reference for the chain).
fn upstream_answer(c: &Cluster, node: &str, name: &str) -> Vec<String> {
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &c.node("upstream"),
    ]);
    assert!(ip.ok, "{}", ip.stderr);
    let server = format!("@{}", ip.stdout.trim());
    let mut a = answers(&c.exec_ok(node, &["dig", &server, name, "+short"]));
    a.sort();
    assert!(!a.is_empty(), "the lab upstream has no answer for {name}");
    a
}

#[test]
fn three_node_cluster_resolves_through_the_magic_survives_restart_and_deletes_cleanly() {
    // Seed 000's cluster (examples/seed-000-kind-dns-fix): three nodes, the magic on.
    let c = Cluster::create(
        "e2e-life",
        &cluster_body("seed-000-kind-dns-fix/cluster.yaml"),
    );
    let cp = c.node("control-plane");
    let w1 = c.node("worker");
    let w2 = c.node("worker2");

    let nodes = minikind(&["get", "nodes", "--name", &c.name]);
    assert!(nodes.ok, "{}", nodes.stderr);
    assert_eq!(
        answers(&nodes.stdout),
        vec![cp.clone(), w1.clone(), w2.clone()]
    );
    let clusters = minikind(&["get", "clusters"]);
    assert!(answers(&clusters.stdout).contains(&c.name));

    // The node itself: Docker's resolver on 127.0.0.11 (at the port its DNAT rule names; after
    // the magic, port 53 is redirected only for the host IP) knows the siblings and forwards
    // the rest to the lab upstream.
    let port = embedded_udp_port(&c, &cp);
    let direct = ["dig", "@127.0.0.11", "-p", port.as_str(), "+short"];
    let w2_ip = answers(&c.exec_ok(&cp, &[&direct[..], &[w2.as_str()]].concat()));
    assert_eq!(w2_ip.len(), 1, "{w2_ip:?}");
    let www = upstream_answer(&c, &cp, "www.example.test");
    let mut via_embedded = answers(&c.exec_ok(&cp, &[&direct[..], &["www.example.test"]].concat()));
    via_embedded.sort();
    assert_eq!(via_embedded, www);
    // And through the node's patched resolv.conf, as the node's own programs resolve.
    assert_eq!(answers(&c.exec_ok(&cp, &["dig", &w2, "+short"])), w2_ip);

    // The magic is in place: resolv.conf names the host IP, the original is kept.
    let resolv = c.exec_ok(&w1, &["cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    let original = c.exec_ok(&w1, &["cat", "/etc/resolv.conf.original"]);
    assert!(original.contains("nameserver 127.0.0.11"), "{original}");

    // A namespace wired to the node like a pod, with the node's patched resolv.conf: its queries
    // go to the host IP, through PREROUTING → DOCKER_OUTPUT → 127.0.0.11, over UDP and TCP.
    c.exec_ok(
        &w1,
        &[
            "netns",
            "add",
            "probe",
            "--bridge",
            "probe0",
            "--address",
            "10.250.0.5/24",
            "--gateway",
            "10.250.0.1",
            "--resolv-conf",
            "node",
        ],
    );
    for transport in ["+notcp", "+tcp"] {
        let sib = answers(&c.exec_ok(
            &w1,
            &["netns", "exec", "probe", "dig", &w2, "+short", transport],
        ));
        assert_eq!(sib, w2_ip, "sibling over {transport}");
        let mut up = answers(&c.exec_ok(
            &w1,
            &[
                "netns",
                "exec",
                "probe",
                "dig",
                "www.example.test",
                "+short",
                transport,
            ],
        ));
        up.sort();
        assert_eq!(up, www, "upstream name over {transport}");
    }

    // A restart runs the agent again: the magic is re-applied without duplicating a rule.
    // First let the cluster settle: `create` returns once one CoreDNS replica answers, and the
    // second one becoming ready later would add its endpoint rules in the middle of the count.
    c.wait_coredns_rolled_out();
    eventually(
        "both CoreDNS endpoints in the rules",
        Duration::from_secs(30),
        || (c.kube_dns_endpoint_rules(&w1).len() == 2).then_some(()),
    );
    let before = nat_rules(&c, &w1);
    assert!(
        before
            .iter()
            .any(|r| r.starts_with("-A PREROUTING") && r.contains("DOCKER_OUTPUT")),
        "{before:#?}"
    );
    // The CoreDNS replicas on the node restart with it (their restart counts rise), and each
    // is unready until its readiness probe passes again: kube-proxy drops its endpoint from
    // every node's rules meanwhile, then puts it back.
    let restarts_on_w1 = || -> Vec<(String, i64, bool)> {
        c.coredns_pods()
            .iter()
            .filter(|p| p["spec"]["nodeName"] == w1.as_str())
            .map(|p| {
                let restarts = p["status"]["containerStatuses"][0]["restartCount"]
                    .as_i64()
                    .unwrap_or(0);
                let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    restarts,
                    ready,
                )
            })
            .collect()
    };
    let replicas_before = restarts_on_w1();
    let r = docker(&["restart", "-t", "2", &w1]);
    assert!(r.ok, "{}", r.stderr);
    let after = eventually(
        "the restarted node's magic",
        Duration::from_secs(30),
        || {
            // The restart gives the node a fresh network namespace: Docker's rules, the magic,
            // then kube-proxy's and the kubelet's rules come back one after the other. Wait for
            // the second boot, for the node's CoreDNS replicas to be restarted and ready again
            // (kube-proxy's first sync still sees them ready from before the restart, then
            // drops and re-adds their endpoints as the kubelet reports them), for both
            // endpoints in the rules, and for the rule count to settle where it was.
            let logs = docker(&["logs", &w1]);
            let boots = logs.stdout.matches("boot complete").count();
            let replicas = restarts_on_w1();
            let replicas_back = replicas.len() == replicas_before.len()
                && replicas_before.iter().all(|(name, restarts, _)| {
                    replicas
                        .iter()
                        .any(|(n, r, ready)| n == name && r > restarts && *ready)
                });
            if boots < 2 || !replicas_back || c.kube_dns_endpoint_rules(&w1).len() != 2 {
                return None;
            }
            let rules = nat_rules(&c, &w1);
            (rules.len() >= before.len()).then_some(rules)
        },
    );
    // Nothing is added twice later on either.
    std::thread::sleep(Duration::from_secs(2));
    let after = {
        let again = nat_rules(&c, &w1);
        assert_eq!(again.len(), after.len(), "rules kept changing: {again:#?}");
        again
    };
    let mut unique = after.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        after.len(),
        "a rule is duplicated: {after:#?}"
    );
    assert_eq!(
        before.len(),
        after.len(),
        "before: {before:#?}\nafter: {after:#?}"
    );
    // Docker re-made its DNS rules with new ports and the agent rewrote them again.
    assert!(
        after
            .iter()
            .any(|r| r.starts_with("-A PREROUTING") && r.contains("DOCKER_OUTPUT")),
        "{after:#?}"
    );
    assert!(
        !after
            .iter()
            .any(|r| r.contains("-d 127.0.0.11/32 -j DOCKER_OUTPUT")),
        "{after:#?}"
    );
    let again = answers(&c.exec_ok(&w1, &["dig", &w2, "+short"]));
    assert_eq!(again, w2_ip);

    let name = c.name.clone();
    drop(c);
    assert_eq!(labelled_objects(&name), Vec::<String>::new());
}

#[test]
fn without_the_magic_a_namespace_hits_the_black_hole_while_the_node_resolves() {
    // Two nodes, so that there is a sibling node name to look up.
    let c = Cluster::create(
        "e2e-nomagic",
        &format!(
            "nodes:\n- role: control-plane\n- role: worker\n{HERMETIC}  networkMagic: false\n"
        ),
    );
    let cp = c.node("control-plane");
    let worker = c.node("worker");
    let resolv = c.exec_ok(&cp, &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 127.0.0.11"),
        "magic off must leave resolv.conf: {resolv}"
    );
    assert!(
        c.exec(&cp, &["cat", "/etc/resolv.conf.original"])
            .stdout
            .is_empty()
    );
    let rules = nat_rules(&c, &cp);
    assert!(
        !rules
            .iter()
            .any(|r| r.starts_with("-A PREROUTING") && r.contains("DOCKER_OUTPUT")),
        "{rules:#?}"
    );
    // The boot's sysctls are set all the same: pods need the node to route.
    for key in ["ip_forward", "conf/all/route_localnet"] {
        let v = c.exec_ok(&cp, &["cat", &format!("/proc/sys/net/ipv4/{key}")]);
        assert_eq!(v.trim(), "1", "net.ipv4.{key} with the magic off");
    }

    // The node resolves through Docker's resolver, the sibling and the upstream's names, over
    // UDP and TCP ...
    let www = upstream_answer(&c, &cp, "www.example.test");
    for transport in ["+notcp", "+tcp"] {
        let mut direct =
            answers(&c.exec_ok(&cp, &["dig", "www.example.test", "+short", transport]));
        direct.sort();
        assert_eq!(direct, www, "the node, over {transport}");
        let sibling = answers(&c.exec_ok(&cp, &["dig", &worker, "+short", transport]));
        assert_eq!(
            sibling.len(),
            1,
            "the node, {worker} over {transport}: {sibling:?}"
        );
    }

    // ... but 127.0.0.11 in a pod's namespace is its own loopback: nothing answers.
    c.exec_ok(
        &cp,
        &[
            "netns",
            "add",
            "probe",
            "--bridge",
            "probe0",
            "--address",
            "10.250.0.5/24",
            "--gateway",
            "10.250.0.1",
            "--resolv-conf",
            "node",
        ],
    );
    for name in [worker.as_str(), "www.example.test"] {
        for transport in ["+notcp", "+tcp"] {
            let r = c.exec(
                &cp,
                &[
                    "netns", "exec", "probe", "dig", name, transport, "+time=1", "+tries=1",
                ],
            );
            assert!(
                !r.ok,
                "{name} over {transport} from the namespace must fail without the magic:\n{}",
                r.stdout
            );
        }
    }
}

#[test]
fn bad_input_is_one_clear_error_and_creates_nothing() {
    let name = unique_name("e2e-bad");
    let cases = [
        (
            format!("kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\nnodez: []\n"),
            "unknown field `nodez`",
        ),
        (
            format!(
                "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\nnetworking:\n  podSubnet: 10.244.0.0/99\n"
            ),
            "networking.podSubnet",
        ),
        (
            format!(
                "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\nnodes:\n- role: worker\n"
            ),
            "control-plane",
        ),
        (
            "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: Not_Valid\n".to_string(),
            "invalid cluster name",
        ),
    ];
    for (cfg, want) in cases {
        let r = minikind_stdin(&["create", "cluster", "--config", "-"], &cfg);
        assert!(!r.ok, "accepted:\n{cfg}");
        assert!(r.stderr.contains(want), "want {want:?} in: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
    }
    assert_eq!(labelled_objects(&name), Vec::<String>::new());

    let r = minikind(&[
        "create",
        "cluster",
        "--name",
        &name,
        "--config",
        "/nonexistent/cluster.yaml",
    ]);
    assert!(
        !r.ok && r.stderr.contains("/nonexistent/cluster.yaml"),
        "{}",
        r.stderr
    );

    let r = minikind(&["delete", "cluster", "--name", &name]);
    assert!(r.ok, "deleting a missing cluster exits 0: {}", r.stderr);
    assert!(r.stdout.contains("not found"), "{}", r.stdout);
}

#[test]
fn an_api_server_address_beyond_the_loopback_is_warned_about_at_create() {
    // A network of that name that is not minikind's refuses the create before anything is made
    // or published: only the warning, printed first, is under test.
    let name = unique_name("e2e-warn");
    struct Network(String);
    impl Drop for Network {
        fn drop(&mut self) {
            let _ = docker(&["network", "rm", &self.0]);
        }
    }
    let net = Network(format!("minikind-{name}"));
    let made = docker(&["network", "create", "--internal", &net.0]);
    assert!(made.ok, "{}", made.stderr);
    for (address, warned) in [("0.0.0.0", true), ("127.0.0.1", false)] {
        let cfg = format!(
            "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\nnetworking:\n  \
             apiServerAddress: {address}\n"
        );
        let r = minikind_stdin(&["create", "cluster", "--config", "-"], &cfg);
        assert!(
            !r.ok && r.stderr.contains("is not minikind's"),
            "{}",
            r.stderr
        );
        assert_eq!(
            r.stderr.contains(
                "WARNING: the API server will be published on 0.0.0.0:<a random port>, \
                 reachable from other machines; keep networking.apiServerAddress at 127.0.0.1"
            ),
            warned,
            "{address}: {}",
            r.stderr
        );
    }
    assert_eq!(labelled_objects(&name), Vec::<String>::new());
}

/// `minikind -v build node-image`: the reference it prints last, the engine's ID for it, and
/// its debug log.
fn build_node_image() -> (String, String, String) {
    let r = minikind(&["-v", "build", "node-image"]);
    assert!(r.ok, "build node-image: {}", r.stderr);
    let reference = r
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        reference.starts_with("minikind/node:"),
        "build node-image printed {:?}",
        r.stdout
    );
    (reference.clone(), image_id(&reference), r.stderr)
}

fn image_id(reference: &str) -> String {
    let r = docker(&["image", "inspect", "-f", "{{.Id}}", reference]);
    assert!(r.ok, "docker image inspect {reference}: {}", r.stderr);
    r.stdout.trim().to_string()
}

/// Creates clusters at once (each create is mostly waiting), each with its own global args.
fn create_concurrently(
    specs: &[(&'static str, &'static [&'static str])],
) -> Vec<(Cluster, String, String)> {
    let handles: Vec<_> = specs
        .iter()
        .map(|&(prefix, args)| {
            std::thread::spawn(move || {
                let (c, r) = Cluster::create_with(prefix, HERMETIC, args);
                (c, r.stdout, r.stderr)
            })
        })
        .collect();
    // Join them all before failing, so every cluster that was made is owned (and deleted).
    let mut made = Vec::new();
    let mut failed = None;
    for h in handles {
        match h.join() {
            Ok(c) => made.push(c),
            Err(panic) => failed = Some(panic),
        }
    }
    if let Some(panic) = failed {
        std::panic::resume_unwind(panic);
    }
    made
}

/// An image imported for a test from a one-file root filesystem (the engine's import
/// endpoint, as `docker import`), removed again when dropped.
struct FakeImage {
    id: String,
}

impl FakeImage {
    /// Labelled as minikind's node images are, tagged `<reference>-<unique>` or untagged.
    fn node(reference: Option<&str>) -> FakeImage {
        let tag = reference.map(unique_name);
        FakeImage::import(
            tag.as_deref(),
            &["--change", "LABEL dev.minikind.image=node"],
        )
    }

    /// An image minikind did not make.
    fn foreign(repo: &str) -> FakeImage {
        FakeImage::import(Some(&format!("{}:latest", unique_name(repo))), &[])
    }

    fn import(tag: Option<&str>, extra: &[&str]) -> FakeImage {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("hello"), unique_name("content")).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let st = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .arg("hello")
            .status()
            .expect("running tar");
        assert!(st.success());
        let mut args = vec!["import"];
        args.extend_from_slice(extra);
        let tar = tar.to_str().unwrap().to_string();
        args.push(&tar);
        args.extend(tag);
        let r = docker(&args);
        assert!(r.ok, "docker import: {}", r.stderr);
        FakeImage {
            id: r.stdout.trim().to_string(),
        }
    }

    fn exists(&self) -> bool {
        docker(&["image", "inspect", &self.id]).ok
    }
}

impl Drop for FakeImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "--force", &self.id]);
    }
}

/// A container the test made, removed when dropped.
struct ContainerGuard(String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", &self.0]);
    }
}

fn running(container: &str) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", container])
        .stdout
        .trim()
        == "true"
}

/// Three clusters side by side: the node image is rebuilt on demand and reused by creates
/// (`-v` says so on standard error), a taken name is refused, `get nodes --all-clusters` sees
/// them all, `delete cluster` removes one and leaves the others whole, `delete clusters A B`
/// removes two.
#[test]
fn clusters_side_by_side_share_the_image_and_delete_one_by_one_or_by_names() {
    // `build node-image` imports even an unchanged image again: same tag, new image.
    let (image, first_id, _) = build_node_image();
    let (again, rebuilt_id, log) = build_node_image();
    assert_eq!(again, image, "an unchanged executable gives the same tag");
    assert_ne!(rebuilt_id, first_id, "build node-image must import again");
    // The image it replaced is removed, unless containers (other tests' clusters running now)
    // still use it — then it is kept, and the log says so. Another test's create may have
    // pruned it first: then it is gone and this log need not name it.
    assert!(
        log.lines().any(|l| l.contains(&first_id)
            && (l.contains("node images no container uses removed")
                || l.contains("kept (a container uses it)")))
            || !docker(&["image", "inspect", &first_id]).ok,
        "the rebuild said nothing of the image it replaced ({first_id}), which is still there: \
         {log}"
    );
    if log.contains("node images no container uses removed") && log.contains(&first_id) {
        assert!(
            !docker(&["image", "inspect", &first_id]).ok,
            "{first_id} still there after its removal"
        );
    }

    // Node images do not pile up: a build removes the unused node images of other
    // executables and untagged ones; an image a container uses, and any image minikind did
    // not make, stay.
    let stale = FakeImage::node(Some("minikind/node:e2e-stale"));
    let untagged = FakeImage::node(None);
    // An image becomes "used" only once a container holds it: until then a concurrent test's
    // create may rightly prune it (it is an unused node image), so make it again if that happened.
    let user = unique_name("e2e-image-user");
    let mut attempts = 0;
    let used = loop {
        attempts += 1;
        let used = FakeImage::node(Some("minikind/node:e2e-used"));
        let r = docker(&["create", "--name", &user, &used.id, "/nothing"]);
        if r.ok {
            break used;
        }
        assert!(
            attempts < 3 && r.stderr.contains("No such image"),
            "{}",
            r.stderr
        );
    };
    let _user = ContainerGuard(user);
    let foreign = FakeImage::foreign("e2e-not-minikind");
    let (_, _, log) = build_node_image();
    for gone in [&stale, &untagged] {
        assert!(!gone.exists(), "{} is still there:\n{log}", gone.id);
    }
    for kept in [&used, &foreign] {
        assert!(kept.exists(), "{} was removed:\n{log}", kept.id);
    }
    let rebuilt_id = image_id(&image);

    let mut made = create_concurrently(&[
        ("e2e-pair-a", &["-v"]),
        ("e2e-pair-b", &[]),
        ("e2e-pair-c", &[]),
    ]);
    let (c, c_out, _) = made.pop().unwrap();
    let (b, b_out, _) = made.pop().unwrap();
    let (a, a_out, a_err) = made.pop().unwrap();

    // The image present: nobody imported it again.
    assert_eq!(image_id(&image), rebuilt_id, "a create re-imported {image}");
    for out in [&a_out, &b_out, &c_out] {
        // The tag is the hash of the running executable: another build of it meanwhile (a
        // shared target directory) would show up here first.
        assert!(
            out.contains(&image),
            "the create used another image than {image} (was target/debug/minikind rebuilt \
             during the test?):\n{out}"
        );
        assert!(out.contains(&format!("{image} (reused")), "{out}");
    }

    // `-v`: minikind's debug events on standard error, naming the image and what was made;
    // standard output keeps exactly the plain step lines.
    let image_line = a_err
        .lines()
        .find(|l| l.contains("node image reused"))
        .unwrap_or_else(|| panic!("no -v line about reusing the node image:\n{a_err}"));
    assert!(
        image_line.contains(&format!("image={image}"))
            && image_line.contains(&format!("id={rebuilt_id}")),
        "{image_line}"
    );
    for want in [
        format!("network=minikind-{}", a.name),
        "subnet=".to_string(),
        "internal=true".to_string(),
        format!("node={}", a.node("control-plane")),
        "kubeconfig written".to_string(),
        "step finished".to_string(),
    ] {
        assert!(a_err.contains(&want), "no {want:?} in the -v log:\n{a_err}");
    }
    assert!(!b_out.is_empty());
    for line in a_out.lines() {
        let plain = [
            " • ",
            " ✓ ",
            "   ",
            "Creating cluster",
            "Cluster ",
            "Set kubectl context",
        ]
        .iter()
        .any(|p| line.starts_with(p));
        assert!(plain, "not a status line on stdout: {line:?}\n{a_out}");
        assert!(
            !line.contains("DEBUG") && !line.contains(" INFO "),
            "{line}"
        );
    }
    let steps: Vec<&str> = a_out.lines().filter(|l| l.starts_with(" ✓ ")).collect();
    let plain_steps: Vec<&str> = b_out.lines().filter(|l| l.starts_with(" ✓ ")).collect();
    assert_eq!(
        steps.len(),
        plain_steps.len(),
        "-v changes no step line:\n{a_out}\n{b_out}"
    );

    // A taken name: refused, the cluster untouched.
    let before = labelled_objects(&a.name);
    let r = minikind(&["create", "cluster", "--name", &a.name]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains(&a.name),
        "{}",
        r.stderr
    );
    assert_eq!(labelled_objects(&a.name), before);

    let all = minikind(&["get", "nodes", "--all-clusters"]);
    assert!(all.ok, "{}", all.stderr);
    let listed = answers(&all.stdout);
    for cl in [&a, &b, &c] {
        assert!(listed.contains(&cl.node("control-plane")), "{listed:?}");
        assert!(
            !listed.contains(&cl.node("upstream")),
            "not a node: {listed:?}"
        );
    }

    // Deleting one cluster leaves the others as they were: containers running, network there.
    let others = [
        (&b, labelled_objects(&b.name)),
        (&c, labelled_objects(&c.name)),
    ];
    let r = minikind(&["delete", "cluster", "--name", &a.name]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(labelled_objects(&a.name), Vec::<String>::new());
    for (cl, objects) in &others {
        assert_eq!(&labelled_objects(&cl.name), objects);
        for node in ["control-plane", "upstream"] {
            assert!(running(&cl.node(node)), "{} stopped", cl.node(node));
        }
        let net = docker(&["network", "inspect", &format!("minikind-{}", cl.name)]);
        assert!(net.ok, "{}", net.stderr);
    }
    // ... and still working: its API answers.
    assert!(b.minikind_ok(&["get", "pods", "-A"]).contains("coredns"));

    // `delete cluster` removes untagged node images nobody uses (what a rebuild leaves when
    // a cluster still ran on the image it replaced).
    let orphan = FakeImage::node(None);
    let r = minikind(&["delete", "cluster", "--name", "e2e-no-such-cluster"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(!orphan.exists(), "{} survived a delete", orphan.id);

    // Two at once by name.
    let r = minikind(&["delete", "clusters", &b.name, &c.name]);
    assert!(r.ok, "{}", r.stderr);
    for cl in [&b, &c] {
        assert!(r.stdout.contains(&cl.name), "{}", r.stdout);
        assert_eq!(labelled_objects(&cl.name), Vec::<String>::new());
    }
}

#[test]
fn a_failed_create_removes_everything_unless_retained() {
    let name = unique_name("e2e-fail");
    let cfg = format!("kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\n{HERMETIC}");
    // Nodes cannot boot within a millisecond: the wait step fails after containers exist.
    let r = minikind_stdin(
        &["create", "cluster", "--config", "-", "--wait", "1ms"],
        &cfg,
    );
    assert!(!r.ok);
    assert!(r.stderr.contains("did not boot"), "{}", r.stderr);
    assert_eq!(labelled_objects(&name), Vec::<String>::new());

    let r = minikind_stdin(
        &[
            "create", "cluster", "--config", "-", "--wait", "1ms", "--retain",
        ],
        &cfg,
    );
    assert!(!r.ok);
    let guard = Cluster { name: name.clone() };
    assert!(r.stderr.contains("--retain"), "{}", r.stderr);
    assert!(
        !labelled_objects(&name).is_empty(),
        "--retain keeps the nodes"
    );
    drop(guard);
    assert_eq!(labelled_objects(&name), Vec::<String>::new());
}

/// How an interrupted create ended.
struct Interrupted {
    name: String,
    status: std::process::ExitStatus,
    stderr: String,
    /// Deletes whatever is left only after the assertions have looked.
    _guard: Cluster,
}

/// Starts a hermetic create, sends `first` by PID once a step line containing `after` is out,
/// then each of `during_rollback` as soon as the rollback's own step line is out; waits (two
/// minutes at most) for the create to end.
fn interrupt_create(
    prefix: &str,
    after: &str,
    first: nix::sys::signal::Signal,
    during_rollback: &[nix::sys::signal::Signal],
) -> Interrupted {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;

    let name = unique_name(prefix);
    let cfg = format!("kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\n{HERMETIC}");
    let mut child = minikind_test_support::minikind_command()
        .args(["create", "cluster", "--config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Whatever happens, the cluster goes (with minikind's own delete, once the caller has
    // looked), and the create does not outlive the test.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let guard = Cluster { name: name.clone() };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cfg.as_bytes())
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = child.stderr.take().unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut child = Reap(child);
    let mut printed = String::new();
    let mut wait_for = |what: &str, printed: &mut String| loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let mut stderr = String::new();
            let _ = err.read_to_string(&mut stderr);
            panic!("create ended before printing {what:?}:\n{printed}\n{stderr}");
        }
        printed.push_str(&line);
        if line.contains(what) {
            break;
        }
    };
    wait_for(after, &mut printed);
    nix::sys::signal::kill(pid, first).unwrap();
    if !during_rollback.is_empty() {
        wait_for("Deleting what the failed create made", &mut printed);
        for &s in during_rollback {
            nix::sys::signal::kill(pid, s).unwrap();
        }
    }
    let status = minikind_test_support::eventually(
        "the interrupted create to end",
        Duration::from_secs(120),
        || child.0.try_wait().unwrap(),
    );
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    Interrupted {
        name,
        status,
        stderr,
        _guard: guard,
    }
}

impl Interrupted {
    /// Exit code `code`, the error naming `signal`, and nothing of the cluster left: no
    /// container, network or volume with its label, no entry in the tests' kubeconfig.
    fn assert_rolled_back(&self, code: i32, signal: &str) {
        // What was left first: that is what a user would find (and what the old code left).
        assert_eq!(
            labelled_objects(&self.name),
            Vec::<String>::new(),
            "{:?}: {}",
            self.status,
            self.stderr
        );
        let kubeconfig =
            std::fs::read_to_string(minikind_test_support::test_kubeconfig()).unwrap_or_default();
        assert!(
            !kubeconfig.contains(&format!("minikind-{}", self.name)),
            "{kubeconfig}"
        );
        assert_eq!(
            self.status.code(),
            Some(code),
            "{:?}: {}",
            self.status,
            self.stderr
        );
        assert!(
            self.stderr.contains(&format!("interrupted by {signal}")),
            "{}",
            self.stderr
        );
    }
}

#[test]
fn ctrl_c_during_create_removes_what_was_made() {
    // Interrupted once the network exists, as a user pressing Ctrl-C would.
    let r = interrupt_create(
        "e2e-int",
        "✓ Preparing network",
        nix::sys::signal::Signal::SIGINT,
        &[],
    );
    r.assert_rolled_back(130, "SIGINT");
}

#[test]
fn sigterm_during_create_removes_what_was_made() {
    // `kill <pid>` while the nodes boot: the containers and the network exist.
    let r = interrupt_create(
        "e2e-term",
        "✓ Preparing nodes",
        nix::sys::signal::Signal::SIGTERM,
        &[],
    );
    r.assert_rolled_back(143, "SIGTERM");
}

#[test]
fn sighup_during_create_removes_what_was_made() {
    // The terminal went away while the nodes boot.
    let r = interrupt_create(
        "e2e-hup",
        "✓ Preparing nodes",
        nix::sys::signal::Signal::SIGHUP,
        &[],
    );
    r.assert_rolled_back(129, "SIGHUP");
}

#[test]
fn a_second_signal_during_the_rollback_does_not_cut_it_short() {
    use nix::sys::signal::Signal;
    // Ctrl-C, then, while the rollback removes the nodes, an impatient `kill` and a hang-up.
    let r = interrupt_create(
        "e2e-twice",
        "✓ Preparing nodes",
        Signal::SIGINT,
        &[Signal::SIGTERM, Signal::SIGHUP],
    );
    // The first signal is the one the create reports; the rollback ran to its end.
    r.assert_rolled_back(130, "SIGINT");
    assert!(r.stderr.contains("cleanup in progress"), "{}", r.stderr);
}

#[test]
fn an_unreachable_engine_is_one_line_saying_so() {
    let r = minikind_test_support::minikind_command()
        .args(["get", "clusters"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("cannot reach the Docker engine") && err.contains("DOCKER_HOST"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn the_kubeconfig_is_merged_on_create_and_exactly_removed_on_delete() {
    let path = minikind_test_support::test_kubeconfig();
    // Someone else's entry that must survive both the merge and the removal. The file is
    // shared with concurrent tests, so add it the way they do: through the same lock.
    let name = unique_name("e2e-kc");
    let other = format!("keep-{name}");
    {
        let lock = path.with_extension("lock");
        minikind_test_support::eventually("the kubeconfig lock", Duration::from_secs(10), || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
                .ok()
        });
        let existing = std::fs::read_to_string(&path).unwrap_or_default();
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str(&existing).unwrap_or(serde_yaml::Value::Null);
        if doc.is_null() {
            doc = serde_yaml::from_str(
                "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n",
            )
            .unwrap();
        }
        let entry: serde_yaml::Value = serde_yaml::from_str(&format!(
            "name: {other}\ncluster: {{server: 'https://192.0.2.1:6443'}}"
        ))
        .unwrap();
        doc["clusters"].as_sequence_mut().unwrap().push(entry);
        std::fs::write(&path, serde_yaml::to_string(&doc).unwrap()).unwrap();
        std::fs::remove_file(&lock).unwrap();
    }

    // Not --internal this time (the lab upstream still keeps every query on the machine): the
    // API server is reached through the port Docker publishes on the host's loopback.
    let c = Cluster::create("e2e-kc", "dns:\n  upstream: lab\n");
    let internal = docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Internal}}",
        &format!("minikind-{}", c.name),
    ]);
    assert_eq!(internal.stdout.trim(), "false", "{}", internal.stderr);
    let published = docker(&["port", &c.node("control-plane"), "6443/tcp"]);
    assert!(published.ok, "{}", published.stderr);
    let bindings = answers(&published.stdout);
    let [binding] = bindings.as_slice() else {
        panic!("want one binding of 6443/tcp: {bindings:?}");
    };
    let port: u16 = binding
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("6443/tcp is not published on 127.0.0.1: {binding}"));
    assert_ne!(port, 0);
    let server = format!("server: https://127.0.0.1:{port}");

    let text = std::fs::read_to_string(&path).unwrap();
    let ctx = format!("minikind-{}", c.name);
    assert!(text.contains(&ctx) && text.contains(&other), "{text}");
    assert!(text.contains(&server), "the exported kubeconfig: {text}");

    // The exported kubeconfig works: the API answers through it.
    let kubectl = minikind_test_support::kubectl();
    {
        let out = std::process::Command::new(&kubectl)
            .args([
                "--kubeconfig",
                path.to_str().unwrap(),
                "--context",
                &ctx,
                "get",
                "namespaces",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("kube-system"), "{stdout}");
    }
    let printed = minikind(&["get", "kubeconfig", "--name", &c.name]);
    assert!(
        printed.ok && printed.stdout.contains(&ctx),
        "{}",
        printed.stderr
    );
    // The printed (external) kubeconfig on its own works too, through the same loopback port.
    assert!(printed.stdout.contains(&server), "{}", printed.stdout);
    {
        let file = path.with_file_name(format!("printed-{}", c.name));
        std::fs::write(&file, &printed.stdout).unwrap();
        let out = std::process::Command::new(&kubectl)
            .args(["--kubeconfig", file.to_str().unwrap(), "get", "nodes"])
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&c.node("control-plane")), "{stdout}");
    }
    // The port is minikind's choice, published again on every start: after a restart of the
    // control plane the kubeconfig still points at it (an engine-picked port would move).
    let r = docker(&["restart", &c.node("control-plane")]);
    assert!(r.ok, "{}", r.stderr);
    let again = docker(&["port", &c.node("control-plane"), "6443/tcp"]);
    assert!(
        answers(&again.stdout).contains(&format!("127.0.0.1:{port}")),
        "the API port moved from {port} after a restart: {}",
        again.stdout
    );
    eventually(
        "the API through the kubeconfig after a restart",
        Duration::from_secs(60),
        || {
            std::process::Command::new(&kubectl)
                .args(["--kubeconfig", path.to_str().unwrap(), "--context", &ctx])
                .args(["get", "namespaces"])
                .output()
                .ok()
                .filter(|o| o.status.success())
        },
    );

    let internal = minikind(&["get", "kubeconfig", "--name", &c.name, "--internal"]);
    assert!(
        internal
            .stdout
            .contains(&format!("https://{}-control-plane:6443", c.name)),
        "{}",
        internal.stdout
    );

    drop(c);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&ctx), "{text}");
    assert!(text.contains(&other), "{text}");
}

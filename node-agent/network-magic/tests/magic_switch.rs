//! The live switch (`minikind dns magic on|off`): the inverse transform on the golden dumps,
//! and `switch` against the real iptables in a private network namespace the test creates,
//! with other rules around that must survive untouched (nothing on the host is touched).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use minikind_iptables::{Commands, Flavour};
use minikind_network_magic::{
    self as network_magic, MagicOptions, docker_rules_restore, inverse_transform, transform,
};

const HOST: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);
const DOCKER_RESOLV: &str = "nameserver 127.0.0.11\nsearch lab.example\noptions ndots:0\n";

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/magic")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn inverse_of_kinds_output_is_dockers_dump() {
    // The `.expected` files are KIND's own sed applied to real Docker dumps: undoing the magic
    // must give the very dump back, other tables and kube-proxy's rules included.
    for name in ["docker-nft", "docker-legacy", "node-with-kube-nft"] {
        let docker = testdata(&format!("{name}.save"));
        let magic = testdata(&format!("{name}.expected"));
        assert_eq!(inverse_transform(&magic), docker, "{name}");
        assert_eq!(transform(&inverse_transform(&magic), HOST), magic, "{name}");
        assert_eq!(
            inverse_transform(&docker),
            docker,
            "{name} is a fixed point"
        );
    }
    // kind#3054: the magic gave the DNAT rules their `--dport 53` back; the way back keeps it
    // (that is the rule Docker meant) and the magic over it is unchanged.
    let magic = testdata("docker-nft-no-dport.expected");
    let back = inverse_transform(&magic);
    assert!(!back.contains("172.18.0.1"), "{back}");
    assert!(!back.contains("PREROUTING -d"), "{back}");
    assert_eq!(
        back.lines().filter(|l| l.contains("--dport 53")).count(),
        2,
        "{back}"
    );
    assert_eq!(transform(&back, HOST), magic);
}

#[test]
fn a_switch_on_a_node_in_the_wanted_state_restores_nothing() {
    let magic = testdata("node-with-kube-nft.expected");
    assert_eq!(docker_rules_restore(&magic, &transform(&magic, HOST)), None);
    let docker = testdata("node-with-kube-nft.save");
    assert_eq!(
        docker_rules_restore(&docker, &inverse_transform(&docker)),
        None
    );
}

/// Runs `f` on a thread with its own new network namespace (commands it starts inherit it).
/// `None` when this machine does not allow that.
fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        Some(f())
    })
    .join()
    .unwrap()
}

fn sh(command: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sorted_rules(flavour: &str) -> Vec<String> {
    let mut rules: Vec<String> = sh(&format!("iptables-{flavour}-save -t nat"))
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(str::to_string)
        .collect();
    rules.sort();
    rules
}

fn node_files(dir: &Path, flavour: &str) -> MagicOptions {
    std::fs::write(dir.join("resolv.conf"), DOCKER_RESOLV).unwrap();
    std::fs::create_dir_all(dir.join("sys/net/ipv4/conf/all")).unwrap();
    std::fs::write(dir.join("sys/net/ipv4/ip_forward"), "0\n").unwrap();
    std::fs::write(dir.join("sys/net/ipv4/conf/all/route_localnet"), "0\n").unwrap();
    MagicOptions {
        enabled: true,
        dns_search: Some(vec!["corp.example".into()]),
        resolv_conf_path: dir.join("resolv.conf"),
        host_ip: Some(HOST),
        host_name: None,
        hosts_path: dir.join("hosts"),
        route_table: dir.join("route"),
        proc_sys: dir.join("sys"),
        iptables: Commands::in_dir(
            Path::new("/usr/sbin"),
            Flavour::parse_optional(flavour).unwrap(),
        ),
    }
}

/// Boot with the magic, then off, off again, on, on again — with a kube-proxy-style rule
/// added after boot that every switch must leave where it is.
fn off_and_on_live(flavour: &'static str) {
    // A prerequisite of the suite (README): missing, the test fails rather than skips.
    assert!(
        Path::new(&format!("/usr/sbin/iptables-{flavour}-restore")).exists()
            && nix::unistd::geteuid().is_root(),
        "cannot run: needs root and iptables-{flavour}"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let result = in_private_netns(move || {
        let ipt = format!("iptables-{flavour}");
        // Docker's own commands (libnetwork setupIptablesNAT), then kube-proxy's jumps.
        for rule in [
            "-t nat -N DOCKER_OUTPUT",
            "-t nat -I OUTPUT -d 127.0.0.11 -j DOCKER_OUTPUT",
            "-t nat -N DOCKER_POSTROUTING",
            "-t nat -I POSTROUTING -d 127.0.0.11 -j DOCKER_POSTROUTING",
            "-t nat -I DOCKER_OUTPUT -d 127.0.0.11 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:41553",
            "-t nat -I DOCKER_POSTROUTING -s 127.0.0.11 -p udp --sport 41553 -j SNAT --to-source :53",
            "-t nat -I DOCKER_OUTPUT -d 127.0.0.11 -p tcp --dport 53 -j DNAT --to-destination 127.0.0.11:38405",
            "-t nat -I DOCKER_POSTROUTING -s 127.0.0.11 -p tcp --sport 38405 -j SNAT --to-source :53",
            "-t nat -N KUBE-SERVICES",
            "-t nat -I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            "-t nat -I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        ] {
            sh(&format!("{ipt} {rule}"));
        }
        let docker = sorted_rules(flavour);
        let opts = node_files(&root, flavour);
        network_magic::apply(&opts).unwrap();
        let magic = sorted_rules(flavour);
        // kube-proxy syncs after boot: its rule must outlive every switch.
        sh(&format!(
            "{ipt} -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p udp --dport 53 -j RETURN"
        ));
        let off = network_magic::switch(&opts, false).unwrap();
        let after_off = sorted_rules(flavour);
        let resolv_off = std::fs::read_to_string(root.join("resolv.conf")).unwrap();
        let off_again = network_magic::switch(&opts, false).unwrap();
        let status_off = network_magic::status(&opts).unwrap();
        let on = network_magic::switch(&opts, true).unwrap();
        let after_on = sorted_rules(flavour);
        let resolv_on = std::fs::read_to_string(root.join("resolv.conf")).unwrap();
        let on_again = network_magic::switch(&opts, true).unwrap();
        let status_on = network_magic::status(&opts).unwrap();
        let output_chain = sh(&format!("{ipt}-save -t nat"))
            .lines()
            .filter(|l| l.starts_with("-A OUTPUT "))
            .map(str::to_string)
            .collect::<Vec<_>>();
        (
            docker,
            magic,
            off,
            after_off,
            resolv_off,
            off_again,
            status_off,
            on,
            after_on,
            resolv_on,
            on_again,
            status_on,
            output_chain,
        )
    });
    let Some((
        docker,
        magic,
        off,
        after_off,
        resolv_off,
        off_again,
        status_off,
        on,
        after_on,
        resolv_on,
        on_again,
        status_on,
        output_chain,
    )) = result
    else {
        panic!("cannot run: unshare(CLONE_NEWNET) not permitted here (the suite runs as root)");
    };
    let kube = "-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j RETURN".to_string();
    let with_kube = |mut rules: Vec<String>| {
        rules.push(kube.clone());
        rules.sort();
        rules
    };

    assert!(off.rules_changed && off.resolv_conf_changed, "{off}");
    assert_eq!(
        after_off,
        with_kube(docker.clone()),
        "off gives Docker's rules back"
    );
    assert_eq!(resolv_off, DOCKER_RESOLV);
    assert!(!off_again.rules_changed && !off_again.resolv_conf_changed);
    assert!(!status_off.in_place(), "{status_off}");

    assert!(on.rules_changed && on.resolv_conf_changed, "{on}");
    assert_eq!(on.host_ip, Some(HOST));
    assert_eq!(
        after_on,
        with_kube(magic.clone()),
        "on gives the boot rules back"
    );
    assert_eq!(
        resolv_on,
        "search corp.example\nnameserver 172.18.0.1\noptions ndots:0\n"
    );
    assert!(!on_again.rules_changed && !on_again.resolv_conf_changed);
    assert!(status_on.in_place(), "{status_on}");
    // The replaced jump kept its place after kube-proxy's.
    assert_eq!(
        output_chain,
        vec![
            "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
            "-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT",
        ]
    );
}

#[test]
fn switch_off_and_on_live_with_iptables_nft() {
    off_and_on_live("nft");
}

#[test]
fn switch_off_and_on_live_with_iptables_legacy() {
    off_and_on_live("legacy");
}

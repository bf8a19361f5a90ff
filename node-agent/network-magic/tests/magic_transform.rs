//! Golden tests of the network-magic transform: each dump in `testdata/magic` must become
//! exactly what KIND's entrypoint `sed` makes of it, and transforming again changes nothing.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use minikind_network_magic::{inspect_rules, transform};

const HOST: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/magic")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn check_golden(stem: &str) {
    let save = testdata(&format!("{stem}.save"));
    let expected = testdata(&format!("{stem}.expected"));
    let once = transform(&save, HOST);
    assert_eq!(
        once, expected,
        "{stem}: transform differs from KIND's sed output"
    );
    let twice = transform(&once, HOST);
    assert_eq!(twice, once, "{stem}: a second run changed the rules");
    let prerouting = twice
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING") && l.ends_with("-j DOCKER_OUTPUT"))
        .count();
    assert_eq!(
        prerouting, 1,
        "{stem}: exactly one PREROUTING jump to DOCKER_OUTPUT"
    );
}

#[test]
fn magic_docker_legacy_dump() {
    check_golden("docker-legacy");
}

#[test]
fn magic_docker_nft_dump() {
    check_golden("docker-nft");
}

#[test]
fn magic_dump_without_dport_gets_dport_53() {
    check_golden("docker-nft-no-dport");
    let once = transform(&testdata("docker-nft-no-dport.save"), HOST);
    let dnat: Vec<&str> = once.lines().filter(|l| l.contains("-j DNAT")).collect();
    assert_eq!(dnat.len(), 2);
    assert!(
        dnat.iter()
            .all(|l| l.contains(" --dport 53 -j DNAT --to-destination 127.0.0.11:"))
    );
}

#[test]
fn magic_node_with_other_rules_keeps_them() {
    check_golden("node-with-kube-nft");
    let save = testdata("node-with-kube-nft.save");
    let once = transform(&save, HOST);
    for line in save.lines().filter(|l| l.contains("KUBE-")) {
        assert!(
            once.lines().any(|l| l == line),
            "rule lost or altered: {line}"
        );
    }
}

#[test]
fn magic_second_run_is_a_fixed_point_for_any_host_ip() {
    let save = testdata("docker-legacy.save");
    let first = transform(&save, HOST);
    // A later boot with another host IP cannot find 127.0.0.11 any more: nothing changes,
    // in particular no second PREROUTING jump appears.
    assert_eq!(transform(&first, Ipv4Addr::new(10, 0, 0, 1)), first);
    let (left, jumps, chain) = inspect_rules(&first);
    assert_eq!(
        (left, jumps, chain),
        (0, vec!["172.18.0.1/32".to_string()], true)
    );
}

#[test]
fn magic_empty_and_unrelated_dumps_pass_through() {
    assert_eq!(transform("", HOST), "");
    let filter_only = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 127.0.0.11/32 -j ACCEPT\nCOMMIT\n";
    assert_eq!(transform(filter_only, HOST), filter_only);
    // No trailing newline on the last line: the copy still lands on its own line.
    assert_eq!(
        transform("-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT", HOST),
        "-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT\n-A PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT"
    );
}

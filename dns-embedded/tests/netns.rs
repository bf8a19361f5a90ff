//! The resolver in a real network namespace that the test creates: it binds 127.0.0.11 there,
//! installs Docker's NAT rules with iptables-restore, and a client inside the namespace reaches
//! it at 127.0.0.11:53 through the DNAT, over UDP and TCP. A restart rebuilds the rules without
//! duplicating any. Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and `ip`/`iptables`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use minikind_dns_embedded::embedded::netns::in_netns;
use minikind_dns_embedded::lab_upstream::{self, Zone};
use minikind_dns_embedded::querylog::QueryLog;
use minikind_dns_embedded::{
    ContainerNames, EmbeddedConfig, EmbeddedResolver, NamesTable, NetworkNames,
};
use minikind_iptables::{Commands, Flavour};

/// A named network namespace, deleted when dropped (also when the test fails).
struct TestNetns {
    name: String,
}

impl TestNetns {
    fn create() -> Result<Self, String> {
        let name = format!("mk-dnsemb-{}-{}", std::process::id(), rand::random::<u32>());
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    fn nat_rules(&self, save: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, save, "-t", "nat"])
            .output()
            .expect("iptables-save runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Drop the timestamped comments and zero the counters, as the golden text has them.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.rfind(" [") {
                Some(i) if l.starts_with(':') => format!("{} [0:0]", &l[..i]),
                _ => l.to_string(),
            })
            .map(|l| l + "\n")
            .collect()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn names() -> NamesTable {
    NamesTable {
        networks: vec![NetworkNames {
            network: "minikind-lab".into(),
            containers: vec![ContainerNames {
                name: "lab-worker".into(),
                ipv4: Some("172.18.0.3".parse().unwrap()),
                ..Default::default()
            }],
        }],
    }
}

fn query_bytes(name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// Asks 127.0.0.11:53 from inside the namespace, the way a process in the container would.
fn ask_inside(ns: &TestNetns, name: &str, tcp: bool) -> Message {
    let query = query_bytes(name);
    let server: SocketAddr = (Ipv4Addr::new(127, 0, 0, 11), 53).into();
    let reply = in_netns(Some(&ns.path()), move || -> std::io::Result<Vec<u8>> {
        let timeout = Some(Duration::from_secs(5));
        if tcp {
            let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
            stream.set_read_timeout(timeout)?;
            let mut framed = (query.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&query);
            stream.write_all(&framed)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf)?;
            Ok(buf)
        } else {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.set_read_timeout(timeout)?;
            socket.send_to(&query, server)?;
            let mut buf = vec![0u8; 4096];
            let (n, from) = socket.recv_from(&mut buf)?;
            // The SNAT rule makes the reply come from port 53, as the client expects.
            assert_eq!(from, server);
            buf.truncate(n);
            Ok(buf)
        }
    })
    .expect("entering the test namespace")
    .expect("the resolver answers through the DNAT");
    Message::from_vec(&reply).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_127_0_0_11_in_a_namespace_through_dockers_nat_rules() {
    scenario(Commands::on_path(None), "iptables-save").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_iptables_legacy() {
    scenario(
        Commands::on_path(Some(Flavour::Legacy)),
        "iptables-legacy-save",
    )
    .await;
}

async fn scenario(tools: Commands, save: &str) {
    let ns = match TestNetns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace here ({e})");
            return;
        }
    };
    let upstream = lab_upstream::start(
        "127.0.0.1:0".parse().unwrap(),
        Zone::default_zone(),
        QueryLog::Discard,
    )
    .await
    .unwrap();
    let config = || EmbeddedConfig {
        servers: vec![upstream.addr()],
        netns: Some(ns.path()),
        log: QueryLog::Discard,
        ..Default::default()
    };

    let first = EmbeddedResolver::start(config(), &names()).await.unwrap();
    assert_eq!(first.udp_addr().ip().to_string(), "127.0.0.11");
    let rules = tokio::task::block_in_place(|| first.apply_rules(&tools)).unwrap();
    assert_eq!(
        ns.nat_rules(save),
        rules.save_text(),
        "exactly Docker's rules"
    );

    let ns_ref = &ns;
    let check = || async move {
        let local = tokio::task::block_in_place(|| ask_inside(ns_ref, "LAB-worker.", false));
        assert_eq!(
            local.answers[0].data.ip_addr().unwrap().to_string(),
            "172.18.0.3"
        );
        let forwarded =
            tokio::task::block_in_place(|| ask_inside(ns_ref, "www.example.test.", true));
        assert_eq!(forwarded.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            forwarded.answers[0].data.ip_addr().unwrap().to_string(),
            "192.0.2.10"
        );
    };
    check().await;

    // Restart: new random ports, chains flushed and rebuilt, jumps not duplicated.
    first.shutdown();
    let second = EmbeddedResolver::start(config(), &names()).await.unwrap();
    let rules2 = tokio::task::block_in_place(|| second.apply_rules(&tools)).unwrap();
    let after = ns.nat_rules(save);
    assert_eq!(after, rules2.save_text());
    assert_eq!(after.lines().filter(|l| l.starts_with("-A")).count(), 6);
    check().await;
    // Applying again changes nothing.
    tokio::task::block_in_place(|| second.apply_rules(&tools)).unwrap();
    assert_eq!(ns.nat_rules(save), after);
}

/// The `dns-embedded` command itself, in the namespace, installing its rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_serves_in_a_namespace_and_installs_the_rules() {
    let ns = match TestNetns::create() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace here ({e})");
            return;
        }
    };
    let upstream = lab_upstream::start(
        "127.0.0.1:0".parse().unwrap(),
        Zone::default_zone(),
        QueryLog::Discard,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names_path = dir.path().join("names.json");
    std::fs::write(&names_path, serde_json::to_string(&names()).unwrap()).unwrap();
    let ready = dir.path().join("ready.json");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_minikind-dns-embedded"))
            .args(["dns-embedded", "--names"])
            .arg(&names_path)
            .args(["--servers", &upstream.addr().to_string(), "--netns"])
            .arg(ns.path())
            .arg("--ready-file")
            .arg(&ready)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let info: serde_json::Value = loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && text.ends_with('\n')
        {
            break serde_json::from_str(&text).unwrap();
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("dns-embedded exited: {status}");
        }
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let udp: SocketAddr = info["udp"].as_str().unwrap().parse().unwrap();
    let tcp: SocketAddr = info["tcp"].as_str().unwrap().parse().unwrap();
    let expected = minikind_dns_embedded::DockerDnsRules {
        resolver_ip: Ipv4Addr::new(127, 0, 0, 11),
        udp_port: udp.port(),
        tcp_port: tcp.port(),
    };
    assert_eq!(ns.nat_rules("iptables-save"), expected.save_text());
    let forwarded = tokio::task::block_in_place(|| ask_inside(&ns, "www.example.test.", false));
    assert_eq!(
        forwarded.answers[0].data.ip_addr().unwrap().to_string(),
        "192.0.2.10"
    );
}

/// A child process killed by its PID when the test ends, passing or failing.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

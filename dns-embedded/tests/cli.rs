//! The two commands run as real processes (this crate's stand-alone binary), on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use minikind_dns_embedded::exchange::exchange;
use minikind_dns_embedded::{ContainerNames, NamesTable, NetworkNames};
use minikind_dns_log::Proto;

const BIN: &str = env!("CARGO_BIN_EXE_minikind-dns-embedded");
const TIMEOUT: Duration = Duration::from_secs(5);

/// A child process killed (by its PID) when the test ends, passing or failing.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> Server {
    Server(
        Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the crate's binary starts"),
    )
}

fn wait_for_file(path: &Path, server: &mut Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("server exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn query(name: &str) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m
}

fn ip_of(reply: &Message) -> String {
    reply.answers[0].data.ip_addr().unwrap().to_string()
}

#[tokio::test]
async fn lab_upstream_and_dns_embedded_processes_chain_together() {
    let dir = tempfile::tempdir().unwrap();
    let up_ready = dir.path().join("upstream.ready");
    let mut upstream = spawn(&[
        "lab-upstream",
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        up_ready.to_str().unwrap(),
    ]);
    let up_addr: SocketAddr = wait_for_file(&up_ready, &mut upstream)
        .trim()
        .parse()
        .unwrap();

    let names_path = dir.path().join("names.json");
    let mut table = NamesTable {
        networks: vec![NetworkNames {
            network: "minikind-lab".into(),
            containers: vec![ContainerNames {
                name: "lab-worker".into(),
                ipv4: Some("172.18.0.3".parse().unwrap()),
                ..Default::default()
            }],
        }],
    };
    std::fs::write(&names_path, serde_json::to_string(&table).unwrap()).unwrap();
    let ready = dir.path().join("embedded.ready");
    let mut embedded = spawn(&[
        "dns-embedded",
        "--names",
        names_path.to_str().unwrap(),
        "--servers",
        &up_addr.to_string(),
        "--listen-ip",
        "127.0.0.1",
        "--no-iptables",
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    let info: serde_json::Value =
        serde_json::from_str(&wait_for_file(&ready, &mut embedded)).unwrap();
    let udp: SocketAddr = info["udp"].as_str().unwrap().parse().unwrap();
    let tcp: SocketAddr = info["tcp"].as_str().unwrap().parse().unwrap();
    assert_eq!(info["servers"][0].as_str().unwrap(), up_addr.to_string());

    let local = exchange(udp, Proto::Udp, &query("lab-worker."), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ip_of(&local), "172.18.0.3");
    let forwarded = exchange(tcp, Proto::Tcp, &query("www.example.test."), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(ip_of(&forwarded), "192.0.2.10");
    let outside = exchange(udp, Proto::Udp, &query("outside.invalid."), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        outside.metadata.response_code,
        ResponseCode::NXDomain,
        "the upstream's NXDOMAIN for a name outside its zone is passed on as is"
    );

    // The names file is watched: a new node appears without a restart.
    table.networks[0].containers.push(ContainerNames {
        name: "lab-worker2".into(),
        ipv4: Some("172.18.0.4".parse().unwrap()),
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(1100)); // a different mtime, even on coarse clocks
    std::fs::write(&names_path, serde_json::to_string(&table).unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = exchange(udp, Proto::Udp, &query("lab-worker2."), TIMEOUT)
            .await
            .unwrap();
        if !r.answers.is_empty() {
            assert_eq!(ip_of(&r), "172.18.0.4");
            break;
        }
        assert!(Instant::now() < deadline, "the new name never appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let status = Command::new(BIN)
        .arg("nope")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn sigterm_stops_the_servers_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut upstream = spawn(&[
        "lab-upstream",
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        ready.to_str().unwrap(),
    ]);
    wait_for_file(&ready, &mut upstream);
    let pid = nix::unistd::Pid::from_raw(upstream.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = upstream.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

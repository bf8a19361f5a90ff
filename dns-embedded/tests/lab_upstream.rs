//! The lab upstream served on loopback at a random port, queried over UDP and TCP.

use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use minikind_dns_embedded::exchange::exchange;
use minikind_dns_embedded::lab_upstream::{self, BIG_RECORDS, Zone};
use minikind_dns_embedded::querylog::QueryLog;
use minikind_dns_log::Proto;
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_secs(5);

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

async fn start() -> (lab_upstream::LabUpstream, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = lab_upstream::start(
        "127.0.0.1:0".parse().unwrap(),
        Zone::default_zone(),
        QueryLog::Channel(tx),
    )
    .await
    .expect("lab upstream starts on loopback");
    (server, rx)
}

#[tokio::test]
async fn answers_over_udp_and_tcp_on_one_port() {
    let (server, _log) = start().await;
    for proto in [Proto::Udp, Proto::Tcp] {
        let reply = exchange(
            server.addr(),
            proto,
            &query("www.example.test.", RecordType::A, None),
            TIMEOUT,
        )
        .await
        .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        assert_eq!(reply.answers.len(), 1, "{proto:?}");
        assert_eq!(
            reply.answers[0].data.ip_addr().unwrap().to_string(),
            "192.0.2.10"
        );
    }
}

#[tokio::test]
async fn big_answer_truncates_on_udp_and_fits_edns_and_tcp() {
    let (server, _log) = start().await;
    let q = query("big.example.test.", RecordType::A, None);
    let udp = exchange(server.addr(), Proto::Udp, &q, TIMEOUT)
        .await
        .unwrap();
    assert!(udp.metadata.truncation, "60 A records exceed 512 bytes");
    assert!(udp.to_vec().unwrap().len() <= 512);

    let edns = query("big.example.test.", RecordType::A, Some(4096));
    let udp_edns = exchange(server.addr(), Proto::Udp, &edns, TIMEOUT)
        .await
        .unwrap();
    assert!(!udp_edns.metadata.truncation);
    assert_eq!(udp_edns.answers.len(), usize::from(BIG_RECORDS));
    assert!(udp_edns.edns.is_some(), "OPT is echoed");

    let tcp = exchange(server.addr(), Proto::Tcp, &q, TIMEOUT)
        .await
        .unwrap();
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), usize::from(BIG_RECORDS));
}

#[tokio::test]
async fn negative_answers_and_refusal() {
    let (server, _log) = start().await;
    let nx = exchange(
        server.addr(),
        Proto::Udp,
        &query("missing.example.test.", RecordType::A, None),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities.len(), 1);
    let outside = exchange(
        server.addr(),
        Proto::Tcp,
        &query("kubernetes.io.", RecordType::A, None),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(outside.metadata.response_code, ResponseCode::NXDomain);
    assert!(outside.authorities[0].name.is_root());
}

#[tokio::test]
async fn every_query_is_logged_in_coredns_format() {
    let (server, mut log) = start().await;
    let q = query("many.example.test.", RecordType::A, None);
    let reply = exchange(server.addr(), Proto::Udp, &q, TIMEOUT)
        .await
        .unwrap();
    assert!(reply.answers.len() >= 8);
    let line = tokio::time::timeout(TIMEOUT, log.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(line.starts_with("[INFO] 127.0.0.1:"), "{line}");
    let expected = format!(
        " - {} \"A IN many.example.test. udp {} false 512\" NOERROR qr,aa,rd,ra {} ",
        q.metadata.id,
        q.to_vec().unwrap().len(),
        reply.to_vec().unwrap().len()
    );
    assert!(
        line.contains(&expected),
        "{line}\nexpected to contain {expected}"
    );
    assert!(line.ends_with('s'));
}

#[tokio::test]
async fn garbage_gets_formerr_and_the_server_keeps_serving() {
    let (server, _log) = start().await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff],
        server.addr(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(TIMEOUT, sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &buf[..4],
        &[0xab, 0xcd, 0x81, 0x01],
        "FORMERR with the same id"
    );
    assert_eq!(n, 12);
    let ok = exchange(
        server.addr(),
        Proto::Udp,
        &query("example.test.", RecordType::SOA, None),
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(ok.answers.len(), 1);
}

#[test]
fn cli_rejects_bad_flags_and_missing_zone_files() {
    let args = |v: &[&str]| {
        v.iter()
            .map(Into::into)
            .collect::<Vec<std::ffi::OsString>>()
    };
    assert_eq!(
        lab_upstream::cli_main(args(&["lab-upstream", "--listen", "nonsense"])),
        2
    );
    assert_eq!(
        lab_upstream::cli_main(args(&["lab-upstream", "--zone", "/nonexistent/zone.db"])),
        1
    );
    assert_eq!(
        lab_upstream::cli_main(args(&["lab-upstream", "--print-zone"])),
        0
    );
}

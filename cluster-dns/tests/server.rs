//! The server itself: block selection across zones and ports, truncation with and without EDNS,
//! and bad input (the server answers FORMERR or drops, and keeps answering).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use support::dns::*;

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_zone_wins_across_blocks_and_ports() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let corefile = format!(
        "# several blocks\n.:{p1} {{\n bind 127.0.0.1\n hosts {{\n  10.0.0.1 a.example.org\n  fallthrough\n }}\n forward . {up}\n}}\n\
         example.org:{p1} {{\n bind 127.0.0.1\n hosts {{\n  10.0.0.2 a.example.org\n }}\n}}\n\
         sub.example.org:{p1}, example.net:{p2} {{\n bind 127.0.0.1\n hosts {{\n  10.0.0.3 a.sub.example.org\n  10.0.0.4 a.example.net\n }}\n}}\n\
         10.0.0.0/25:{p3} {{\n bind 127.0.0.1\n hosts {{\n  10.0.0.5 five.lab\n }}\n}}\n",
        up = up.addr
    );
    let (_inst, _) = start_server(&corefile).await;
    let a = |m: &Message| rrs(&m.answers);
    assert_eq!(
        a(&q(lo(p1), "a.example.org.", RecordType::A, false).await),
        vec!["a.example.org. A 10.0.0.2"]
    );
    assert_eq!(
        a(&q(lo(p1), "A.SUB.example.org.", RecordType::A, true).await),
        vec!["A.SUB.example.org. A 10.0.0.3"]
    );
    assert_eq!(
        a(&q(lo(p1), "other.test.", RecordType::A, false).await),
        vec!["other.test. A 192.0.2.10"]
    );
    assert_eq!(
        a(&q(lo(p2), "a.example.net.", RecordType::A, false).await),
        vec!["a.example.net. A 10.0.0.4"]
    );
    assert_eq!(
        q(lo(p2), "a.example.org.", RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    // A reverse zone written as a CIDR, filtered by the network.
    assert_eq!(
        a(&q(lo(p3), "5.0.0.10.in-addr.arpa.", RecordType::PTR, false).await),
        vec!["5.0.0.10.in-addr.arpa. PTR five.lab."]
    );
    assert_eq!(
        q(lo(p3), "200.0.0.10.in-addr.arpa.", RecordType::PTR, false)
            .await
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    assert_eq!(
        q(lo(p3), "5.1.0.10.in-addr.arpa.", RecordType::PTR, false)
            .await
            .metadata
            .response_code,
        ResponseCode::Refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_zone_on_a_port_is_an_error() {
    let p = free_port();
    let cf = format!(
        "example.org:{p} {{\n bind 127.0.0.1\n}}\nexample.org:{p} {{\n bind 127.0.0.1\n}}\n"
    );
    let opts = minikind_cluster_dns::Options {
        banner: false,
        ..Default::default()
    };
    let err = minikind_cluster_dns::Instance::start_text(&cf, opts)
        .await
        .err()
        .expect("overlap refused");
    assert!(format!("{err:#}").contains("already defined"), "{err:#}");
}

async fn big_server() -> (SocketAddr, std::sync::Arc<minikind_cluster_dns::Instance>) {
    let p = free_port();
    let mut entries = String::new();
    for i in 1..=60 {
        entries.push_str(&format!("  10.0.1.{i} big.example.org\n"));
    }
    let cf = format!(".:{p} {{\n bind 127.0.0.1\n hosts {{\n{entries} }}\n}}\n");
    let (inst, _) = start_server(&cf).await;
    (lo(p), inst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_with_and_without_edns() {
    let (s, _inst) = big_server().await;
    // Plain UDP: 512 bytes, TC set.
    let (m, size) = ask(
        s,
        &query_msg("big.example.org.", RecordType::A, None),
        false,
    )
    .await;
    assert!(size <= 512, "{size}");
    assert!(m.metadata.truncation);
    assert!(m.answers.len() < 60);
    assert!(m.edns.is_none());
    // EDNS 1232: everything fits, OPT echoed with the client's size.
    let (m, size) = ask(
        s,
        &query_msg("big.example.org.", RecordType::A, Some(1232)),
        false,
    )
    .await;
    assert!(!m.metadata.truncation, "size {size}");
    assert_eq!(m.answers.len(), 60);
    assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(1232));
    // EDNS 600: truncated to 600 with the OPT kept.
    let (m, size) = ask(
        s,
        &query_msg("big.example.org.", RecordType::A, Some(600)),
        false,
    )
    .await;
    assert!(size <= 600 && size > 512, "{size}");
    assert!(m.metadata.truncation);
    assert!(m.edns.is_some());
    // TCP: all of it.
    let (m, _) = ask(s, &query_msg("big.example.org.", RecordType::A, None), true).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
}

/// A valid query still gets its answer.
async fn still_answers(s: SocketAddr) {
    let m = q(s, "big.example.org.", RecordType::A, true).await;
    assert_eq!(m.answers.len(), 60);
}

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [id, flags, qd, an, ns, ar] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_formerr_or_dropped() {
    let (s, _inst) = big_server().await;
    let wait = Duration::from_millis(300);
    let rcode = |b: &[u8]| b[3] & 0x0f;

    // Too short for a header: dropped.
    assert_eq!(udp_raw(s, &[1, 2, 3, 4, 5], wait).await, None);
    // A response (QR set): dropped.
    let mut r = header(7, 0x8000, 1, 0, 0, 0);
    r.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(udp_raw(s, &r, wait).await, None);
    // No question: FORMERR with the id.
    let out = udp_raw(s, &header(0x1234, 0x0100, 0, 0, 0, 0), wait)
        .await
        .expect("reply");
    assert_eq!((&out[..2], rcode(&out)), (&[0x12u8, 0x34][..], 1));
    // Two questions: FORMERR.
    let mut two = header(9, 0x0100, 2, 0, 0, 0);
    for _ in 0..2 {
        two.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
    }
    assert_eq!(rcode(&udp_raw(s, &two, wait).await.expect("reply")), 1);
    // A compression pointer pointing at itself.
    let mut lp = header(10, 0x0100, 1, 0, 0, 0);
    lp.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode(&udp_raw(s, &lp, wait).await.expect("reply")), 1);
    // Two pointers pointing at each other.
    let mut lp2 = header(11, 0x0100, 1, 0, 0, 0);
    lp2.extend_from_slice(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode(&udp_raw(s, &lp2, wait).await.expect("reply")), 1);
    // 200 one-letter labels: longer than 255 bytes.
    let mut huge = header(12, 0x0100, 1, 0, 0, 0);
    for _ in 0..200 {
        huge.extend_from_slice(&[1, b'a']);
    }
    huge.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(rcode(&udp_raw(s, &huge, wait).await.expect("reply")), 1);
    // A question cut short.
    let mut cut = header(13, 0x0100, 1, 0, 0, 0);
    cut.extend_from_slice(&[3, b'a', b'b']);
    assert_eq!(rcode(&udp_raw(s, &cut, wait).await.expect("reply")), 1);
    // Counts promising records that are not there.
    let mut lie = header(14, 0x0100, 1, 5, 0, 0);
    lie.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
    assert_eq!(rcode(&udp_raw(s, &lie, wait).await.expect("reply")), 1);
    // An UPDATE: NOTIMP.
    let mut upd = query_msg("big.example.org.", RecordType::A, None);
    upd.metadata.op_code = OpCode::Update;
    let out = udp_raw(s, &upd.to_vec().unwrap(), wait)
        .await
        .expect("reply");
    assert_eq!(rcode(&out), 4);
    // EDNS version 1: BADVERS (16 = extended rcode 1 in the OPT, 0 in the header).
    let mut m = query_msg("big.example.org.", RecordType::A, Some(1232));
    if let Some(e) = m.edns.as_mut() {
        e.set_version(1);
    }
    let out = udp_raw(s, &m.to_vec().unwrap(), wait).await.expect("reply");
    // 16 is BADVERS (RFC 6891); hickory decodes the shared code as BADSIG.
    assert_eq!(
        u16::from(Message::from_vec(&out).unwrap().metadata.response_code),
        16
    );
    // Random bytes: every reply is a FORMERR header, and the server keeps going.
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    for _ in 0..200 {
        let len = (seed % 300) as usize;
        let mut b = Vec::with_capacity(len);
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b.push(seed as u8);
        }
        if let Some(out) = udp_raw(s, &b, Duration::from_millis(10)).await {
            assert!(out.len() >= 12);
            assert_eq!(out[2] & 0x80, 0x80, "a reply is a response");
        }
    }
    // Same over TCP.
    assert_eq!(rcode(&tcp_raw(s, &lp).await), 1);
    still_answers(s).await;
}

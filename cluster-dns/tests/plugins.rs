//! forward, cache, loop, reload, hosts, loadbalance, health, ready and prometheus against fake
//! upstreams on loopback.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use minikind_cluster_dns::metrics::registry;
use support::dns::*;

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn forward_server(
    upstreams: &[SocketAddr],
    options: &str,
) -> (SocketAddr, std::sync::Arc<minikind_cluster_dns::Instance>) {
    let p = free_port();
    let to: Vec<String> = upstreams.iter().map(|a| a.to_string()).collect();
    let cf = format!(
        ".:{p} {{\n bind 127.0.0.1\n errors\n forward . {} {{\n{options}\n }}\n}}\n",
        to.join(" ")
    );
    let (inst, _) = start_server(&cf).await;
    (lo(p), inst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_passes_answers_and_errors() {
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let (s, _i) = forward_server(&[good.addr], "").await;
    let m = q(s, "www.example.org.", RecordType::A, false).await;
    assert_eq!(rrs(&m.answers), vec!["www.example.org. A 192.0.2.10"]);
    assert!(m.metadata.recursion_available, "the upstream's RA is kept");
    assert_eq!(
        q(s, "www.example.org.", RecordType::TXT, false)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );

    let sf = FakeUpstream::start(Behaviour::ServFail).await;
    let (s, _i2) = forward_server(&[sf.addr], "").await;
    assert_eq!(
        q(s, "x.example.org.", RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::ServFail
    );
    let rf = FakeUpstream::start(Behaviour::Refused).await;
    let (s, _i3) = forward_server(&[rf.addr], "").await;
    assert_eq!(
        q(s, "x.example.org.", RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::Refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_timeout_is_servfail_within_the_deadline() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let (s, _i) = forward_server(&[silent.addr], "").await;
    let t = Instant::now();
    let m = q(s, "slow.example.org.", RecordType::A, false).await;
    let took = t.elapsed();
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_truncation_and_transports() {
    let tc = FakeUpstream::start(Behaviour::Truncate).await;
    // Default: the client's transport; a truncated UDP reply is returned as is.
    let (s, _i) = forward_server(&[tc.addr], "").await;
    let m = q(s, "t.example.org.", RecordType::A, false).await;
    assert!(m.metadata.truncation);
    let m = q(s, "t.example.org.", RecordType::A, true).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(tc.tcp_queries.load(std::sync::atomic::Ordering::SeqCst), 1);
    // force_tcp: UDP clients are served over TCP upstream.
    let (s, _i2) = forward_server(&[tc.addr], "  force_tcp").await;
    assert_eq!(
        q(s, "t.example.org.", RecordType::A, false)
            .await
            .answers
            .len(),
        1
    );
    // prefer_udp: a truncated UDP answer is retried over TCP.
    let (s, _i3) = forward_server(&[tc.addr], "  prefer_udp").await;
    let m = q(s, "t.example.org.", RecordType::A, true).await;
    assert_eq!(m.answers.len(), 1);
    assert!(!m.metadata.truncation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_skips_a_dead_upstream_after_health_checks() {
    let dead = lo(free_port()); // nothing listens: connection refused
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let (s, _i) = forward_server(
        &[dead, good.addr],
        "  policy sequential\n  health_check 100ms\n  max_fails 2",
    )
    .await;
    assert_eq!(
        q(s, "a.example.org.", RecordType::A, false)
            .await
            .answers
            .len(),
        1
    );
    // Health checks against the dead one fail every 100 ms; after 3 it is down.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let to = dead.to_string();
    let before = registry().forward_requests.with(&[&to]).get();
    for i in 0..10 {
        assert_eq!(
            q(s, &format!("n{i}.example.org."), RecordType::A, false)
                .await
                .answers
                .len(),
            1
        );
    }
    assert_eq!(
        registry().forward_requests.with(&[&to]).get(),
        before,
        "the dead upstream is skipped"
    );
    assert!(registry().forward_healthcheck_failures.with(&[&to]).get() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_max_concurrent_refuses_the_excess() {
    let slow = FakeUpstream::start(Behaviour::Slow(400)).await;
    let (s, _i) = forward_server(&[slow.addr], "  max_concurrent 2").await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(tokio::spawn(async move {
            q(s, &format!("c{i}.example.org."), RecordType::A, false)
                .await
                .metadata
                .response_code
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let refused = codes
        .iter()
        .filter(|c| **c == ResponseCode::Refused)
        .count();
    assert!(refused >= 3, "{codes:?}");
    assert!(codes.contains(&ResponseCode::NoError), "{codes:?}");
    assert_eq!(
        registry().forward_max_concurrent_rejects.with(&[]).get() as usize,
        refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_success_denial_servfail_and_prefetch() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let p = free_port();
    let cf = format!(
        ".:{p} {{\n bind 127.0.0.1\n cache 30 {{\n  prefetch 1 1m 90%\n }}\n forward . {}\n}}\n",
        up.addr
    );
    let (_i, _) = start_server(&cf).await;
    let s = lo(p);
    let m1 = q(s, "c.example.org.", RecordType::A, false).await;
    assert_eq!(m1.answers[0].ttl, 300);
    let m2 = q(s, "C.EXAMPLE.org.", RecordType::A, true).await;
    assert_eq!(up.queries(), 1, "second answer from the cache");
    assert!(
        m2.answers[0].ttl <= 30,
        "TTL capped by the cache: {}",
        m2.answers[0].ttl
    );
    assert_eq!(
        m2.answers[0].name.to_ascii(),
        "C.EXAMPLE.org.",
        "the asker's spelling"
    );
    assert!(m2.metadata.authoritative);
    // A hit for an EDNS query carries the OPT record.
    let (m3, _) = ask(
        s,
        &query_msg("c.example.org.", RecordType::A, Some(1232)),
        false,
    )
    .await;
    assert_eq!(m3.edns.as_ref().map(|e| e.max_payload()), Some(1232));
    assert_eq!(m3.answers.len(), 1);
    assert_eq!(up.queries(), 1);
    // NXDOMAIN without an SOA is not cached.
    q(s, "c.example.org.", RecordType::TXT, false).await;
    q(s, "c.example.org.", RecordType::TXT, false).await;
    assert_eq!(up.queries(), 3);
    // Prefetch: once 10% of the TTL is gone, a hit refreshes the entry in the background.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    q(s, "c.example.org.", RecordType::A, false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.queries(), 4, "prefetched");
    assert!(
        registry()
            .cache_hits
            .with(&[&format!("dns://:{p}"), "success", ".", ""])
            .get()
            >= 2
    );

    // SERVFAIL is cached for the servfail duration.
    let sf = FakeUpstream::start(Behaviour::ServFail).await;
    let p2 = free_port();
    let cf = format!(
        ".:{p2} {{\n bind 127.0.0.1\n cache {{\n  servfail 2s\n }}\n forward . {}\n}}\n",
        sf.addr
    );
    let (_i2, _) = start_server(&cf).await;
    for _ in 0..3 {
        assert_eq!(
            q(lo(p2), "f.example.org.", RecordType::A, false)
                .await
                .metadata
                .response_code,
            ResponseCode::ServFail
        );
    }
    assert_eq!(sf.queries(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_is_detected_with_coredns_message() {
    let p = free_port();
    let cf = format!(".:{p} {{\n bind 127.0.0.1\n loop\n forward . 127.0.0.1:{p}\n}}\n");
    let (_i, fatal) = start_server(&cf).await;
    let until = Instant::now() + Duration::from_secs(10);
    while fatal.lock().unwrap().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let msgs = fatal.lock().unwrap().clone();
    let msg = msgs.first().expect("loop detected");
    assert!(msg.starts_with("Loop (127.0.0.1:"), "{msg}");
    assert!(
        msg.contains(&format!(" -> 127.0.0.1:{p}) detected for zone \".\"")),
        "{msg}"
    );
    assert!(msg.contains("Query: \"HINFO "), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loop_with_a_real_upstream() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let p = free_port();
    let cf = format!(
        ".:{p} {{\n bind 127.0.0.1\n loop\n forward . {}\n}}\n",
        up.addr
    );
    let (_i, fatal) = start_server(&cf).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fatal.lock().unwrap().is_empty());
    assert!(up.queries() >= 1, "the probe went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_good_files_and_keeps_running_on_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Corefile");
    let (p, p2) = (free_port(), free_port());
    let v1 =
        format!(".:{p} {{\n bind 127.0.0.1\n reload 2s 0s\n hosts {{\n  10.1.1.1 a.lab\n }}\n}}\n");
    std::fs::write(&path, &v1).unwrap();
    let opts = minikind_cluster_dns::Options {
        banner: false,
        udp_workers: 1,
        ..Default::default()
    };
    let _inst = minikind_cluster_dns::Instance::start_file(path.clone(), opts)
        .await
        .unwrap();
    let a = |m: hickory_proto::op::Message| rrs(&m.answers);
    assert_eq!(
        a(q(lo(p), "a.lab.", RecordType::A, false).await),
        vec!["a.lab. A 10.1.1.1"]
    );

    let v2 = format!(
        ".:{p} {{\n bind 127.0.0.1\n reload 2s 0s\n hosts {{\n  10.2.2.2 a.lab\n }}\n}}\nother.lab:{p2} {{\n bind 127.0.0.1\n hosts {{\n  10.3.3.3 x.other.lab\n }}\n}}\n"
    );
    std::fs::write(&path, &v2).unwrap();
    let until = Instant::now() + Duration::from_secs(8);
    let mut seen = Vec::new();
    while Instant::now() < until {
        seen = a(q(lo(p), "a.lab.", RecordType::A, false).await);
        if seen == vec!["a.lab. A 10.2.2.2"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, vec!["a.lab. A 10.2.2.2"], "new config swapped in");
    assert_eq!(
        a(q(lo(p2), "x.other.lab.", RecordType::A, true).await),
        vec!["x.other.lab. A 10.3.3.3"],
        "new port served"
    );

    let failed_before = registry().reload_failed.with(&[]).get();
    std::fs::write(
        &path,
        format!(".:{p} {{\n bind 127.0.0.1\n reload 2s 0s\n frobnicate\n}}\n"),
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(8);
    while registry().reload_failed.with(&[]).get() == failed_before && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        registry().reload_failed.with(&[]).get(),
        failed_before + 1,
        "the bad file was tried"
    );
    assert_eq!(
        a(q(lo(p), "a.lab.", RecordType::A, false).await),
        vec!["a.lab. A 10.2.2.2"],
        "old config kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_fallthrough_ptr_and_loadbalance() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let (p, p2) = (free_port(), free_port());
    let mut many = String::new();
    for i in 1..=8 {
        many.push_str(&format!("  10.9.0.{i} many.lab\n"));
    }
    let cf = format!(
        ".:{p} {{\n bind 127.0.0.1\n loadbalance\n hosts {{\n  10.0.0.1 a.lab A-Alias.lab\n{many}  fallthrough\n }}\n forward . {}\n}}\nstrict.lab:{p2} {{\n bind 127.0.0.1\n hosts {{\n  10.0.0.9 s.strict.lab\n }}\n}}\n",
        up.addr
    );
    let (_i, _) = start_server(&cf).await;
    let s = lo(p);
    assert_eq!(
        rrs(&q(s, "a.lab.", RecordType::A, false).await.answers),
        vec!["a.lab. A 10.0.0.1"]
    );
    assert_eq!(
        rrs(&q(s, "a-alias.lab.", RecordType::A, false).await.answers),
        vec!["a-alias.lab. A 10.0.0.1"]
    );
    let ptr = q(s, "1.0.0.10.in-addr.arpa.", RecordType::PTR, false).await;
    assert_eq!(
        rrs(&ptr.answers),
        vec![
            "1.0.0.10.in-addr.arpa. PTR a-alias.lab.",
            "1.0.0.10.in-addr.arpa. PTR a.lab."
        ]
    );
    let m = q(s, "a.lab.", RecordType::AAAA, false).await;
    assert_eq!(
        (m.metadata.response_code, m.answers.len()),
        (ResponseCode::NoError, 0)
    );
    // Not in the table: falls through to forward.
    assert_eq!(
        rrs(&q(s, "b.lab.", RecordType::A, false).await.answers),
        vec!["b.lab. A 192.0.2.10"]
    );
    // Without fallthrough: SERVFAIL (hosts has no SOA for an NXDOMAIN).
    assert_eq!(
        q(lo(p2), "n.strict.lab.", RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::ServFail
    );
    // loadbalance shuffles the addresses.
    let first = rrs(&q(s, "many.lab.", RecordType::A, false).await.answers);
    let mut orders = std::collections::HashSet::new();
    for _ in 0..20 {
        let m = q(s, "many.lab.", RecordType::A, false).await;
        assert_eq!(rrs(&m.answers), first);
        orders.insert(
            m.answers
                .iter()
                .map(|r| r.data.to_string())
                .collect::<Vec<_>>(),
        );
    }
    assert!(orders.len() > 1, "answers are shuffled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_lameduck() {
    let (p, h, r, m) = (free_port(), free_port(), free_port(), free_port());
    let cf = format!(
        ".:{p} {{\n bind 127.0.0.1\n health 127.0.0.1:{h} {{\n  lameduck 1s\n }}\n ready 127.0.0.1:{r}\n prometheus 127.0.0.1:{m}\n hosts {{\n  10.0.0.1 a.lab\n }}\n}}\n"
    );
    let (inst, _) = start_server(&cf).await;
    assert_eq!(http_get(lo(h), "/health").await, (200, "OK".to_string()));
    assert_eq!(http_get(lo(r), "/ready").await, (200, "OK".to_string()));
    q(lo(p), "a.lab.", RecordType::A, false).await;
    q(lo(p), "a.lab.", RecordType::A, true).await;
    let (code, body) = http_get(lo(m), "/metrics").await;
    assert_eq!(code, 200);
    let server = format!("dns://:{p}");
    for want in [
        format!(
            "coredns_dns_requests_total{{server=\"{server}\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 1"
        ),
        format!(
            "coredns_dns_requests_total{{server=\"{server}\",zone=\".\",view=\"\",proto=\"tcp\",family=\"1\",type=\"A\"}} 1"
        ),
        format!(
            "coredns_dns_responses_total{{server=\"{server}\",zone=\".\",view=\"\",rcode=\"NOERROR\",plugin=\"hosts\"}} 2"
        ),
        format!(
            "coredns_dns_request_duration_seconds_count{{server=\"{server}\",zone=\".\",view=\"\",type=\"A\"}} 2"
        ),
        format!(
            "coredns_plugin_enabled{{server=\"{server}\",zone=\".\",view=\"\",name=\"hosts\"}} 1"
        ),
        "# TYPE coredns_dns_request_duration_seconds histogram".to_string(),
    ] {
        assert!(body.contains(&want), "missing {want}\n{body}");
    }
    // Shutdown: ready turns 503 during the lameduck period, which is waited for.
    let t = Instant::now();
    let i2 = inst.clone();
    let shut = tokio::spawn(async move { i2.shutdown().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http_get(lo(r), "/ready").await.0, 503);
    assert_eq!(
        rrs(&q(lo(p), "a.lab.", RecordType::A, false).await.answers).len(),
        1,
        "still serving in lameduck"
    );
    shut.await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
}

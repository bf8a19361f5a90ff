//! `kubeconfig PATH` with client certificates against an HTTPS API that requires them: the
//! certificate and key given inline (`client-certificate-data`/`client-key-data`) or as files;
//! a certificate the API refuses leaves the plugin not ready with the reason in its error; a
//! kubeconfig naming a missing key file stops the start with an error naming both.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use support::dns::*;
use support::fake_api::*;
use support::tls::{Pair, Pki, TlsFront};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn api() -> FakeApi {
    let api = FakeApi::start().await;
    api.put(NAMESPACES, namespace("default"));
    api.put(
        SERVICES,
        service("default", "web", &["10.96.0.50"], &[("http", 80, "TCP")]),
    );
    api
}

/// A kubeconfig whose one context uses `server` with the CA and client pair inline.
fn inline_kubeconfig(server: &str, ca: &str, client: &Pair) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: coredns\nusers:\n- name: coredns\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca),
        b64(&client.cert),
        b64(&client.key)
    )
}

/// The same with every PEM in a file of `dir`.
fn file_kubeconfig(dir: &Path, server: &str, ca: &str, client: &Pair) -> String {
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write pem");
        p.display().to_string()
    };
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: lab\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority: {}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: coredns\nusers:\n- name: coredns\n  user:\n    client-certificate: {}\n    client-key: {}\n",
        write("ca.crt", ca),
        write("client.crt", &client.cert),
        write("client.key", &client.key)
    )
}

fn corefile(port: u16, ready: u16, kubeconfig: &Path) -> String {
    format!(
        "cluster.local:{port} {{\n bind 127.0.0.1\n ready 127.0.0.1:{ready}\n kubernetes {{\n  kubeconfig {}\n  startup_timeout 2s\n }}\n}}\n",
        kubeconfig.display()
    )
}

async fn ready_status(ready: u16) -> (u16, String) {
    http_get(SocketAddr::from(([127, 0, 0, 1], ready)), "/ready").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_inline_and_from_files() {
    let api = api().await;
    let pki = Pki::new("lab-ca");
    let front = TlsFront::start(api.addr, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in [
        inline_kubeconfig(&front.url(), &pki.ca, &pki.client),
        file_kubeconfig(dir.path(), &front.url(), &pki.ca, &pki.client),
    ]
    .into_iter()
    .enumerate()
    {
        let kc = dir.path().join(format!("kubeconfig-{i}"));
        std::fs::write(&kc, body).unwrap();
        let (port, ready) = (free_port(), free_port());
        let (_inst, _) = start_server(&corefile(port, ready, &kc)).await;
        let s = SocketAddr::from(([127, 0, 0, 1], port));
        let mut answers = Vec::new();
        for _ in 0..100 {
            answers = rrs(
                &q(s, "web.default.svc.cluster.local.", RecordType::A, false)
                    .await
                    .answers,
            );
            if !answers.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            answers,
            vec!["web.default.svc.cluster.local. A 10.96.0.50"],
            "kubeconfig {i}"
        );
        assert_eq!(ready_status(ready).await.0, 200, "kubeconfig {i}");
    }
    assert!(front.accepted.load(Ordering::SeqCst) > 0);
    assert_eq!(front.refused.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_certificate_is_not_ready_with_the_reason() {
    let api = api().await;
    let pki = Pki::new("lab-ca");
    let stranger = Pki::new("other-ca");
    let front = TlsFront::start(api.addr, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    // The API's CA is trusted, but the client certificate comes from another CA.
    std::fs::write(
        &kc,
        inline_kubeconfig(&front.url(), &pki.ca, &stranger.client),
    )
    .unwrap();
    let (port, ready) = (free_port(), free_port());
    let (inst, _) = start_server(&corefile(port, ready, &kc)).await;
    let s = SocketAddr::from(([127, 0, 0, 1], port));
    let m = q(s, "web.default.svc.cluster.local.", RecordType::A, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let (code, body) = ready_status(ready).await;
    assert_eq!(code, 503);
    assert!(body.contains("kubernetes"), "{body}");
    assert!(
        front.refused.load(Ordering::SeqCst) > 0,
        "the API refused it"
    );
    let config = inst.current();
    let k = config.blocks[0].kubernetes.as_ref().unwrap();
    let err = k.last_error().expect("the failure is recorded");
    println!("last error: {err}");
    assert!(
        err.to_ascii_lowercase().contains("certificate")
            || err.to_ascii_lowercase().contains("alert"),
        "the reason is named: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_file_stops_the_start_with_its_name() {
    let pki = Pki::new("lab-ca");
    let dir = tempfile::tempdir().unwrap();
    let body = file_kubeconfig(dir.path(), "https://127.0.0.1:1", &pki.ca, &pki.client);
    std::fs::remove_file(dir.path().join("client.key")).unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, body).unwrap();
    let (port, ready) = (free_port(), free_port());
    let opts = minikind_cluster_dns::Options {
        banner: false,
        udp_workers: 1,
        ..Default::default()
    };
    let err =
        match minikind_cluster_dns::Instance::start_text(&corefile(port, ready, &kc), opts).await {
            Ok(_) => panic!("started without a client key"),
            Err(e) => format!("{e:#}"),
        };
    println!("error: {err}");
    assert!(err.contains(&kc.display().to_string()), "{err}");
    assert!(err.contains("client.key"), "{err}");
}

//! minikind reaches the engine the docker CLI would: `DOCKER_HOST` over TCP, over TCP with TLS
//! (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), and through a docker context. The "remote" engine
//! is this machine's own, behind forwarders on loopback that the test starts: a plain one, and
//! one that terminates TLS and accepts only a client certificate of the test's own CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use minikind_test_support::{Run, minikind_command, unique_name};
use tokio::net::{TcpListener, UnixStream};

const ENGINE_SOCKET: &str = "/var/run/docker.sock";

/// Starts a forwarder from 127.0.0.1:<port> to the local engine's socket on its own runtime
/// (TLS-terminating when `tls` is given); returns the port. It lives as long as the test.
fn forwarder(tls: Option<tokio_rustls::TlsAcceptor>) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the forwarder");
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
            tx.send(listener.local_addr().expect("address").port())
                .expect("reporting the port");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Ok(mut engine) = UnixStream::connect(ENGINE_SOCKET).await else {
                        return;
                    };
                    match tls {
                        // A handshake without the CA's client certificate ends here.
                        Some(acceptor) => {
                            if let Ok(mut client) = acceptor.accept(tcp).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                            }
                        }
                        None => {
                            let mut client = tcp;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                        }
                    }
                });
            }
        });
    });
    rx.recv().expect("the forwarder's port")
}

/// The test's own CA, a server certificate for 127.0.0.1 and a client certificate, written as
/// the docker CLI expects them in a cert path (`ca.pem`, `cert.pem`, `key.pem`); returns the
/// acceptor that trusts only that CA's clients.
fn tls_material(dir: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pki_home = dir.join("ca");
    let pki = minikind_apiserver::pki::load_or_create(
        &pki_home,
        &["127.0.0.1".to_string(), "localhost".to_string()],
    )
    .expect("a CA");
    let client = minikind_apiserver::pki::Ca::load(&pki_home)
        .expect("the CA")
        .client("minikind-e2e", &[])
        .expect("a client certificate");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(certs.join("cert.pem"), &client.cert_pem).unwrap();
    std::fs::write(certs.join("key.pem"), &client.key_pem).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer> = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A docker config directory whose current context is `name`, pointing at `host`.
fn docker_config_with_context(dir: &Path, name: &str, host: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let config = dir.join("docker-config");
    let meta = config
        .join("contexts/meta")
        .join(hex::encode(Sha256::digest(name.as_bytes())));
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        serde_json::json!({
            "Name": name,
            "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({"currentContext": name}).to_string(),
    )
    .unwrap();
    config
}

/// `minikind <args>` with only the given engine settings (none inherited from the caller).
fn minikind_with(engine: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut c = minikind_command();
    for k in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_CONFIG",
    ] {
        c.env_remove(k);
    }
    c.envs(engine.iter().copied()).args(args);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("running minikind");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("writing stdin");
    drop(input);
    child
        .wait_with_output()
        .expect("waiting for minikind")
        .into()
}

/// Deletes the cluster through the local socket if the test did not get to it.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = minikind_with(&[], &["delete", "cluster", "--name", &self.0], None);
    }
}

#[test]
fn a_cluster_is_driven_through_tcp_tls_and_a_docker_context() {
    let scratch = tempfile::tempdir().unwrap();
    let plain = format!("tcp://127.0.0.1:{}", forwarder(None));
    let tls_port = forwarder(Some(tls_material(scratch.path())));
    let tls_host = format!("tcp://127.0.0.1:{tls_port}");
    let certs = scratch.path().join("certs");
    let certs = certs.to_str().unwrap();
    let name = unique_name("e2e-remote");
    let _cleanup = Cleanup(name.clone());

    // Create over TCP with TLS and a client certificate.
    let config = format!("kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\n");
    let tls_env = [
        ("DOCKER_HOST", tls_host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs),
    ];
    let r = minikind_with(
        &tls_env,
        &["create", "cluster", "--config", "-", "--wait", "90s"],
        Some(&config),
    );
    assert!(r.ok, "create over TLS failed:\n{}\n{}", r.stdout, r.stderr);

    // The same engine without a client certificate: the handshake is refused, and the error
    // names the endpoint and where it came from.
    let r = minikind_with(
        &[("DOCKER_HOST", tls_host.as_str())],
        &["get", "clusters"],
        None,
    );
    assert!(!r.ok, "a TLS engine answered a plain client: {}", r.stdout);
    assert!(
        r.stderr.contains(&tls_host) && r.stderr.contains("DOCKER_HOST"),
        "{}",
        r.stderr
    );

    // Plain TCP: the nodes are listed, and the kubeconfig (a loopback engine: 127.0.0.1) works.
    let r = minikind_with(
        &[("DOCKER_HOST", plain.as_str())],
        &["get", "nodes", "--name", &name],
        None,
    );
    assert!(r.ok, "get nodes over TCP: {}", r.stderr);
    assert!(
        r.stdout.contains(&format!("{name}-control-plane")),
        "{}",
        r.stdout
    );
    let r = minikind_with(
        &[("DOCKER_HOST", plain.as_str())],
        &["get", "kubeconfig", "--name", &name],
        None,
    );
    assert!(r.ok, "get kubeconfig over TCP: {}", r.stderr);
    assert!(
        r.stdout.contains("server: https://127.0.0.1:"),
        "{}",
        r.stdout
    );
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(&kubeconfig, &r.stdout).unwrap();
    let nodes = minikind_test_support::nodes_through(&kubeconfig).unwrap();
    assert!(
        nodes.contains(&format!("node/{name}-control-plane")),
        "{nodes}"
    );

    // A docker context naming the plain forwarder, chosen by the config's currentContext.
    let docker_config = docker_config_with_context(scratch.path(), "lab-remote", &plain);
    let docker_config = docker_config.to_str().unwrap();
    let r = minikind_with(
        &[("DOCKER_CONFIG", docker_config)],
        &["delete", "cluster", "--name", &name],
        None,
    );
    assert!(r.ok, "delete through the context failed: {}", r.stderr);
    assert!(
        minikind_test_support::labelled_objects(&name).is_empty(),
        "left behind: {:?}",
        minikind_test_support::labelled_objects(&name)
    );
}

#[test]
fn a_context_that_does_not_exist_is_named() {
    let scratch = tempfile::tempdir().unwrap();
    let r = minikind_with(
        &[
            ("DOCKER_CONFIG", scratch.path().to_str().unwrap()),
            ("DOCKER_CONTEXT", "nowhere"),
        ],
        &["get", "clusters"],
        None,
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains("docker context \"nowhere\"") && r.stderr.contains("DOCKER_CONTEXT"),
        "{}",
        r.stderr
    );
}

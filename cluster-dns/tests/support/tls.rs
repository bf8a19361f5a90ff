//! An HTTPS front for the fake API on loopback that requires a client certificate signed by its
//! own CA, with the certificates a kubeconfig needs (made fresh for every test).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// A CA with a serving certificate for 127.0.0.1 and a client certificate.
pub struct Pki {
    pub ca: String,
    pub server: Pair,
    pub client: Pair,
}

fn ca(cn: &str) -> (CertificateParams, KeyPair, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("CA key");
    let pem = p.self_signed(&key).expect("self-signed CA").pem();
    (p, key, pem)
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Pair {
    let mut p = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("leaf parameters");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = p.signed_by(&key, issuer).expect("signed leaf");
    Pair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    pub fn new(cn: &str) -> Pki {
        let (params, key, ca_pem) = ca(cn);
        let issuer = Issuer::new(params, key);
        Pki {
            ca: ca_pem,
            server: leaf(
                &issuer,
                "kube-apiserver",
                &["127.0.0.1", "localhost"],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            client: leaf(
                &issuer,
                "system:coredns",
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        }
    }
}

/// Accepts TLS on loopback, demands a client certificate from `pki`'s CA, and passes the
/// decrypted bytes to `backend` (the plain fake API).
pub struct TlsFront {
    pub addr: SocketAddr,
    /// Handshakes refused (no certificate, or one from another CA).
    pub refused: Arc<AtomicUsize>,
    /// Connections that reached the API.
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    pub async fn start(backend: SocketAddr, pki: &Pki) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pki.ca.as_bytes()) {
            roots.add(c.expect("CA pem")).expect("CA root");
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pki.server.cert.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server cert");
        let key = PrivateKeyDer::from_pem_slice(pki.server.key.as_bytes()).expect("server key");
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("server config");
        // The bytes are passed on as they are: keep to the protocol the fake API speaks.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS front");
        let addr = listener.local_addr().expect("address");
        let (refused, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r2, a2) = (refused.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, refused, accepted) = (acceptor.clone(), r2.clone(), a2.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(_) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut api) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut api).await;
                });
            }
        });
        TlsFront {
            addr,
            refused,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

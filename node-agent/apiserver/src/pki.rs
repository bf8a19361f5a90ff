//! The cluster's PKI: a CA generated once and kept under the data directory, a serving
//! certificate for the API server signed by it (re-issued at every start so new SANs such as a
//! changed node IP are always covered), the admin bearer token, and the kubelet port's pair of
//! certificates, and the service-account signing key:
//!
//! - `sa.key`/`sa.pub` (kubeadm's names), the P-256 pair service-account tokens are signed
//!   (ES256) and verified with, made once and kept, so tokens outlive a restart;
//! - the API server's kubelet client certificate (kube-apiserver's
//!   `--kubelet-client-certificate`/`--kubelet-client-key`; kubeadm's
//!   `apiserver-kubelet-client.crt`, CN `kube-apiserver-kubelet-client`, O
//!   `kubeadm:cluster-admins`), re-issued at every start like the serving certificate, which
//!   the proxy presents to kubelets;
//! - a kubelet serving certificate per node (SAN = node name and node IP, like the certificates
//!   a kubelet gets with `serverTLSBootstrap`), issued on the control-plane node, which has the
//!   CA key: by the node agent for its own kubelet and by `minikind kubelet-cert` for the
//!   workers (`minikind create` copies it to them when they join). The proxy verifies it
//!   against the cluster CA (kube-apiserver's `--kubelet-certificate-authority`).

use anyhow::Context;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CA_CN: &str = "minikind-ca";

/// The CN of the API server's kubelet client certificate (kubeadm's
/// `apiserver-kubelet-client.crt`): the one identity the kubelet port serves.
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
/// Its organization (kubeadm since 1.29; `system:masters` before).
pub const KUBELET_CLIENT_ORG: &str = "kubeadm:cluster-admins";

pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub token: String,
    /// The API server's kubelet client certificate and key.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Certificate then key in one PEM text, as the kubelet keeps its serving pair
    /// (`kubelet-server-current.pem`).
    pub fn combined_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// The cluster CA: its certificate and what signs with it.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Loads the CA kept under `<data>/pki` (created by [`load_or_create`]).
    pub fn load(data: &Path) -> anyhow::Result<Ca> {
        let dir = pki_dir(data);
        let key_path = dir.join("ca.key");
        let crt_path = dir.join("ca.crt");
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{} is not a valid private key", key_path.display()))?;
        let pem = std::fs::read_to_string(&crt_path)
            .with_context(|| format!("reading {}", crt_path.display()))?;
        // The issuer is rebuilt from the CA's subject and key: signing needs nothing else.
        Ok(Ca {
            pem,
            issuer: Issuer::new(ca_params()?, key),
        })
    }

    /// Signs a new key for `cn` (organizations `orgs`), valid for `sans` and `usage`.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(sans.to_vec()).context("certificate names")?;
        let mut dn = DistinguishedName::new();
        for o in orgs {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        let key = KeyPair::generate().context("generating a key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate of {cn}"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate for user `cn` in groups `orgs`.
    pub fn client(&self, cn: &str, orgs: &[&str]) -> anyhow::Result<Issued> {
        self.issue(cn, orgs, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A kubelet serving certificate for node `node_name` at `node_ip`: CN
    /// `system:node:<name>`, O `system:nodes`, as a kubelet's serving CSR names it.
    pub fn kubelet_serving(&self, node_name: &str, node_ip: IpAddr) -> anyhow::Result<Issued> {
        self.issue(
            &format!("system:node:{node_name}"),
            &["system:nodes"],
            &[node_name.to_string(), node_ip.to_string()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}

/// [`Ca::kubelet_serving`] with the CA under `<data>/pki`.
pub fn issue_kubelet_serving(
    data: &Path,
    node_name: &str,
    node_ip: IpAddr,
) -> anyhow::Result<Issued> {
    Ca::load(data)?.kubelet_serving(node_name, node_ip)
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(p)
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn pki_dir(data: &Path) -> PathBuf {
    data.join("pki")
}

/// Loads the CA and token from `<data>/pki` (creating them the first time) and issues a
/// serving certificate for `sans` (DNS names and IP addresses).
pub fn load_or_create(data: &Path, sans: &[String]) -> anyhow::Result<Pki> {
    let dir = pki_dir(data);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key_path = dir.join("ca.key");
    let ca_crt_path = dir.join("ca.crt");
    let token_path = dir.join("admin.token");
    let (ca_key, ca_pem) = if ca_key_path.exists() && ca_crt_path.exists() {
        let key_pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{} is not a valid private key", ca_key_path.display()))?;
        let crt = std::fs::read_to_string(&ca_crt_path)
            .with_context(|| format!("reading {}", ca_crt_path.display()))?;
        (key, crt)
    } else {
        let key = KeyPair::generate().context("generating the CA key")?;
        let cert = ca_params()?
            .self_signed(&key)
            .context("self-signing the CA")?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca_crt_path, cert.pem())
            .with_context(|| format!("writing {}", ca_crt_path.display()))?;
        (key, cert.pem())
    };
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let bytes: [u8; 24] = rand::rng().random();
            let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&token_path, &t)?;
            t
        }
    };
    let ca = Ca {
        pem: ca_pem.clone(),
        issuer: Issuer::new(ca_params()?, ca_key),
    };
    let server = ca.issue(
        "kube-apiserver",
        &[],
        sans,
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    std::fs::write(dir.join("apiserver.crt"), &server.cert_pem).context("writing apiserver.crt")?;
    write_private(&dir.join("apiserver.key"), &server.key_pem)?;
    let client = ca.issue(
        KUBELET_CLIENT_CN,
        &[KUBELET_CLIENT_ORG],
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    std::fs::write(dir.join("apiserver-kubelet-client.crt"), &client.cert_pem)
        .context("writing apiserver-kubelet-client.crt")?;
    write_private(&dir.join("apiserver-kubelet-client.key"), &client.key_pem)?;
    Ok(Pki {
        ca_pem,
        server_cert_pem: server.cert_pem,
        server_key_pem: server.key_pem,
        token,
        kubelet_client_cert_pem: client.cert_pem,
        kubelet_client_key_pem: client.key_pem,
    })
}

/// The service-account signing key kept under `<data>/pki` (made the first time).
pub fn load_or_create_service_account_key(
    data: &Path,
) -> anyhow::Result<crate::auth::tokens::ServiceAccountKey> {
    let dir = pki_dir(data);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_path = dir.join("sa.key");
    let pub_path = dir.join("sa.pub");
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a valid private key", key_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().context("generating the service-account key")?;
            write_private(&key_path, &key.serialize_pem())?;
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", key_path.display())),
    };
    std::fs::write(&pub_path, key.public_key_pem())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    crate::auth::tokens::ServiceAccountKey::from_pem(&key.serialize_pem(), &key.public_key_pem())
}

/// A rustls acceptor serving the certificate (HTTP/2 and HTTP/1.1 offered by ALPN).
pub fn tls_acceptor(pki: &Pki) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .context("parsing the serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .context("parsing the serving key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS server configuration")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// The proxy's TLS client towards kubelets: presents the kubelet client certificate and
/// trusts only kubelet serving certificates signed by the cluster CA (kube-apiserver's
/// `--kubelet-client-certificate`, `--kubelet-client-key`, `--kubelet-certificate-authority`).
pub fn kubelet_client_config(pki: &Pki) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    client_config(
        &pki.ca_pem,
        &pki.kubelet_client_cert_pem,
        &pki.kubelet_client_key_pem,
    )
}

/// A TLS client trusting `ca_pem` and presenting `cert_pem`/`key_pem` (HTTP/1.1 by ALPN).
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.context("parsing the CA certificate")?)
            .context("adding the CA certificate")?;
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("parsing the client certificate")?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("parsing the client key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .context("TLS client configuration")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_token_persist_serving_cert_renews() {
        let dir = tempfile::tempdir().unwrap();
        let sans = vec!["127.0.0.1".to_string(), "kubernetes.default.svc".into()];
        let a = load_or_create(dir.path(), &sans).unwrap();
        let b = load_or_create(dir.path(), &sans).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.token, b.token);
        assert_ne!(a.server_cert_pem, b.server_cert_pem);
        assert!(tls_acceptor(&b).is_ok());
        assert!(kubelet_client_config(&b).is_ok());
        assert_ne!(a.kubelet_client_cert_pem, b.kubelet_client_cert_pem);
        let served =
            issue_kubelet_serving(dir.path(), "node-a", "10.1.2.3".parse().unwrap()).unwrap();
        assert!(served.combined_pem().contains("PRIVATE KEY"));
        assert!(Ca::load(dir.path()).unwrap().pem == a.ca_pem);
        // The service-account key persists: a token signed before verifies after a reload.
        let claims = crate::auth::tokens::Claims {
            iss: crate::auth::tokens::ISSUER.into(),
            sub: "system:serviceaccount:a:b".into(),
            aud: vec![crate::auth::tokens::ISSUER.into()],
            exp: 2000,
            iat: 1000,
            nbf: 1000,
            kubernetes: crate::auth::tokens::KubernetesClaim {
                namespace: "a".into(),
                serviceaccount: crate::auth::tokens::ObjRef {
                    name: "b".into(),
                    uid: "u".into(),
                },
                pod: None,
            },
        };
        let t = load_or_create_service_account_key(dir.path())
            .unwrap()
            .sign(&claims)
            .unwrap();
        let again = load_or_create_service_account_key(dir.path()).unwrap();
        assert_eq!(again.verify(&t, 1500).unwrap(), claims);
    }
}

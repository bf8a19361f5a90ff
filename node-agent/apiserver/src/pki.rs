//! The cluster's PKI: a CA generated once and kept under the data directory, a serving
//! certificate for the API server signed by it (re-issued at every start so new SANs such as a
//! changed node IP are always covered), and the admin bearer token.

use anyhow::Context;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CA_CN: &str = "minikind-ca";

pub struct Pki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub token: String,
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
    // The issuer is rebuilt from the CA's subject and key: signing needs nothing else.
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(sans.to_vec()).context("serving certificate names")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate().context("generating the serving key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the serving certificate")?;
    std::fs::write(dir.join("apiserver.crt"), cert.pem()).context("writing apiserver.crt")?;
    write_private(&dir.join("apiserver.key"), &key.serialize_pem())?;
    Ok(Pki {
        ca_pem,
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
        token,
    })
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
    }
}

//! Who may use the kubelet endpoint, as kube-apiserver↔kubelet is secured: the kubelet serves
//! TLS with a serving certificate signed by the cluster CA and authenticates callers by client
//! certificates signed by that CA (the kubelet's `--client-ca-file`, the CA being the cluster
//! CA). It then authorizes the caller: only the API server's kubelet client identity
//! (kube-apiserver's `--kubelet-client-certificate`: CN `kube-apiserver-kubelet-client`) or a
//! member of `system:masters` may use it. Upstream asks the API server (webhook authorization,
//! a SubjectAccessReview for `nodes/proxy` and friends, which kubeadm grants that identity
//! through the `system:kubelet-api-admin` role); here the rule is fixed.
//!
//! As upstream's `pkg/kubelet/server/auth.go` and `server.go` (`InstallAuthFilter`): a caller
//! without a certificate gets `401 Unauthorized`, a caller with a CA-signed certificate of
//! another identity `403 Forbidden (user=…, verb=…, resource=nodes, subresource=proxy)`. A
//! certificate not signed by the CA fails the TLS handshake. `/healthz` answers everyone and
//! says only `ok` (upstream serves it unauthenticated on the separate healthz port 10248).

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The CN of the API server's kubelet client certificate (kubeadm's
/// `apiserver-kubelet-client.crt`).
pub const API_SERVER_CLIENT_CN: &str = "kube-apiserver-kubelet-client";
/// The group whose members may do anything (also allowed here).
pub const MASTERS_GROUP: &str = "system:masters";

/// The authenticated caller of one connection: the subject of its client certificate
/// (CN = user, O = groups), as upstream's x509 authenticator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub groups: Vec<String>,
}

impl Caller {
    /// The subject of a DER certificate (already verified against the CA by the handshake).
    pub fn from_der(der: &[u8]) -> Result<Caller> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| anyhow::anyhow!("parsing the client certificate: {e}"))?;
        let subject = cert.subject();
        let user = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(String::from))
            .collect();
        Ok(Caller { user, groups })
    }

    fn allowed(&self) -> bool {
        self.user == API_SERVER_CLIENT_CN || self.groups.iter().any(|g| g == MASTERS_GROUP)
    }
}

/// Paths anyone may ask for.
fn is_public(path: &str) -> bool {
    path == "/healthz"
}

/// The verb upstream's authorizer is asked about (`getAPIVerb` in auth.go).
fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

fn text(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// None if the request may go on; otherwise the answer (401 or 403).
pub fn check(method: &Method, path: &str, caller: Option<&Caller>) -> Option<Response> {
    if is_public(path) {
        return None;
    }
    let Some(c) = caller else {
        return Some(text(StatusCode::UNAUTHORIZED, "Unauthorized\n".into()));
    };
    if c.allowed() {
        return None;
    }
    // Every path of this endpoint is a `nodes/proxy` one upstream (logs, exec, port-forward,
    // pods).
    Some(text(
        StatusCode::FORBIDDEN,
        format!(
            "Forbidden (user={}, verb={}, resource=nodes, subresource=proxy)\n",
            c.user,
            verb(method)
        ),
    ))
}

/// The kubelet endpoint's TLS settings.
#[derive(Clone)]
pub struct KubeletTls {
    /// The serving certificate and its key in one PEM text (upstream's
    /// `kubelet-server-current.pem`).
    pub serving_pem: String,
    /// The CA client certificates must be signed by (the cluster CA).
    pub client_ca_pem: String,
}

impl std::fmt::Debug for KubeletTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletTls")
            .field("serving_pem", &"<redacted>")
            .field(
                "client_ca_pem",
                &format!("{} bytes", self.client_ca_pem.len()),
            )
            .finish()
    }
}

impl KubeletTls {
    /// The acceptor: the serving certificate, client certificates verified against the CA
    /// when offered (a caller without one still completes the handshake and gets 401, as
    /// upstream's kubelet requests but does not require one at the TLS layer), HTTP/1.1.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor> {
        use rustls::pki_types::PrivateKeyDer;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.serving_pem.as_bytes())
                .collect::<Result<_, _>>()
                .context("parsing the kubelet serving certificate")?;
        anyhow::ensure!(!certs.is_empty(), "the serving PEM holds no certificate");
        let key = PrivateKeyDer::from_pem_slice(self.serving_pem.as_bytes())
            .context("parsing the kubelet serving key")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.client_ca_pem.as_bytes()) {
            roots
                .add(c.context("parsing the client CA")?)
                .context("adding the client CA")?;
        }
        anyhow::ensure!(!roots.is_empty(), "the client CA PEM holds no certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .context("the client certificate verifier")?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .context("TLS server configuration")?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, groups: &[&str]) -> Caller {
        Caller {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn who_gets_what() {
        let api = caller(API_SERVER_CLIENT_CN, &["kubeadm:cluster-admins"]);
        let admin = caller("someone", &[MASTERS_GROUP]);
        let node = caller("system:node:b", &["system:nodes"]);
        for path in [
            "/pods",
            "/exec/default/p/c",
            "/containerLogs/default/p/c",
            "/portForward/default/p",
        ] {
            assert!(check(&Method::GET, path, Some(&api)).is_none());
            assert!(check(&Method::POST, path, Some(&admin)).is_none());
            let r = check(&Method::GET, path, None).expect("refused");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let r = check(&Method::POST, path, Some(&node)).expect("refused");
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
        }
        assert!(check(&Method::GET, "/healthz", None).is_none());
        // Only the exact path is public.
        assert!(check(&Method::GET, "/healthz/../pods", None).is_some());
        assert!(check(&Method::GET, "/healthzx", None).is_some());
    }
}

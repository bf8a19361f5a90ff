//! Service-account tokens: signed JWTs with kube-apiserver's claims, issued by TokenRequest
//! (`POST .../serviceaccounts/NAME/token`) and checked on every request that carries one.
//!
//! A token names its service account (namespace, name, uid) and, when bound, its pod (name,
//! uid); it is valid while its signature, times and audience hold and while those objects still
//! exist with the same uid, as kube-apiserver's `pkg/serviceaccount` validator requires.

use super::User;
use crate::errors::{ApiError, ApiResult};
use crate::resources::idx;
use crate::store::Store;
use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The issuer kubeadm configures (`--service-account-issuer`), which is also the audience the
/// API server accepts (`--api-audiences` defaults to the issuer).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Lifetime of a token when the request names none (TokenRequest's default).
pub const DEFAULT_EXPIRATION_SECS: i64 = 3600;
/// Shortest lifetime TokenRequest grants.
pub const MIN_EXPIRATION_SECS: i64 = 600;
/// Longest lifetime accepted (TokenRequest's field is an int64; kube-apiserver caps nothing
/// without `--service-account-max-token-expiration`, we cap at roughly 136 years).
const MAX_EXPIRATION_SECS: i64 = 1 << 32;

/// A reference to an object by name and uid, as the `kubernetes.io` claim holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjRef {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: ObjRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjRef>,
}

/// The claims of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// The key pair tokens are signed (ES256) and verified with; kubeadm's `sa.key`/`sa.pub`.
pub struct ServiceAccountKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl ServiceAccountKey {
    /// From a PKCS#8 private key and its SubjectPublicKeyInfo, both PEM (P-256).
    pub fn from_pem(private_pem: &str, public_pem: &str) -> anyhow::Result<Self> {
        Ok(ServiceAccountKey {
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes())
                .context("the service-account private key is not a P-256 PKCS#8 key")?,
            decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())
                .context("the service-account public key is not a P-256 key")?,
        })
    }

    pub fn sign(&self, claims: &Claims) -> ApiResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), claims, &self.encoding)
            .map_err(|e| ApiError::internal(format!("signing a service-account token: {e}")))
    }

    /// Checks signature, issuer, times and audience; `now` in seconds since the epoch.
    /// The objects the token names are checked by [`authenticate`].
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, String> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        // Times are checked below against `now`, so tests can move the clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| format!("invalid token: {e}"))?;
        let c = data.claims;
        // kube-apiserver allows a minute of clock skew (`NotBefore`/`Expiry` leeway).
        if now > c.exp + 60 {
            return Err("token has expired".into());
        }
        if now + 60 < c.nbf {
            return Err("token is not valid yet".into());
        }
        Ok(c)
    }
}

/// What a TokenRequest asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub audiences: Vec<String>,
    pub expiration_secs: Option<i64>,
    /// (kind, name, uid) of the object the token is bound to.
    pub bound: Option<(String, String, Option<String>)>,
}

/// Parses the body of a TokenRequest.
pub fn parse_request(body: &Value) -> ApiResult<Request> {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let audiences = super::rbac::strs(&spec, "audiences");
    let expiration_secs = spec.get("expirationSeconds").and_then(Value::as_i64);
    let bound = spec
        .get("boundObjectRef")
        .filter(|b| !b.is_null())
        .map(|b| {
            let s = |k: &str| {
                b.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let uid = s("uid");
            (s("kind"), s("name"), (!uid.is_empty()).then_some(uid))
        });
    Ok(Request {
        audiences,
        expiration_secs,
        bound,
    })
}

/// Issues a token for service account `ns/name` as kube-apiserver's TokenRequest does, and
/// returns the TokenRequest object to answer with.
pub fn issue(
    store: &Store,
    key: &ServiceAccountKey,
    ns: &str,
    name: &str,
    req: &Request,
    now: i64,
) -> ApiResult<Value> {
    let sa = store
        .get(idx::serviceaccounts(), ns, name)
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?
        .value();
    let sa_uid = crate::meta::str_at(&sa, "/metadata/uid")
        .unwrap_or_default()
        .to_string();
    let exp_secs = req.expiration_secs.unwrap_or(DEFAULT_EXPIRATION_SECS);
    if exp_secs < MIN_EXPIRATION_SECS {
        return Err(invalid(
            "spec.expirationSeconds",
            &exp_secs.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if exp_secs > MAX_EXPIRATION_SECS {
        return Err(invalid(
            "spec.expirationSeconds",
            &exp_secs.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let pod = match &req.bound {
        None => None,
        Some((kind, pod_name, want_uid)) if kind == "Pod" => {
            let p = store
                .get(idx::pods(), ns, pod_name)
                .ok_or_else(|| ApiError::not_found("", "pods", pod_name))?;
            let uid = crate::meta::str_at(&p.value(), "/metadata/uid")
                .unwrap_or_default()
                .to_string();
            if want_uid.as_ref().is_some_and(|w| *w != uid) {
                return Err(ApiError::conflict_msg(
                    "",
                    "pods",
                    pod_name,
                    &format!(
                        "the UID in the bound object reference ({}) does not match the UID in record ({uid}). The object might have been deleted and then recreated",
                        want_uid.as_deref().unwrap_or_default()
                    ),
                ));
            }
            Some(ObjRef {
                name: pod_name.clone(),
                uid,
            })
        }
        Some((kind, _, _)) => {
            return Err(ApiError::bad_request(format!(
                "cannot bind a token to a {kind:?}: minikind binds tokens to Pods only"
            )));
        }
    };
    let audiences = if req.audiences.is_empty() {
        vec![ISSUER.to_string()]
    } else {
        req.audiences.clone()
    };
    let claims = Claims {
        iss: ISSUER.into(),
        sub: service_account_username(ns, name),
        aud: audiences.clone(),
        exp: now + exp_secs,
        iat: now,
        nbf: now,
        kubernetes: KubernetesClaim {
            namespace: ns.into(),
            serviceaccount: ObjRef {
                name: name.into(),
                uid: sa_uid,
            },
            pod: pod.clone(),
        },
    };
    let token = key.sign(&claims)?;
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut spec = json!({"audiences": audiences, "expirationSeconds": exp_secs});
    if let Some(p) = &pod {
        spec["boundObjectRef"] =
            json!({"kind": "Pod", "apiVersion": "v1", "name": p.name, "uid": p.uid});
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    }))
}

fn invalid(field: &str, value: &str, why: &str) -> ApiError {
    ApiError::invalid(
        "authentication.k8s.io",
        "TokenRequest",
        "",
        vec![crate::errors::invalid_value(field, value, why)],
    )
}

/// `system:serviceaccount:NS:NAME`.
pub fn service_account_username(ns: &str, name: &str) -> String {
    format!("system:serviceaccount:{ns}:{name}")
}

/// The user a valid token stands for, or why it is not valid: besides [`ServiceAccountKey::
/// verify`], the service account (and the pod, when bound) must still exist with the uid the
/// token names, so deleting either revokes its tokens.
pub fn authenticate(
    store: &Store,
    key: &ServiceAccountKey,
    token: &str,
    now: i64,
) -> Result<User, String> {
    let c = key.verify(token, now)?;
    let k = &c.kubernetes;
    let uid_of = |v: &Value| {
        crate::meta::str_at(v, "/metadata/uid")
            .unwrap_or_default()
            .to_string()
    };
    match store.get(idx::serviceaccounts(), &k.namespace, &k.serviceaccount.name) {
        Some(sa) if uid_of(&sa.value()) == k.serviceaccount.uid => {}
        Some(_) => return Err("the service account was deleted and created again".into()),
        None => return Err("the service account no longer exists".into()),
    }
    if let Some(p) = &k.pod {
        match store.get(idx::pods(), &k.namespace, &p.name) {
            Some(o) if uid_of(&o.value()) == p.uid => {}
            Some(_) => return Err("the bound pod was deleted and created again".into()),
            None => return Err("the bound pod no longer exists".into()),
        }
    }
    let mut extra = Vec::new();
    if let Some(p) = &k.pod {
        extra.push((
            "authentication.kubernetes.io/pod-name".to_string(),
            p.name.clone(),
        ));
        extra.push((
            "authentication.kubernetes.io/pod-uid".to_string(),
            p.uid.clone(),
        ));
    }
    Ok(User {
        name: service_account_username(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::idx;
    use crate::store::Change;

    fn key() -> ServiceAccountKey {
        let kp = rcgen::KeyPair::generate().unwrap();
        ServiceAccountKey::from_pem(&kp.serialize_pem(), &kp.public_key_pem()).unwrap()
    }

    async fn put(store: &Store, res: usize, ns: &str, name: &str, uid: &str) {
        let v = json!({"metadata": {"name": name, "namespace": ns, "uid": uid}});
        store
            .mutate(res, ns, name, |_| Ok(Change::Put(v)))
            .await
            .unwrap();
    }

    async fn setup() -> (std::sync::Arc<Store>, ServiceAccountKey) {
        let store = Store::in_memory();
        put(&store, idx::serviceaccounts(), "ns1", "sa1", "sa-uid").await;
        put(&store, idx::pods(), "ns1", "pod1", "pod-uid").await;
        (store, key())
    }

    fn req(bound: bool) -> Request {
        Request {
            audiences: vec![],
            expiration_secs: Some(3607),
            bound: bound.then(|| ("Pod".into(), "pod1".into(), None)),
        }
    }

    fn token_of(tr: &Value) -> String {
        tr["status"]["token"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn issued_token_authenticates_as_the_service_account() {
        let (store, k) = setup().await;
        let tr = issue(&store, &k, "ns1", "sa1", &req(true), 1000).unwrap();
        assert_eq!(tr["spec"]["boundObjectRef"]["uid"], "pod-uid");
        let c = k.verify(&token_of(&tr), 1000).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:ns1:sa1");
        assert_eq!(c.aud, vec![ISSUER.to_string()]);
        assert_eq!(c.exp, 1000 + 3607);
        assert_eq!(c.kubernetes.pod.as_ref().unwrap().uid, "pod-uid");
        let u = authenticate(&store, &k, &token_of(&tr), 1000).unwrap();
        assert_eq!(u.name, "system:serviceaccount:ns1:sa1");
        assert_eq!(
            u.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns1",
                "system:authenticated"
            ]
        );
    }

    #[tokio::test]
    async fn expired_token_is_refused() {
        let (store, k) = setup().await;
        let t = token_of(&issue(&store, &k, "ns1", "sa1", &req(false), 1000).unwrap());
        assert!(authenticate(&store, &k, &t, 1000 + 3607).is_ok());
        let e = authenticate(&store, &k, &t, 1000 + 3607 + 61).unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }

    #[tokio::test]
    async fn wrong_audience_is_refused() {
        let (store, k) = setup().await;
        let mut r = req(false);
        r.audiences = vec!["vault".into()];
        let t = token_of(&issue(&store, &k, "ns1", "sa1", &r, 1000).unwrap());
        let e = authenticate(&store, &k, &t, 1000).unwrap_err();
        assert!(e.contains("InvalidAudience"), "{e}");
    }

    #[tokio::test]
    async fn token_of_another_key_is_refused() {
        let (store, k) = setup().await;
        let t = token_of(&issue(&store, &key(), "ns1", "sa1", &req(false), 1000).unwrap());
        let e = authenticate(&store, &k, &t, 1000).unwrap_err();
        assert!(e.contains("InvalidSignature"), "{e}");
        // A token whose payload was altered does not verify either.
        let good = token_of(&issue(&store, &k, "ns1", "sa1", &req(false), 1000).unwrap());
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
        assert!(authenticate(&store, &k, &forged, 1000).is_err());
    }

    #[tokio::test]
    async fn deleted_pod_or_service_account_revokes() {
        let (store, k) = setup().await;
        let bound = token_of(&issue(&store, &k, "ns1", "sa1", &req(true), 1000).unwrap());
        let unbound = token_of(&issue(&store, &k, "ns1", "sa1", &req(false), 1000).unwrap());
        // The pod made again under the same name has a new uid.
        put(&store, idx::pods(), "ns1", "pod1", "pod-uid-2").await;
        assert!(authenticate(&store, &k, &bound, 1000).is_err());
        assert!(authenticate(&store, &k, &unbound, 1000).is_ok());
        store
            .mutate(idx::serviceaccounts(), "ns1", "sa1", |cur| {
                Ok(Change::Delete(cur.unwrap_or_default()))
            })
            .await
            .unwrap();
        let e = authenticate(&store, &k, &unbound, 1000).unwrap_err();
        assert!(e.contains("no longer exists"), "{e}");
    }

    #[tokio::test]
    async fn token_request_validation() {
        let (store, k) = setup().await;
        let mut r = req(false);
        r.expiration_secs = Some(60);
        assert_eq!(
            issue(&store, &k, "ns1", "sa1", &r, 0).unwrap_err().code,
            422
        );
        assert_eq!(
            issue(&store, &k, "ns1", "nope", &req(false), 0)
                .unwrap_err()
                .code,
            404
        );
        let mut r = req(true);
        r.bound = Some(("Pod".into(), "pod1".into(), Some("stale".into())));
        assert_eq!(
            issue(&store, &k, "ns1", "sa1", &r, 0).unwrap_err().code,
            409
        );
    }
}

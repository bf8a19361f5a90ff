//! Service-account tokens for pods, as the kubelet's token manager (`pkg/kubelet/token`)
//! keeps them: requested through TokenRequest for the pod's service account, bound to the pod,
//! cached, and requested again once 80% of their life has passed or they are older than 24
//! hours, so the files pods read always hold a valid token. Pods never get the kubelet's own
//! credential.

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;
use std::collections::HashMap;
use std::sync::Mutex;

/// The lifetime the kubelet asks for the default token volume (kube-apiserver's
/// ServiceAccount admission writes `expirationSeconds: 3607` into the projected volume).
pub const DEFAULT_EXPIRATION_SECS: i64 = 3607;
/// Tokens older than this are requested again whatever their lifetime.
const MAX_AGE_SECS: i64 = 24 * 3600;

/// Which token: (namespace, service account, pod uid, audience, lifetime).
type Key = (String, String, String, Option<String>, i64);

#[derive(Clone)]
struct Cached {
    token: String,
    issued: i64,
    expires: i64,
}

/// Whether a token issued at `issued`, expiring at `expires`, must be requested again at
/// `now` (kubelet's `requiresRefresh`).
pub fn requires_refresh(issued: i64, expires: i64, now: i64) -> bool {
    let life = expires - issued;
    now >= issued + life * 8 / 10 || now >= issued + MAX_AGE_SECS
}

#[derive(Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<Key, Cached>>,
}

/// A pod's token to get: its namespace, service account, name and uid.
pub struct PodRef<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

impl TokenManager {
    /// The current token for `pod`, requesting one when none is cached or it needs refreshing.
    pub async fn token(
        &self,
        client: &kube::Client,
        pod: &PodRef<'_>,
        audience: Option<&str>,
        expiration_secs: i64,
    ) -> Result<String> {
        let key: Key = (
            pod.namespace.into(),
            pod.service_account.into(),
            pod.uid.into(),
            audience.map(String::from),
            expiration_secs,
        );
        let now = jiff::Timestamp::now().as_second();
        if let Some(c) = self.cache.lock().ok().and_then(|m| m.get(&key).cloned())
            && !requires_refresh(c.issued, c.expires, now)
        {
            return Ok(c.token);
        }
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_secs),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name.into()),
                    uid: Some(pod.uid.into()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), pod.namespace);
        let answer = api
            .create_token_request(pod.service_account, &PostParams::default(), &req)
            .await
            .with_context(|| {
                format!(
                    "requesting a token for service account {}/{} (pod {})",
                    pod.namespace, pod.service_account, pod.name
                )
            })?;
        let status = answer
            .status
            .context("the TokenRequest answer has no status")?;
        let expires = status.expiration_timestamp.0.as_second();
        if let Ok(mut m) = self.cache.lock() {
            m.insert(
                key,
                Cached {
                    token: status.token.clone(),
                    issued: now,
                    expires,
                },
            );
        }
        Ok(status.token)
    }

    /// Forgets the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        if let Ok(mut m) = self.cache.lock() {
            m.retain(|k, _| k.2 != uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_at_80_percent_or_after_a_day() {
        // A 3607 s token: kept until 2885 s, requested again from then on.
        assert!(!requires_refresh(0, 3607, 0));
        assert!(!requires_refresh(0, 3607, 2884));
        assert!(requires_refresh(0, 3607, 2885));
        // A year-long token is refreshed after 24 hours.
        assert!(!requires_refresh(0, 365 * 86400, 86399));
        assert!(requires_refresh(0, 365 * 86400, 86400));
    }
}

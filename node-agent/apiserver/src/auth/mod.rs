//! Who makes a request and whether they may: the admin bearer token (kind's
//! `kubernetes-admin`, group `system:masters`, allowed everything) and service-account tokens
//! ([`tokens`]) are authenticated; requests of everyone but `system:masters` are authorized by
//! RBAC ([`rbac`]) on attributes derived from the path as kube-apiserver's `RequestInfoFactory`
//! derives them. [`reviews`] answers the access and identity reviews; [`policy`] is the default
//! policy. `route()` calls [`authenticate`] and [`authorize`] and nothing else from here.

pub mod policy;
pub mod rbac;
pub mod reviews;
pub mod tokens;

use crate::ApiState;
use crate::errors::{ApiError, ApiResult};
use serde_json::{Value, json};

/// The admin kubeconfig's user, as kind's kubeconfig names it.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group whose members every request is allowed to (kube-apiserver's privileged group).
pub const MASTERS_GROUP: &str = "system:masters";

/// An authenticated user (kube-apiserver's `user.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (the bound pod of a service-account token).
    pub extra: Vec<(String, String)>,
}

impl User {
    pub fn admin() -> User {
        User {
            name: ADMIN_USER.into(),
            uid: String::new(),
            groups: vec![MASTERS_GROUP.into(), "system:authenticated".into()],
            extra: vec![],
        }
    }

    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS_GROUP)
    }

    /// The `userInfo` of reviews.
    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            let mut extra = serde_json::Map::new();
            for (k, val) in &self.extra {
                extra.insert(k.clone(), json!([val]));
            }
            v["extra"] = Value::Object(extra);
        }
        v
    }
}

/// What a request asks to do (kube-apiserver's `authorizer.Attributes`): a resource request,
/// or a non-resource one when `path` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub verb: String,
    pub namespace: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub path: Option<String>,
}

impl Attributes {
    /// From a request's method, path (no trailing slash) and whether it asks to watch.
    pub fn of_request(method: &str, path: &str, watch: bool) -> Attributes {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segs.as_slice() {
            ["api", _v, rest @ ..] if !rest.is_empty() => Some(("", rest)),
            ["apis", g, _v, rest @ ..] if !rest.is_empty() => Some((*g, rest)),
            _ => None,
        };
        let Some((group, rest)) = rest else {
            return Attributes {
                verb: method.to_ascii_lowercase(),
                path: Some(if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                }),
                ..Default::default()
            };
        };
        let mut a = Attributes {
            api_group: group.into(),
            ..Default::default()
        };
        let parts: &[&str] = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => {
                a.namespace = (*ns).into();
                tail
            }
            ["namespaces", ns] => {
                // The namespace object itself is in its own namespace, as upstream has it.
                a.namespace = (*ns).into();
                rest
            }
            _ => rest,
        };
        a.resource = parts[0].into();
        a.name = parts.get(1).copied().unwrap_or_default().into();
        a.subresource = parts.get(2).copied().unwrap_or_default().into();
        a.verb = match method {
            "GET" | "HEAD" if watch => "watch",
            "GET" | "HEAD" if a.name.is_empty() => "list",
            "GET" | "HEAD" => "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if a.name.is_empty() => "deletecollection",
            "DELETE" => "delete",
            other => {
                return Attributes {
                    verb: other.to_ascii_lowercase(),
                    ..a
                };
            }
        }
        .into();
        // Exec (and attach, port-forward) over a WebSocket is a GET, but acts on the pod:
        // authorized as `create`, as kube-apiserver does since 1.31.
        if a.resource == "pods"
            && matches!(a.subresource.as_str(), "exec" | "attach" | "portforward")
        {
            a.verb = "create".into();
        }
        a
    }

    /// Why `user` may not: kube-apiserver's wording.
    pub fn forbidden(&self, user: &User) -> ApiError {
        let who = format!("User {:?}", user.name);
        if let Some(p) = &self.path {
            return ApiError::forbidden_request(
                "",
                "",
                "",
                &format!("{who} cannot {} path {p:?}", self.verb),
            );
        }
        let res = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        ApiError::forbidden_request(
            &self.api_group,
            &self.resource,
            &self.name,
            &format!(
                "{who} cannot {} resource {res:?} in API group {:?} {scope}",
                self.verb, self.api_group
            ),
        )
    }
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Who sent a request with this `Authorization` header value. Without authentication
/// configured (plain HTTP on loopback) everyone is the admin.
pub fn authenticate(st: &ApiState, authorization: &str) -> ApiResult<User> {
    let Some(admin) = &st.token else {
        return Ok(User::admin());
    };
    let Some(given) = authorization.strip_prefix("Bearer ").map(str::trim) else {
        return Err(ApiError::unauthorized());
    };
    if given == admin.as_str() {
        return Ok(User::admin());
    }
    let Some(key) = &st.service_account_key else {
        return Err(ApiError::unauthorized());
    };
    tokens::authenticate(&st.store, key, given, now_secs()).map_err(|why| {
        tracing::debug!("service-account token refused: {why}");
        ApiError::unauthorized()
    })
}

/// Whether `user` may do `a`: `system:masters` always, everyone else as RBAC allows.
pub fn authorized(st: &ApiState, user: &User, a: &Attributes) -> bool {
    user.is_master() || rbac::allows(&st.store, user, a)
}

/// [`authorized`], or the 403 kube-apiserver answers.
pub fn authorize(st: &ApiState, user: &User, a: &Attributes) -> ApiResult<()> {
    if authorized(st, user, a) {
        Ok(())
    } else {
        Err(a.forbidden(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_from_paths() {
        let a = Attributes::of_request("GET", "/api/v1/namespaces/kube-system/configmaps", false);
        assert_eq!(
            (
                a.verb.as_str(),
                a.namespace.as_str(),
                a.resource.as_str(),
                a.name.as_str()
            ),
            ("list", "kube-system", "configmaps", "")
        );
        let a = Attributes::of_request("GET", "/api/v1/namespaces/d/pods/p/log", false);
        assert_eq!((a.verb.as_str(), a.subresource.as_str()), ("get", "log"));
        let a = Attributes::of_request("GET", "/api/v1/namespaces/d/pods/p/exec", false);
        assert_eq!(
            (a.verb.as_str(), a.subresource.as_str()),
            ("create", "exec")
        );
        let a = Attributes::of_request("GET", "/api/v1/namespaces/d/pods/p/portforward", false);
        assert_eq!(
            (a.verb.as_str(), a.subresource.as_str()),
            ("create", "portforward")
        );
        let a = Attributes::of_request("GET", "/apis/apps/v1/deployments", true);
        assert_eq!((a.verb.as_str(), a.api_group.as_str()), ("watch", "apps"));
        let a = Attributes::of_request("DELETE", "/api/v1/namespaces/d/pods", false);
        assert_eq!(a.verb, "deletecollection");
        let a = Attributes::of_request("GET", "/apis/apps/v1", false);
        assert_eq!(a.path.as_deref(), Some("/apis/apps/v1"));
        let a = Attributes::of_request("GET", "/api/v1/namespaces/d", false);
        assert_eq!(
            (a.resource.as_str(), a.name.as_str(), a.namespace.as_str()),
            ("namespaces", "d", "d")
        );
    }

    #[test]
    fn forbidden_messages_are_kube_apiservers() {
        let u = User {
            name: "system:serviceaccount:default:default".into(),
            ..Default::default()
        };
        let a = Attributes::of_request("GET", "/api/v1/namespaces/kube-system/secrets", false);
        assert_eq!(
            a.forbidden(&u).message,
            "secrets is forbidden: User \"system:serviceaccount:default:default\" cannot list \
             resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
        );
        let a = Attributes::of_request("GET", "/apis/apps/v1/deployments", false);
        assert!(
            a.forbidden(&u)
                .message
                .starts_with("deployments.apps is forbidden")
        );
        assert!(
            a.forbidden(&u)
                .message
                .ends_with("in API group \"apps\" at the cluster scope")
        );
        let a = Attributes::of_request("GET", "/metrics", false);
        assert_eq!(
            a.forbidden(&u).message,
            "forbidden: User \"system:serviceaccount:default:default\" cannot get path \"/metrics\""
        );
        assert_eq!(a.forbidden(&u).code, 403);
    }
}

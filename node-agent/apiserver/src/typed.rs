//! The k8s-openapi type of each built-in kind: the one table that strict field validation
//! (decode into the type, compare) and the OpenAPI documents (the type's JSON schema) share.

use crate::resources::Resource;
use k8s_openapi::schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Something done with a kind's type.
pub trait Visit {
    type Out;
    fn visit<T: DeserializeOwned + Serialize + JsonSchema>(self) -> Self::Out;
}

/// Runs `v` with the type of `r`'s kind; None for kinds without one (custom resources).
pub fn with_type<V: Visit>(r: &Resource, v: V) -> Option<V::Out> {
    use k8s_openapi::api::{
        apps, authentication, authorization, batch, coordination, core, discovery, rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    Some(match (r.group, r.kind) {
        ("", "Namespace") => v.visit::<core::v1::Namespace>(),
        ("", "Node") => v.visit::<core::v1::Node>(),
        ("", "Pod") => v.visit::<core::v1::Pod>(),
        ("", "Service") => v.visit::<core::v1::Service>(),
        ("", "Endpoints") => v.visit::<core::v1::Endpoints>(),
        ("", "ConfigMap") => v.visit::<core::v1::ConfigMap>(),
        ("", "Secret") => v.visit::<core::v1::Secret>(),
        ("", "Event") => v.visit::<core::v1::Event>(),
        ("", "ServiceAccount") => v.visit::<core::v1::ServiceAccount>(),
        ("coordination.k8s.io", "Lease") => v.visit::<coordination::v1::Lease>(),
        ("apps", "Deployment") => v.visit::<apps::v1::Deployment>(),
        ("apps", "ReplicaSet") => v.visit::<apps::v1::ReplicaSet>(),
        ("apps", "StatefulSet") => v.visit::<apps::v1::StatefulSet>(),
        ("apps", "DaemonSet") => v.visit::<apps::v1::DaemonSet>(),
        ("apps", "ControllerRevision") => v.visit::<apps::v1::ControllerRevision>(),
        ("batch", "Job") => v.visit::<batch::v1::Job>(),
        ("batch", "CronJob") => v.visit::<batch::v1::CronJob>(),
        ("discovery.k8s.io", "EndpointSlice") => v.visit::<discovery::v1::EndpointSlice>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            v.visit::<rbac::v1::ClusterRoleBinding>()
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => v.visit::<rbac::v1::ClusterRole>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => v.visit::<rbac::v1::RoleBinding>(),
        ("rbac.authorization.k8s.io", "Role") => v.visit::<rbac::v1::Role>(),
        ("authentication.k8s.io", "SelfSubjectReview") => {
            v.visit::<authentication::v1::SelfSubjectReview>()
        }
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            v.visit::<authorization::v1::SelfSubjectAccessReview>()
        }
        ("authorization.k8s.io", "SelfSubjectRulesReview") => {
            v.visit::<authorization::v1::SelfSubjectRulesReview>()
        }
        ("authorization.k8s.io", "SubjectAccessReview") => {
            v.visit::<authorization::v1::SubjectAccessReview>()
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            v.visit::<apiextensions::v1::CustomResourceDefinition>()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::RESOURCES;

    struct Named;
    impl Visit for Named {
        type Out = String;
        fn visit<T: DeserializeOwned + Serialize + JsonSchema>(self) -> String {
            T::schema_name().into_owned()
        }
    }

    #[test]
    fn every_built_in_kind_has_its_type() {
        for r in RESOURCES {
            let name = with_type(r, Named).unwrap_or_else(|| panic!("{} has no type", r.kind));
            assert!(
                name.ends_with(&format!(".{}.{}", r.version, r.kind)),
                "{name}"
            );
        }
    }
}

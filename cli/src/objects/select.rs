//! Which objects a command line names: a kind (by any of its names) and names, `KIND NAME` or
//! `KIND/NAME`, as kubectl reads them.

use anyhow::{Context, bail};

use super::kinds;

/// The one deployment a `scale`/`rollout` command names, as (name, namespace).
pub fn one_deployment(
    client: &kube::Client,
    verb: &str,
    target: &str,
    name: Option<String>,
    namespace: Option<String>,
) -> anyhow::Result<(String, String)> {
    let (k, names) = kind_and_names(target, name.into_iter().collect())?;
    if k.kind != "Deployment" {
        bail!("{verb}: only deployments are supported, not {}", k.plural);
    }
    let [name] = names.as_slice() else {
        bail!("{verb}: name exactly one deployment");
    };
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    Ok((name.clone(), ns))
}

/// `deploy web` or `deploy/web`.
pub fn kind_and_names(
    kind: &str,
    mut names: Vec<String>,
) -> anyhow::Result<(&'static kinds::Kind, Vec<String>)> {
    let (k, inline) = match kind.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (kind, None),
    };
    let found = kinds::by_name(k).with_context(|| {
        format!(
            "unknown resource type {k:?}; minikind knows: {}",
            kinds::KINDS
                .iter()
                .map(|k| k.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if let Some(n) = inline {
        names.insert(0, n);
    }
    Ok((found, names))
}

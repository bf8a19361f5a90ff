//! How a command reaches an existing cluster: its name (flag, config, environment, default, as
//! KIND's `--name` / `KIND_CLUSTER_NAME`), its control-plane node's admin kubeconfig, and an
//! API client pointed where this host reaches the API server. Shared by the commands, the
//! create steps and `minikind dns …`.

use anyhow::{Context, Result};

use crate::config;
use crate::provider::docker::{self, files, list, nodes};

/// Environment variable that names the default cluster, like KIND_CLUSTER_NAME.
pub const CLUSTER_NAME_ENV: &str = "MINIKIND_CLUSTER_NAME";

/// Flag, then config file, then `$MINIKIND_CLUSTER_NAME`, then "minikind".
pub fn resolve_name(flag: Option<String>, from_config: Option<&str>) -> Result<String> {
    pick_name(flag, from_config, std::env::var(CLUSTER_NAME_ENV).ok())
}

/// [`resolve_name`] with the environment variable's value given, so it can be tested without
/// touching the process environment. An empty variable counts as unset, as with KIND.
fn pick_name(
    flag: Option<String>,
    from_config: Option<&str>,
    from_env: Option<String>,
) -> Result<String> {
    let from_env = from_env.filter(|s| !s.is_empty());
    let (name, source) = match (flag, from_config, from_env) {
        (Some(n), _, _) => (n, None),
        (None, Some(n), _) => (n.to_string(), None),
        (None, None, Some(n)) => (n, Some(CLUSTER_NAME_ENV)),
        (None, None, None) => (config::DEFAULT_CLUSTER_NAME.to_string(), None),
    };
    match (config::validate_name(&name), source) {
        (Ok(()), _) => Ok(name),
        // A name nobody typed on this command line: say where it came from.
        (Err(e), Some(var)) => Err(anyhow::Error::new(e).context(format!("${var}"))),
        (Err(e), None) => Err(e.into()),
    }
}

/// An API client for the named (or default) cluster, reaching its API server the way `create`
/// does, with the admin kubeconfig read from its control-plane node.
pub async fn cluster_client(flag: Option<String>) -> Result<kube::Client> {
    let name = resolve_name(flag, None)?;
    let docker = docker::connect().await?;
    let (cp, admin) = control_plane_admin(&docker, &name).await?;
    let server = nodes::api_server_url(&docker, &name, &cp).await?;
    client_for(&admin, &server).await
}

/// The cluster's control-plane node and the admin kubeconfig on it.
pub async fn control_plane_admin(docker: &bollard::Docker, name: &str) -> Result<(String, String)> {
    let cp = format!("{name}-control-plane");
    if !list::nodes(docker, Some(name))
        .await?
        .iter()
        .any(|n| n.name == cp)
    {
        anyhow::bail!(
            "cluster {name:?} has no control-plane node (does it exist? see `minikind get clusters`)"
        );
    }
    let admin = files::read_node_file(docker, &cp, minikind_contract::ADMIN_KUBECONFIG).await?;
    Ok((cp, admin))
}

/// A kube client from the node's admin kubeconfig, pointed at `server`.
pub async fn client_for(admin: &str, server: &str) -> Result<kube::Client> {
    let doc = minikind_apiserver::kubeconfig::rewrite_server(admin, server)?;
    let kc =
        kube::config::Kubeconfig::from_yaml(&doc).context("parsing the cluster's kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the cluster's kubeconfig")?;
    kube::Client::try_from(config).context("building an API client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_from_flag_then_config_then_env_then_minikind() {
        let env = || Some("from-env".to_string());
        assert_eq!(
            pick_name(Some("flag".into()), Some("cfg"), env()).unwrap(),
            "flag"
        );
        assert_eq!(pick_name(None, Some("cfg"), env()).unwrap(), "cfg");
        assert_eq!(pick_name(None, None, env()).unwrap(), "from-env");
        assert_eq!(pick_name(None, None, None).unwrap(), "minikind");
        // Set but empty is unset, as KIND_CLUSTER_NAME is.
        assert_eq!(
            pick_name(None, None, Some(String::new())).unwrap(),
            "minikind"
        );
        // A bad name from the environment is refused and the variable named.
        let err = format!(
            "{:#}",
            pick_name(None, None, Some("Bad_Env".into())).unwrap_err()
        );
        assert!(
            err.contains(CLUSTER_NAME_ENV) && err.contains("\"Bad_Env\""),
            "{err}"
        );
        // ... but only when it is the one used.
        assert_eq!(
            pick_name(Some("ok".into()), None, Some("Bad_Env".into())).unwrap(),
            "ok"
        );
    }

    #[test]
    fn flag_wins_over_config_name() {
        assert_eq!(
            resolve_name(Some("flag".into()), Some("cfg")).unwrap(),
            "flag"
        );
        assert_eq!(resolve_name(None, Some("cfg")).unwrap(), "cfg");
        assert!(resolve_name(Some("Bad_Name".into()), None).is_err());
    }
}

//! What the create steps share, as KIND's `actions.ActionContext`
//! (`pkg/cluster/internal/create/actions/action.go`): the engine, the status output, the
//! options, and what earlier steps made that later ones need.

use std::time::Duration;

use anyhow::{Context as _, Result};
use bollard::Docker;

use crate::config::{ClusterConfig, NodeRole};
use crate::progress::Status;
use crate::provider::docker::nodes::{self, Privileges};

pub struct Context<'a> {
    pub docker: &'a Docker,
    pub status: &'a Status,
    /// The cluster's name and config, and the bound of every wait (`--wait`).
    pub name: &'a str,
    pub config: &'a ClusterConfig,
    pub wait: Duration,
    /// The nodes and their roles, named as KIND names them: known from the config alone.
    pub nodes: Vec<(String, NodeRole)>,
    /// The node image's reference (the node image step).
    pub image: Option<String>,
    /// The lab upstream's address on the cluster network (the lab upstream step, when
    /// `dns.upstream: lab`): the nodes' `--dns`.
    pub upstream_ip: Option<String>,
    /// The builtin embedded resolvers' external servers (the nodes step; empty unless
    /// `dns.embedded: builtin`).
    pub embedded_servers: Vec<String>,
    /// When the nodes were started, in Unix seconds (the nodes step): the waits read the nodes'
    /// logs from then on.
    pub started_at: i64,
    /// What the engine let the nodes have (the nodes step).
    pub privileges: Option<Privileges>,
    /// The way to the API server (the control-plane step).
    pub api: Option<ApiAccess>,
}

/// The control plane's admin kubeconfig, the address this host reaches the API server at, and
/// a client for it.
pub struct ApiAccess {
    pub admin: String,
    pub server: String,
    pub client: kube::Client,
}

impl<'a> Context<'a> {
    pub fn new(
        docker: &'a Docker,
        status: &'a Status,
        name: &'a str,
        config: &'a ClusterConfig,
        wait: Duration,
    ) -> Context<'a> {
        Context {
            docker,
            status,
            name,
            config,
            wait,
            nodes: nodes::node_names(name, &config.roles()),
            image: None,
            upstream_ip: None,
            embedded_servers: Vec::new(),
            started_at: 0,
            privileges: None,
            api: None,
        }
    }

    /// The node names, without their roles.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn image(&self) -> Result<&str> {
        self.image
            .as_deref()
            .context("no node image: the node image step has not run")
    }

    pub fn api(&self) -> Result<&ApiAccess> {
        self.api
            .as_ref()
            .context("no API server access: the control-plane step has not run")
    }
}

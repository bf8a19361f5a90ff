//! Installing the DNS add-on: kubeadm's `coredns` ServiceAccount, ConfigMap, Deployment and
//! `kube-dns` Service, through the API with the admin client (kubeadm's `init phase addon
//! coredns`; [`minikind_control_plane::dns_addon::install`] is the one implementation), and the
//! NodeLocal DNSCache add-on when the config switches it on (`dns.nodeLocalDNS`; the same
//! install `minikind dns nodelocal on` runs).
//!
//! kubeadm installs the add-on during `init`, before any worker joins, so in KIND both CoreDNS
//! replicas usually land on the control plane: it is the only Ready node when they are
//! scheduled, and their pod anti-affinity is only preferred. minikind installs it once every
//! node is Ready instead, so the scheduler can honour that preference and spread the replicas
//! over the nodes — then a restart of one node (the control plane included) leaves a replica
//! answering elsewhere.

use anyhow::{Context as _, Result};
use minikind_control_plane::dns_addon::{self, DnsAddon};
use minikind_control_plane::node_local_dns;

use super::context::Context;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let step = ctx.status.step("Installing CoreDNS 🧭");
    let addon = DnsAddon::for_domain(minikind_agent::CLUSTER_DOMAIN);
    let created = dns_addon::install(
        &ctx.api()?.client,
        ctx.config.networking.service_subnet,
        &addon,
    )
    .await
    .context("installing the DNS add-on")?;
    tracing::debug!(created, "DNS add-on installed");
    if let Some(nl) = &ctx.config.dns.node_local_dns {
        let created =
            node_local_dns::install(&ctx.api()?.client, ctx.config.networking.service_subnet, nl)
                .await
                .context("installing the NodeLocal DNSCache add-on")?;
        tracing::debug!(created, "NodeLocal DNSCache add-on installed");
    }
    step.done();
    Ok(())
}

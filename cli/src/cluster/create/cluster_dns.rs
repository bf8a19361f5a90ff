//! Waiting for cluster DNS: a pod on every node resolves `kubernetes.default`
//! ([`crate::cluster::dns_check`]). KIND does not wait for DNS; minikind does, since DNS is what
//! it shows. Without the network magic the wait is skipped and the reason said instead.

use anyhow::Result;

use super::context::Context;
use crate::cluster::dns_check;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    if ctx.config.dns.network_magic {
        let step = ctx.status.step("Waiting for cluster DNS 🔎");
        dns_check::wait_every_node(&ctx.api()?.client, &ctx.node_names(), ctx.wait).await?;
        step.done();
    } else {
        // Without the fix, CoreDNS forwards to 127.0.0.11 — itself, in its own namespace — and
        // its loop plugin stops it: the failure this switch exists to show.
        ctx.status.line(
            "   network magic off: not waiting for cluster DNS (CoreDNS is expected to crash-loop \
             on its loop check; see `minikind logs -n kube-system <coredns pod>`)",
        );
    }
    Ok(())
}

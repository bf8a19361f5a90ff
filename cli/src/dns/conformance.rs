//! `minikind dns conformance`: the DNS tests of Kubernetes' end-to-end suite
//! (kubernetes/kubernetes `test/e2e/network/dns.go`, with the probes of `dns_common.go`),
//! written for this project and run against a minikind cluster or any cluster a kubeconfig
//! names. Each test runs in a namespace of its own, makes upstream's objects there, and asks
//! its names from a querier pod with one container per prober image (upstream's two probers
//! are a glibc and a musl image: `--image` twice); the lookups go through `dns test`'s runner
//! and its report (table, `-o json`, `--junit`), each result under the upstream test's name,
//! each failure with its `dns trace`. Exits non-zero on any failure.
//!
//! - [`objects`]: the services and pods the tests make;
//! - [`session`]: one test's namespace, its objects, lookups and command checks;
//! - [`suite`]: the tests.

mod objects;
mod session;
mod suite;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use crate::dns::test::{self, ClusterArgs, ReportArgs};
use crate::interrupt::{Interrupted, StopSignals};
use session::{Ctx, Session};

/// The external names a run uses unless told otherwise: names of the lab upstream's zone
/// (`dns.upstream: lab`), so the default run stays on the machine.
pub const DEFAULT_EXTERNAL_NAMES: [&str; 2] = ["www.example.test", "mail.example.test"];

/// Most tests at once.
const MAX_PARALLEL: i64 = 16;

/// `minikind dns conformance`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    /// A prober image; give it again for more (upstream probes from a glibc and a musl image).
    /// Each querier pod runs one container per image and every lookup is made from each. An
    /// image needs `sleep`, `cat`, `dig` and `getent`.
    #[arg(long = "image", default_value = crate::cluster::dns_check::TOOLS_IMAGE)]
    pub images: Vec<String>,
    /// The test DNS server's image in "should support configurable pod resolv.conf" (CoreDNS;
    /// a minikind node runs cluster-dns for it).
    #[arg(long, default_value = minikind_control_plane::dns_addon::COREDNS_IMAGE)]
    pub coredns_image: String,
    /// Two names outside the cluster that its upstream resolves (comma-separated): the
    /// ExternalName targets and the names resolved through the forward. The defaults are in
    /// the lab upstream's zone; for a cluster without it, give names its upstream knows.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_EXTERNAL_NAMES.map(String::from))]
    pub external_names: Vec<String>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Run only the tests whose name contains this text (e.g. `ExternalName`).
    #[arg(long)]
    pub focus: Option<String>,
    /// How many tests run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=MAX_PARALLEL))]
    pub parallel: u16,
    /// How long each lookup keeps retrying until it meets its expectation.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The tests `focus` selects, in upstream's order; an error when none is.
fn selected(focus: Option<&str>) -> Result<Vec<suite::Test>> {
    let tests: Vec<suite::Test> = suite::ALL
        .iter()
        .copied()
        .filter(|t| focus.is_none_or(|f| t.name().contains(f)))
        .collect();
    if tests.is_empty() {
        let names: Vec<&str> = suite::ALL.iter().map(|t| t.name()).collect();
        bail!(
            "--focus {:?} matches no test; the tests are:\n  {}",
            focus.unwrap_or_default(),
            names.join("\n  ")
        );
    }
    Ok(tests)
}

/// The two external names, checked.
fn external_names(names: &[String]) -> Result<[String; 2]> {
    let [a, b] = names else {
        bail!(
            "--external-names takes two names (the ExternalName test changes from one to the \
             other), got {}",
            names.len()
        );
    };
    for n in [a, b] {
        minikind_pod_tools::client::parse_name(n)
            .map_err(|e| anyhow::anyhow!("--external-names: {e}"))?;
    }
    if a.eq_ignore_ascii_case(b) {
        bail!("--external-names: the two names must differ, both are {a:?}");
    }
    Ok([a.clone(), b.clone()])
}

/// Runs one test in its namespace and gives its outcomes (a failed setup is one).
async fn run_one(ctx: &Ctx, number: usize, t: suite::Test) -> Vec<test::Outcome> {
    let mut session = match Session::open(ctx, t.name(), number).await {
        Ok(s) => s,
        Err(e) => {
            return vec![test::Outcome {
                test: Some(t.name().to_string()),
                index: 0,
                name: "(setup)".into(),
                rtype: "-".into(),
                tool: "api".into(),
                protocol: None,
                from: format!("dns-{number}-{}", ctx.run),
                passed: false,
                message: format!("{e:#}"),
                attempts: 1,
                time: Duration::ZERO,
                reply: None,
                trace: None,
                trace_text: None,
            }];
        }
    };
    if let Err(e) = t.run(&mut session).await {
        session.failed(&e);
    }
    session.close().await
}

pub async fn run(args: ConformanceArgs) -> Result<()> {
    let tests = selected(args.focus.as_deref())?;
    let external = external_names(&args.external_names)?;
    if args.images.iter().any(|i| i.trim().is_empty()) {
        bail!("--image: an empty image name");
    }
    if args.cluster_domain.trim_matches('.').is_empty() {
        bail!("--cluster-domain: empty");
    }
    let target = test::target(&args.cluster).await?;
    let ctx = Ctx {
        target,
        images: args.images.clone(),
        coredns_image: args.coredns_image.clone(),
        external,
        domain: args.cluster_domain.trim_matches('.').to_string(),
        timeout: args.timeout,
        run: Ctx::run_id(),
    };
    let mut signals = StopSignals::install().context("installing the signal handlers")?;
    let clock = Instant::now();
    let all = futures::stream::iter(tests.iter().enumerate())
        .map(|(i, t)| run_one(&ctx, i + 1, *t))
        .buffered(usize::from(args.parallel))
        .collect::<Vec<_>>();
    // A signal stops the tests at once; their namespaces are deleted either way.
    let result: Result<Vec<Vec<test::Outcome>>> = tokio::select! {
        r = all => Ok(r),
        signal = signals.recv() => Err(Interrupted { signal }.into()),
    };
    session::remove_all(&ctx).await;
    let outcomes: Vec<test::Outcome> = result?.into_iter().flatten().collect();
    test::report(
        &args.report,
        "minikind dns conformance",
        "kubernetes test/e2e/network/dns.go",
        &outcomes,
        clock.elapsed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: ConformanceArgs,
        }
        let d = Cli::try_parse_from(["conformance"]).unwrap().args;
        assert_eq!(d.images, [crate::cluster::dns_check::TOOLS_IMAGE]);
        assert_eq!(d.external_names, DEFAULT_EXTERNAL_NAMES);
        assert_eq!((d.parallel, d.timeout), (4, Duration::from_secs(60)));
        let a = Cli::try_parse_from(
            "conformance --context k --image glibc:1 --image musl:1 --external-names a.test,b.test \
             --focus ExternalName --junit r.xml -o json --parallel 2 --timeout 2m"
                .split_whitespace(),
        )
        .unwrap()
        .args;
        assert_eq!(a.images, ["glibc:1", "musl:1"]);
        assert_eq!(a.external_names, ["a.test", "b.test"]);
        assert_eq!(a.cluster.context.as_deref(), Some("k"));
        assert_eq!(a.report.output, test::Output::Json);
        assert!(Cli::try_parse_from(["c", "--parallel", "0"]).is_err());
        assert!(Cli::try_parse_from(["c", "--name", "a", "--kubeconfig", "k"]).is_err());
    }

    #[test]
    fn focus_and_external_names_are_checked() {
        assert_eq!(selected(None).unwrap().len(), suite::ALL.len());
        assert_eq!(
            selected(Some("ExternalName")).unwrap(),
            [suite::Test::ExternalName]
        );
        let e = selected(Some("nothing like it")).unwrap_err().to_string();
        assert!(
            e.contains("matches no test") && e.contains("[sig-network] DNS"),
            "{e}"
        );
        let two = |a: &str, b: &str| external_names(&[a.to_string(), b.to_string()]);
        assert!(two("a.test", "b.test").is_ok());
        assert!(two("a.test", "A.test").is_err());
        assert!(two("a..test", "b.test").is_err());
        assert!(external_names(&["a.test".to_string()]).is_err());
    }

    /// The default external names are names the lab upstream serves.
    #[test]
    fn the_default_external_names_are_in_the_lab_zone() {
        let zone = minikind_dns_embedded::lab_upstream::Zone::default_zone();
        for n in DEFAULT_EXTERNAL_NAMES {
            let name = minikind_pod_tools::client::parse_name(n).unwrap();
            assert!(zone.exists(&name), "{n} is not in the lab upstream's zone");
        }
    }
}

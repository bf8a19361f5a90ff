//! `minikind dns test -f CHECKS.yaml`: declarative DNS expectations for CI. Each check asks one
//! name (a type, over UDP, TCP or both) from an existing pod or from a fresh probe pod, with
//! `dig` run in the pod through the API server's exec, retried until it meets its expectation
//! (answers as a set, an rcode, "within N s") or its deadline passes. Checks run in parallel;
//! the results are a table, JSON (`-o json`) and JUnit XML (`--junit FILE`); any failure makes
//! the exit code non-zero and carries the `dns trace` of its name from the same pod.
//!
//! - [`checks`]: the file's schema, defaults and limits;
//! - [`answers`]: dig's output read back, and answer data compared;
//! - [`probe`]: the probe pods, made before and deleted after the checks (also on a failure
//!   or a signal);
//! - [`run`]: one check over one transport, with its retries and its trace;
//! - [`report`]: table, JSON, JUnit.
//!
//! A minikind cluster (`--name`) is traced hop by hop; a cluster reached by `--kubeconfig` /
//! `--context` only from the pod's side, since its nodes cannot be read.

pub mod answers;
pub mod checks;
pub mod probe;
mod report;
pub mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use crate::dns::trace::Target;
use crate::interrupt::{Interrupted, StopSignals};
use checks::{Check, ProbeSpec, Source};
pub use run::{Outcome, PodAt};

/// Most checks run at once.
const MAX_PARALLEL: usize = 64;

/// How the results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Which cluster a DNS check command runs against (`dns test`, `dns conformance`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Cluster name (default: $MINIKIND_CLUSTER_NAME, else "minikind"); not with --kubeconfig
    /// or --context.
    #[arg(long = "name", conflicts_with_all = ["kubeconfig", "context"])]
    pub cluster: Option<String>,
    /// Test any cluster this kubeconfig reaches (its nodes are not read: traces show the
    /// pod's side only).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (of --kubeconfig, else of $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    pub context: Option<String>,
}

/// How a DNS check command reports.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Write a JUnit XML report to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// `table`, or `json` (the results with each failure's trace, as data).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

/// `minikind dns test`.
#[derive(Debug, Clone, clap::Args)]
pub struct TestArgs {
    /// The checks file (YAML; see docs/dns-test.md).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub report: ReportArgs,
    /// How many checks run at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=MAX_PARALLEL as i64))]
    pub parallel: u16,
    /// How long a check without its own `timeout` keeps retrying (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// The API client and trace target for the flags: a minikind cluster by name, or any
/// cluster by kubeconfig/context.
pub async fn target(args: &ClusterArgs) -> Result<Target> {
    if args.kubeconfig.is_none() && args.context.is_none() {
        let cluster = crate::cluster::access::resolve_name(args.cluster.clone(), None)?;
        let docker = crate::provider::docker::connect().await?;
        let client = crate::cluster::access::cluster_client(Some(cluster.clone())).await?;
        return Ok(Target {
            client,
            label: cluster.clone(),
            nodes: Some((docker, cluster)),
        });
    }
    let kubeconfig = match &args.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?,
        None => kube::config::Kubeconfig::read().context("reading the kubeconfig")?,
    };
    let label = args
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())
        .unwrap_or_else(|| "kubeconfig".into());
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("loading the kubeconfig")?;
    let client = kube::Client::try_from(config).context("building an API client")?;
    Ok(Target {
        client,
        label,
        nodes: None,
    })
}

/// Writes the JUnit file if asked, prints the results, and fails when any check failed.
/// `command` and `suite` name the JUnit testsuites and testsuite.
pub fn report(
    args: &ReportArgs,
    command: &str,
    suite: &str,
    outcomes: &[Outcome],
    total: Duration,
) -> Result<()> {
    if let Some(path) = &args.junit {
        let xml = report::junit(command, suite, outcomes, total)?;
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    match args.output {
        Output::Table => print!("{}", report::table(outcomes)),
        Output::Json => println!("{}", report::json(outcomes)?),
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed > 0 {
        bail!("{failed} of {} DNS checks failed", outcomes.len());
    }
    Ok(())
}

fn read_checks(args: &TestArgs) -> Result<Vec<Check>> {
    let path = &args.file;
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > checks::MAX_FILE_BYTES {
        bail!(
            "{}: larger than {} bytes",
            path.display(),
            checks::MAX_FILE_BYTES
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    checks::parse(
        &text,
        &path.display().to_string(),
        args.timeout.unwrap_or(checks::DEFAULT_TIMEOUT),
        minikind_contract::TOOLS_IMAGE,
    )
}

/// Runs every check (after making the probe pods it needs) and gives the outcomes in file
/// order, UDP before TCP.
pub async fn run_checks(
    target: &Target,
    all: &[Check],
    parallel: usize,
    probes: &probe::Probes,
) -> Result<Vec<Outcome>> {
    // A probe pod outlives the longest check and its trace with a margin, so one left behind
    // by a killed run ends by itself.
    let longest = all.iter().map(Check::deadline).max().unwrap_or_default();
    let lifetime = longest * 2 + Duration::from_secs(300);
    let specs: Vec<&ProbeSpec> = {
        let mut v: Vec<&ProbeSpec> = all
            .iter()
            .filter_map(|c| match &c.from {
                Source::Probe(p) => Some(p),
                Source::Pod { .. } => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let started = futures::future::join_all(
        specs
            .iter()
            .map(|s| probe::start(&target.client, s, lifetime, probes)),
    )
    .await;
    let started: BTreeMap<&ProbeSpec, Result<String, String>> = specs
        .into_iter()
        .zip(started)
        .map(|(s, r)| (s, r.map_err(|e| format!("{e:#}"))))
        .collect();

    let jobs: Vec<(&Check, Option<checks::Transport>)> = all
        .iter()
        .flat_map(|c| c.runs().into_iter().map(move |t| (c, t)))
        .collect();
    let started = Arc::new(started);
    let mut outcomes: Vec<Outcome> = futures::stream::iter(jobs)
        .map(|(check, transport)| {
            let started = started.clone();
            async move {
                let at = match &check.from {
                    Source::Pod {
                        namespace,
                        pod,
                        container,
                    } => PodAt {
                        namespace: namespace.clone(),
                        pod: pod.clone(),
                        container: container.clone(),
                    },
                    Source::Probe(spec) => match &started[spec] {
                        Ok(name) => PodAt {
                            namespace: spec.namespace.clone(),
                            pod: name.clone(),
                            container: None,
                        },
                        Err(e) => return unrun(check, transport, &spec.namespace, e),
                    },
                };
                let mut outcome = run::run(&target.client, check, transport, &at).await;
                if !outcome.passed {
                    run::add_trace(target, check, &at, &mut outcome).await;
                }
                outcome
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    outcomes.sort_by_key(|o| (o.index, o.protocol));
    Ok(outcomes)
}

/// The failed outcome of a check whose probe pod never ran.
fn unrun(
    check: &Check,
    transport: Option<checks::Transport>,
    namespace: &str,
    why: &str,
) -> Outcome {
    Outcome {
        test: None,
        index: check.index,
        name: check.name.clone(),
        rtype: check.rtype.clone(),
        tool: check.via.name().into(),
        protocol: transport,
        from: format!("{namespace}/(probe pod)"),
        passed: false,
        message: why.to_string(),
        attempts: 0,
        time: Duration::ZERO,
        reply: None,
        trace: None,
        trace_text: None,
    }
}

pub async fn run(args: TestArgs) -> Result<()> {
    let all = read_checks(&args)?;
    let target = target(&args.cluster).await?;
    let probes = probe::Probes::new();
    let mut signals = StopSignals::install().context("installing the signal handlers")?;
    let clock = Instant::now();
    // A signal stops the checks at once; the probe pods made so far are deleted either way.
    let result = tokio::select! {
        r = run_checks(&target, &all, usize::from(args.parallel), &probes) => r,
        signal = signals.recv() => Err(Interrupted { signal }.into()),
    };
    probe::remove_all(&target.client, &probes).await;
    let outcomes = result?;
    report(
        &args.report,
        "minikind dns test",
        &args.file.display().to_string(),
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
            args: TestArgs,
        }
        let a = Cli::try_parse_from(
            "test -f c.yaml --name lab --junit r.xml -o json --parallel 3 --timeout 1m"
                .split_whitespace(),
        )
        .unwrap()
        .args;
        assert_eq!(a.file, PathBuf::from("c.yaml"));
        assert_eq!(a.cluster.cluster.as_deref(), Some("lab"));
        assert_eq!(a.report.junit, Some(PathBuf::from("r.xml")));
        assert_eq!((a.report.output, a.parallel), (Output::Json, 3));
        assert_eq!(a.timeout, Some(Duration::from_secs(60)));
        let d = Cli::try_parse_from(["test", "-f", "c.yaml"]).unwrap().args;
        assert_eq!((d.report.output, d.parallel), (Output::Table, 8));
        assert_eq!(d.timeout, None);
        assert!(Cli::try_parse_from(["test"]).is_err());
        assert!(Cli::try_parse_from(["test", "-f", "c", "--parallel", "0"]).is_err());
        assert!(Cli::try_parse_from(["test", "-f", "c", "--name", "a", "--context", "b"]).is_err());
        let k = Cli::try_parse_from(["test", "-f", "c", "--kubeconfig", "k", "--context", "x"])
            .unwrap()
            .args;
        assert_eq!(k.cluster.context.as_deref(), Some("x"));
    }
}

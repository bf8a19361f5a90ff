//! `minikind dns trace [--name CLUSTER] [-n NS] POD NAME [--type T] [-o json]`: one lookup run
//! inside a pod with the pod's own resolv.conf, and the path each of its search-list attempts
//! took, every hop read from the running cluster:
//!
//! 1. the lookup: `nslookup -debug` (minikind's, [`minikind_pod_tools::nslookup`]) run
//!    in the pod through the API server, as `minikind exec` does; each exchange's name, server,
//!    client port, id, code and time come from its attempt lines;
//! 2. the kube-proxy rules on the pod's node (`iptables-save`): the `KUBE-SERVICES` rule, the
//!    service chain and its `KUBE-SEP-…` DNATs;
//! 3. which endpoint was taken: the cluster-dns replica whose `log` shows that client port, id
//!    and name (its log read through the kubelet, as `minikind logs` does);
//! 4. for names cluster-dns forwards: its forward target, Docker's DNS rules on the replica's
//!    node as the network magic rewrote them and that node's conntrack flow of the forward
//!    (answered from `127.0.0.11:<port>`: the DNAT to the embedded resolver), the embedded
//!    resolver (its query log in builtin mode; Docker's keeps none), and the lab upstream's
//!    log line. Without `log` the endpoint and the forward come from the conntrack tables.
//!
//! Where the evidence ends (no rule, no log line) the path says so instead of guessing.

mod conntrack;
mod gather;
mod model;
mod nodelocal;
mod path;
mod querylog;
mod render;
mod rules;

use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use minikind_pod_tools::attempt::{AttemptResult, parse_line};
use minikind_resolv_conf::ResolvConf;

pub use gather::exec_capture;
pub use model::Trace;
use model::{ResolvSummary, TracedAttempt};

/// How the trace is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `minikind dns trace`.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// Cluster name (default: $MINIKIND_CLUSTER_NAME, else "minikind").
    #[arg(long = "name")]
    pub cluster: Option<String>,
    /// The pod's namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The container to run the lookup in (default: the pod's first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The pod to run the lookup from.
    pub pod: String,
    /// The name to look up, as an application in the pod would give it.
    #[arg(value_name = "NAME")]
    pub query: String,
    /// The record type.
    #[arg(short = 't', long = "type", default_value = "A")]
    pub rtype: String,
    /// `text` (a tree per attempt) or `json` (the same as data).
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

/// The record type, spelled as dig spells it; an error names the bad value.
pub fn record_type(text: &str) -> Result<String> {
    match minikind_pod_tools::present::parse_record_type(text) {
        Some(t) => Ok(t.to_string()),
        None => bail!("--type {text:?} is not a DNS record type (A, AAAA, SRV, PTR, TXT, …)"),
    }
}

/// The lookup the pod runs: minikind's nslookup (glibc's search-list walk, one type), by its
/// absolute path so a busybox in the node image can't stand in for it.
fn probe_command(name: &str, rtype: &str) -> Vec<String> {
    vec![
        minikind_contract::MINIKIND_PATH.to_string(),
        "nslookup".to_string(),
        "-debug".to_string(),
        format!("-type={rtype}"),
        name.to_string(),
    ]
}

/// The answer lines of nslookup's output (what follows its `Server:`/`Address:` header),
/// without the attempt lines.
fn answer_lines(stdout: &str) -> Vec<String> {
    stdout
        .split_once("\n\n")
        .map_or("", |(_, rest)| rest)
        .lines()
        .filter(|l| parse_line(l).is_none())
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Where a trace reads its evidence: the API server always; the nodes (their rules and logs,
/// through Docker) only for a minikind cluster this host runs.
pub struct Target {
    pub client: kube::Client,
    /// The cluster's name, or the kubeconfig context that named it.
    pub label: String,
    /// The engine and the minikind cluster's name; `None` for a cluster reached by a
    /// kubeconfig alone, whose nodes cannot be read.
    pub nodes: Option<(bollard::Docker, String)>,
}

/// Why a trace without node access stops at the pod's node.
pub const NO_NODE_ACCESS: &str = "the cluster is reached through a kubeconfig only \
    (--kubeconfig/--context), not as a minikind cluster by name: its nodes' iptables rules and \
    logs cannot be read, so each path shows the pod's side only (its resolv.conf and the \
    lookup's attempts)";

/// Traces one lookup of `query` (type `rtype`, as [`record_type`] spells it) from a pod.
/// A lookup that printed no attempts (no minikind nslookup in the pod) is a trace without
/// attempts whose `outcome` and `notes` say why.
pub async fn trace(
    target: &Target,
    namespace: &str,
    pod_name: &str,
    container: Option<&str>,
    query: &str,
    rtype: &str,
) -> Result<Trace> {
    let pods: Api<Pod> = Api::namespaced(target.client.clone(), namespace);
    let pod = gather::client_pod(&pods, namespace, pod_name).await?;

    let conf = gather::exec_capture(
        &pods,
        pod_name,
        container,
        &["cat".to_string(), "/etc/resolv.conf".to_string()],
    )
    .await?;
    if conf.code != 0 {
        bail!(
            "cannot read /etc/resolv.conf in pod {}: {}",
            pod.display(),
            conf.stderr.trim()
        );
    }
    let conf = ResolvConf::parse(&conf.stdout);
    let resolv_conf = ResolvSummary {
        nameservers: conf
            .nameserver_texts()
            .into_iter()
            .map(str::to_string)
            .collect(),
        search: conf.search(),
        ndots: conf.ndots(),
    };

    // The node-local cache's counters just before the lookup (what it adds is read after).
    let node_cache = match (&target.nodes, pod.node.as_deref()) {
        (Some(_), Some(node)) => gather::node_cache_before(&target.client, node).await,
        _ => None,
    };
    let command = probe_command(query, rtype);
    let started = SystemTime::now();
    let probe = gather::exec_capture(&pods, pod_name, container, &command)
        .await
        .context("running the lookup in the pod")?;
    let window = (started, SystemTime::now());
    let parsed: Vec<_> = probe.stdout.lines().filter_map(parse_line).collect();
    let mut trace = Trace {
        cluster: target.label.clone(),
        pod: pod.clone(),
        name: query.to_string(),
        rtype: rtype.to_string(),
        resolv_conf,
        command,
        attempts: Vec::new(),
        answer: answer_lines(&probe.stdout),
        outcome: String::new(),
        notes: Vec::new(),
    };
    if parsed.is_empty() {
        trace.outcome = format!(
            "the lookup printed no attempts (exit code {}): {}{}",
            probe.code,
            probe.stdout.trim(),
            probe.stderr.trim()
        );
        return Ok(trace);
    }
    let attempts: Vec<_> = parsed.iter().map(|(_, a)| a.clone()).collect();

    let evidence = match &target.nodes {
        Some((docker, cluster)) => {
            gather::evidence(
                docker,
                &target.client,
                cluster,
                &pod,
                &attempts,
                window,
                node_cache,
                &mut trace.notes,
            )
            .await?
        }
        None => {
            trace.notes.push(NO_NODE_ACCESS.to_string());
            path::Evidence {
                client: pod.clone(),
                nodes: Default::default(),
                replicas: Vec::new(),
                corefile_logs: None,
                upstream: None,
                node_cache: None,
                attempts: attempts.clone(),
                window,
            }
        }
    };
    if evidence.corefile_logs == Some(false) {
        trace.notes.push(path::NO_LOG_NOTE.to_string());
    }
    trace.attempts = parsed
        .into_iter()
        .map(|(number, attempt)| TracedAttempt {
            number,
            hops: path::assemble(&attempt, &evidence),
            attempt,
        })
        .collect();
    trace.outcome = match trace.attempts.last().map(|t| &t.attempt.result) {
        Some(AttemptResult::Reply { rcode, answers, .. }) => {
            format!("{rcode}, {answers} answer record(s)")
        }
        Some(AttemptResult::Failed { error }) => format!("no reply ({error})"),
        None => "no attempt".to_string(),
    };
    Ok(trace)
}

/// The trace as `dns trace` prints it.
pub fn render_text(trace: &Trace) -> String {
    render::text(trace)
}

pub async fn run(args: TraceArgs) -> Result<()> {
    let rtype = record_type(&args.rtype)?;
    minikind_pod_tools::client::parse_name(&args.query).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cluster = crate::cluster::access::resolve_name(args.cluster.clone(), None)?;
    let docker = crate::provider::docker::connect().await?;
    let client = crate::cluster::access::cluster_client(Some(cluster.clone())).await?;
    let target = Target {
        client,
        label: cluster.clone(),
        nodes: Some((docker, cluster)),
    };
    let trace = trace(
        &target,
        &args.namespace,
        &args.pod,
        args.container.as_deref(),
        &args.query,
        &rtype,
    )
    .await?;
    if trace.attempts.is_empty() {
        bail!("in pod {}, {}", trace.pod.display(), trace.outcome);
    }
    match args.output {
        Output::Text => print!("{}", render::text(&trace)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&trace).context("writing the trace as JSON")?
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_names_are_checked() {
        assert_eq!(record_type("aaaa").unwrap(), "AAAA");
        let e = record_type("BOGUS").unwrap_err().to_string();
        assert!(e.contains("--type \"BOGUS\""), "{e}");
        assert_eq!(
            probe_command("abc", "SRV")[1..],
            ["nslookup", "-debug", "-type=SRV", "abc"]
        );
    }

    #[test]
    fn the_command_line_parses() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: TraceArgs,
        }
        let cli = Cli::try_parse_from(
            "trace --name lab -n other busybox www.example.test --type AAAA -o json"
                .split_whitespace(),
        )
        .unwrap();
        let a = cli.args;
        assert_eq!(a.cluster.as_deref(), Some("lab"));
        assert_eq!((a.namespace.as_str(), a.pod.as_str()), ("other", "busybox"));
        assert_eq!(
            (a.query.as_str(), a.rtype.as_str()),
            ("www.example.test", "AAAA")
        );
        assert_eq!(a.output, Output::Json);
        let d = Cli::try_parse_from(["trace", "busybox", "abc"])
            .unwrap()
            .args;
        assert_eq!((d.namespace.as_str(), d.rtype.as_str()), ("default", "A"));
        assert_eq!(d.output, Output::Text);
        assert!(Cli::try_parse_from(["trace", "busybox"]).is_err());
        assert!(Cli::try_parse_from(["trace", "busybox", "abc", "-o", "yaml"]).is_err());
    }

    #[test]
    fn answer_lines_skip_header_and_attempts() {
        let out = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n\
                   ;; attempt 1: a.default.svc.cluster.local. A to 10.96.0.10#53 (UDP) from 10.244.1.3#1 id 2: NXDOMAIN, 0 answers, 0.300 ms\n\
                   Non-authoritative answer:\nName:\twww.example.test\nAddress: 192.0.2.10\n\n";
        assert_eq!(
            answer_lines(out),
            [
                "Non-authoritative answer:",
                "Name:\twww.example.test",
                "Address: 192.0.2.10"
            ]
        );
    }
}

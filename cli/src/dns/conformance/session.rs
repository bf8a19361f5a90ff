//! One conformance test's run: a namespace of its own (as the e2e framework gives each test),
//! the objects it makes there, its lookups queued and run by `dns test`'s runner (each from
//! every prober container, retried until they meet their expectation or time out, a failure
//! with its trace), and checks of a command's output. The namespace carries the run's label,
//! so what a failed or interrupted run left is found and deleted.

use std::fmt::Debug;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::objects::{self, Querier};
use crate::dns::test::answers::Answer;
use crate::dns::test::checks::{Check, Expect, Protocol, Source, Via};
use crate::dns::test::probe::{self, Probes};
use crate::dns::test::{Outcome, run_checks};
use crate::dns::trace::{Target, exec_capture};

/// The label on every namespace of one run.
pub const RUN_LABEL: &str = "dns-conformance.minikind.dev/run";

/// How long a querier pod idles before it ends by itself (a run that was killed leaves none
/// running for long).
const POD_LIFETIME: Duration = Duration::from_secs(1800);

/// What every test of a run shares.
pub struct Ctx {
    pub target: Target,
    /// The prober images: every lookup is made from a container of each.
    pub images: Vec<String>,
    pub coredns_image: String,
    /// Two names outside the cluster, resolved through its upstream.
    pub external: [String; 2],
    /// The cluster's DNS domain (`cluster.local`).
    pub domain: String,
    /// How long a lookup keeps retrying.
    pub timeout: Duration,
    /// The run's id: its namespaces' label value and name suffix.
    pub run: String,
}

impl Ctx {
    /// A fresh run id: short, so `dns-<n>-<id>` stays a readable namespace name.
    pub fn run_id() -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{:06x}",
            (nanos ^ u128::from(std::process::id())) & 0xff_ffff
        )
    }
}

/// A querier pod that runs.
#[derive(Debug, Clone)]
pub struct Running {
    pub name: String,
    pub ip: IpAddr,
    pub containers: Vec<String>,
}

impl Running {
    /// The pod's A record name in the `pods` zone: `a-b-c-d.<namespace>.pod.<domain>` (what
    /// upstream's probe builds from `hostname -i`).
    pub fn a_record(&self, namespace: &str, domain: &str) -> String {
        let dashed = self.ip.to_string().replace(['.', ':'], "-");
        format!("{dashed}.{namespace}.pod.{domain}")
    }
}

/// One test's namespace, what it made there and what it found.
pub struct Session<'c> {
    pub ctx: &'c Ctx,
    pub test: &'static str,
    pub ns: String,
    queued: Vec<Check>,
    outcomes: Vec<Outcome>,
    next: usize,
}

impl<'c> Session<'c> {
    /// Makes the test's namespace (`dns-<number>-<run>`).
    pub async fn open(ctx: &'c Ctx, test: &'static str, number: usize) -> Result<Session<'c>> {
        let ns = format!("dns-{number}-{}", ctx.run);
        let namespace: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {
                RUN_LABEL: ctx.run,
                "app.kubernetes.io/managed-by": "minikind",
            }},
        }))
        .context("building the test namespace")?;
        Api::<Namespace>::all(ctx.target.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {ns}"))?;
        wait_default_service_account(&ctx.target.client, &ns).await?;
        Ok(Session {
            ctx,
            test,
            ns,
            queued: Vec::new(),
            outcomes: Vec::new(),
            next: 0,
        })
    }

    /// `<name>.<namespace>.svc.<domain>`.
    pub fn fqdn(&self, name: &str) -> String {
        format!("{name}.{}.svc.{}", self.ns, self.ctx.domain)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.ctx.target.client.clone(), &self.ns)
    }

    /// Creates `obj` in the test's namespace.
    pub async fn create<K>(&self, obj: &K) -> Result<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let what = obj.meta().name.clone().unwrap_or_else(|| {
            format!(
                "{} {}…",
                K::kind(&Default::default()),
                obj.meta().generate_name.clone().unwrap_or_default()
            )
        });
        self.api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .with_context(|| format!("creating {what} in namespace {}", self.ns))
    }

    /// Changes service `name` with a JSON merge patch.
    pub async fn patch_service(&self, name: &str, patch: Value) -> Result<Service> {
        self.api::<Service>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("changing service {}/{name}", self.ns))
    }

    /// A service's ClusterIP, as the API server allocated it.
    pub fn cluster_ip(svc: &Service) -> Result<String> {
        svc.spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| ip.parse::<IpAddr>().is_ok())
            .with_context(|| {
                format!(
                    "service {} has no ClusterIP",
                    svc.metadata.name.as_deref().unwrap_or("?")
                )
            })
    }

    /// The ClusterIP of `default/kubernetes`, what `kubernetes.default` must resolve to.
    pub async fn kubernetes_ip(&self) -> Result<String> {
        let svc = Api::<Service>::namespaced(self.ctx.target.client.clone(), "default")
            .get("kubernetes")
            .await
            .context("reading service default/kubernetes")?;
        Self::cluster_ip(&svc)
    }

    /// Creates `pod` and waits until it runs.
    pub async fn start_pod(&self, pod: &Pod, what: &str) -> Result<Pod> {
        let created = self.create(pod).await?;
        let name = created.metadata.name.unwrap_or_default();
        probe::wait_running(&self.api::<Pod>(), &self.ns, &name, what).await
    }

    /// Starts a querier pod (one container per prober image) and waits until it runs.
    pub async fn querier(&self, q: &Querier) -> Result<Running> {
        let pod = objects::querier(q, &self.ctx.images, POD_LIFETIME)?;
        let containers = objects::container_names(&self.ctx.images);
        let pod = self.start_pod(&pod, &self.ctx.images.join(", ")).await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ip = pod
            .status
            .and_then(|s| s.pod_ip)
            .and_then(|ip| ip.parse().ok())
            .with_context(|| format!("querier pod {}/{name} runs without an IP", self.ns))?;
        Ok(Running {
            name,
            ip,
            containers,
        })
    }

    fn queue(
        &mut self,
        from: &Running,
        name: &str,
        rtype: &str,
        search: bool,
        via: Via,
        answers: Option<&[String]>,
    ) -> Result<()> {
        let answers = answers
            .map(|list| {
                list.iter()
                    .map(|a| Answer::expected(rtype, a).map_err(|e| anyhow!("{e}")))
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        for container in &from.containers {
            self.queued.push(Check {
                index: self.next,
                name: name.to_string(),
                rtype: rtype.to_string(),
                expect: Expect {
                    answers: answers.clone(),
                    rcode: None,
                    within: None,
                },
                from: Source::Pod {
                    namespace: self.ns.clone(),
                    pod: from.name.clone(),
                    container: Some(container.clone()),
                },
                protocol: Protocol::Both,
                timeout: self.ctx.timeout,
                search,
                via,
            });
            self.next += 1;
        }
        Ok(())
    }

    /// Queues a DNS lookup (dig, over UDP and over TCP, as upstream's `+notcp` and `+tcp`
    /// probes) from every prober; `answers` `None`: any answer of the type will do.
    pub fn dig(
        &mut self,
        from: &Running,
        name: &str,
        rtype: &str,
        search: bool,
        answers: Option<&[String]>,
    ) -> Result<()> {
        self.queue(from, name, rtype, search, Via::Dig, answers)
    }

    /// Queues a `getent hosts` lookup (the C library: /etc/hosts, then DNS) from every prober.
    pub fn getent(&mut self, from: &Running, name: &str, answers: &[String]) -> Result<()> {
        self.queue(from, name, "A", false, Via::Getent, Some(answers))
    }

    /// Runs the queued lookups (in parallel) and keeps their outcomes.
    pub async fn flush(&mut self) -> Result<()> {
        let checks = std::mem::take(&mut self.queued);
        if checks.is_empty() {
            return Ok(());
        }
        let parallel = checks.len().min(16);
        let outcomes = run_checks(&self.ctx.target, &checks, parallel, &Probes::new()).await?;
        self.outcomes.extend(outcomes.into_iter().map(|mut o| {
            o.test = Some(self.test.to_string());
            o
        }));
        Ok(())
    }

    /// Runs `argv` once in every prober of `from` and judges its standard output (`judge`
    /// gives why it is wrong, if it is).
    pub async fn command(
        &mut self,
        from: &Running,
        argv: &[&str],
        judge: impl Fn(&str) -> Option<String>,
    ) {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let pods: Api<Pod> = self.api();
        for container in &from.containers {
            let started = Instant::now();
            let result = exec_capture(&pods, &from.name, Some(container), &argv).await;
            let (passed, message, output) = match result {
                Err(e) => (false, format!("{e:#}"), None),
                Ok(out) if out.code != 0 => (
                    false,
                    format!("exited {}: {}", out.code, out.stderr.trim()),
                    Some(out.stdout),
                ),
                Ok(out) => match judge(&out.stdout) {
                    Some(why) => (false, why, Some(out.stdout)),
                    None => (true, String::new(), Some(out.stdout)),
                },
            };
            self.outcomes.push(Outcome {
                test: Some(self.test.to_string()),
                index: self.next,
                name: argv.join(" "),
                rtype: "-".into(),
                tool: "exec".into(),
                protocol: None,
                from: format!("{}/{} ({container})", self.ns, from.name),
                passed,
                message,
                attempts: 1,
                time: started.elapsed(),
                reply: None,
                trace: None,
                trace_text: (!passed)
                    .then(|| output.map(|o| format!("output:\n{o}")))
                    .flatten(),
            });
            self.next += 1;
        }
    }

    /// Records why the test could not be set up or run to its end.
    pub fn failed(&mut self, error: &anyhow::Error) {
        self.outcomes.push(Outcome {
            test: Some(self.test.to_string()),
            index: self.next,
            name: "(setup)".into(),
            rtype: "-".into(),
            tool: "api".into(),
            protocol: None,
            from: self.ns.clone(),
            passed: false,
            message: format!("{error:#}"),
            attempts: 1,
            time: Duration::ZERO,
            reply: None,
            trace: None,
            trace_text: None,
        });
    }

    /// Deletes the namespace (and so everything the test made) and gives the outcomes.
    pub async fn close(self) -> Vec<Outcome> {
        delete_namespace(&self.ctx.target.client, &self.ns).await;
        self.outcomes
    }
}

/// How long a new namespace may take to get its `default` service account.
const SERVICE_ACCOUNT_LIMIT: Duration = Duration::from_secs(60);

/// Waits for the service account controller to make `default` in a new namespace: pods are
/// refused until it exists (the e2e framework waits for it the same way).
async fn wait_default_service_account(client: &kube::Client, ns: &str) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + SERVICE_ACCOUNT_LIMIT;
    loop {
        if api
            .get_opt("default")
            .await
            .with_context(|| format!("reading service account {ns}/default"))?
            .is_some()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "namespace {ns} has no service account `default` after {}s: is the service \
                 account controller running?",
                SERVICE_ACCOUNT_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_namespace(client: &kube::Client, ns: &str) {
    let api = Api::<Namespace>::all(client.clone());
    match api.delete(ns, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => eprintln!("WARNING: could not delete namespace {ns}: {e}"),
    }
}

/// Deletes every namespace the run left (an interrupted test's, or one whose delete failed).
pub async fn remove_all(ctx: &Ctx) {
    let api = Api::<Namespace>::all(ctx.target.client.clone());
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={}", ctx.run));
    match api.list(&selector).await {
        Ok(list) => {
            for ns in list.items {
                if let Some(name) = ns.metadata.name {
                    delete_namespace(&ctx.target.client, &name).await;
                }
            }
        }
        Err(e) => eprintln!(
            "WARNING: could not list this run's namespaces (label {RUN_LABEL}={}) to delete \
             them: {e}",
            ctx.run
        ),
    }
}

/// Why a resolv.conf lacks what a test put in its pod's `dnsConfig`, if it does.
pub fn resolv_conf_lacks(
    text: &str,
    nameservers: &[&str],
    searches: &[&str],
    ndots: Option<u8>,
) -> Option<String> {
    let conf = minikind_resolv_conf::ResolvConf::parse(text);
    let have_ns = conf.nameserver_texts();
    let have_search = conf.search();
    let mut missing = Vec::new();
    for n in nameservers {
        if !have_ns.contains(n) {
            missing.push(format!("nameserver {n}"));
        }
    }
    for s in searches {
        if !have_search.iter().any(|h| h == s) {
            missing.push(format!("search {s}"));
        }
    }
    if let Some(n) = ndots
        && conf.ndots() != n
    {
        missing.push(format!("options ndots:{n} (it has ndots:{})", conf.ndots()));
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "the pod's /etc/resolv.conf lacks {}",
        missing.join(", ")
    ))
}

/// Fails when `text` (a command's output) is not `want` once trimmed.
pub fn output_is(text: &str, want: &str) -> Option<String> {
    (text.trim() != want).then(|| format!("expected {want:?}, got {:?}", text.trim()))
}

/// Fails when `text` (a command's output) is `unwanted` once trimmed.
pub fn output_is_not(text: &str, unwanted: &str) -> Option<String> {
    (text.trim() == unwanted).then(|| format!("expected anything but {unwanted:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context whose client is never used (nothing here talks to an API server).
    fn ctx() -> Ctx {
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        Ctx {
            target: Target {
                client: kube::Client::try_from(config).unwrap(),
                label: "unit".into(),
                nodes: None,
            },
            images: vec!["glibc:1".into(), "musl:1".into()],
            coredns_image: "coredns".into(),
            external: ["a.test".into(), "b.test".into()],
            domain: "cluster.local".into(),
            timeout: Duration::from_secs(5),
            run: "abc123".into(),
        }
    }

    #[tokio::test]
    async fn each_lookup_is_asked_from_every_prober() {
        let ctx = ctx();
        let mut s = Session {
            ctx: &ctx,
            test: "[sig-network] DNS unit",
            ns: "dns-1-abc123".into(),
            queued: Vec::new(),
            outcomes: Vec::new(),
            next: 0,
        };
        let q = Running {
            name: "dns-test-x".into(),
            ip: "10.244.1.5".parse().unwrap(),
            containers: objects::container_names(&ctx.images),
        };
        s.dig(
            &q,
            "kubernetes.default",
            "A",
            true,
            Some(&["10.96.0.1".into()]),
        )
        .unwrap();
        s.getent(&q, "dns-querier-1", &["10.244.1.5".into()])
            .unwrap();
        assert_eq!(s.queued.len(), 4);
        let dig = &s.queued[1];
        assert_eq!(
            (dig.index, dig.via, dig.protocol),
            (1, Via::Dig, Protocol::Both)
        );
        assert!(dig.search);
        assert_eq!(dig.timeout, Duration::from_secs(5));
        assert_eq!(
            dig.from,
            Source::Pod {
                namespace: "dns-1-abc123".into(),
                pod: "dns-test-x".into(),
                container: Some("musl".into()),
            }
        );
        assert_eq!(
            dig.expect.answers.as_deref(),
            Some(&[Answer::expected("A", "10.96.0.1").unwrap()][..])
        );
        let getent = &s.queued[2];
        assert_eq!((getent.via, getent.runs()), (Via::Getent, vec![None]));
        // A wrong expected answer is an error, not a check that can never pass.
        assert!(
            s.dig(&q, "x", "A", false, Some(&["not-an-ip".into()]))
                .is_err()
        );
        assert_eq!(s.fqdn("svc"), "svc.dns-1-abc123.svc.cluster.local");
    }

    #[test]
    fn a_pods_a_record_is_its_dashed_address() {
        let r = Running {
            name: "dns-test-x".into(),
            ip: "10.244.1.5".parse().unwrap(),
            containers: vec!["tools".into()],
        };
        assert_eq!(
            r.a_record("dns-1-abc", "cluster.local"),
            "10-244-1-5.dns-1-abc.pod.cluster.local"
        );
    }

    #[test]
    fn resolv_conf_checks_name_what_is_missing() {
        let text = "nameserver 203.0.113.53\nsearch resolv.conf.local\noptions ndots:2\n";
        assert_eq!(
            resolv_conf_lacks(text, &["203.0.113.53"], &["resolv.conf.local"], Some(2)),
            None
        );
        let why = resolv_conf_lacks(text, &["192.0.2.1"], &["x.test"], Some(5)).unwrap();
        assert!(why.contains("nameserver 192.0.2.1"), "{why}");
        assert!(why.contains("search x.test"), "{why}");
        assert!(why.contains("ndots:5 (it has ndots:2)"), "{why}");
        assert_eq!(output_is("dns-querier-1\n", "dns-querier-1"), None);
        assert!(output_is_not("dns-querier-1\n", "dns-querier-1").is_some());
    }
}

//! The checks file of `minikind dns test -f FILE`: its schema (strict: an unknown field is an
//! error naming the check and the field, with the YAML path serde_yaml reports), the defaults,
//! and the limits that keep a file from asking for unbounded work.

use std::time::Duration;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::answers::Answer;

/// Largest checks file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most checks in one file.
pub const MAX_CHECKS: usize = 500;
/// Most expected answers of one check.
pub const MAX_ANSWERS: usize = 100;
/// Longest a check may keep retrying.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a check keeps retrying when neither it nor `--timeout` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The namespace of the probe pod a check without `from` runs in.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCheck {
    name: String,
    #[serde(rename = "type")]
    rtype: Option<String>,
    expect: Option<RawExpect>,
    from: Option<RawFrom>,
    protocol: Option<Protocol>,
    timeout: Option<String>,
    /// dig's `+search`: walk the pod's search list as a stub resolver would.
    #[serde(default)]
    search: bool,
    /// Which tool asks: `dig` (the default) or `getent` (the C library's resolver).
    via: Option<Via>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExpect {
    answers: Option<Vec<String>>,
    rcode: Option<String>,
    within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFrom {
    namespace: Option<String>,
    pod: Option<String>,
    container: Option<String>,
    image: Option<String>,
    dns_policy: Option<DnsPolicy>,
    dns_config: Option<DnsConfig>,
    node_name: Option<String>,
}

/// Which transports a check asks over; `both` makes two results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Udp,
    Tcp,
    Both,
}

/// One transport a result is for: the pod tools' own (serialised lower case).
pub use minikind_pod_tools::transport::Transport;

impl Protocol {
    pub fn transports(self) -> &'static [Transport] {
        match self {
            Protocol::Udp => &[Transport::Udp],
            Protocol::Tcp => &[Transport::Tcp],
            Protocol::Both => &[Transport::Udp, Transport::Tcp],
        }
    }
}

/// The tool a check asks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// `dig`: one DNS query to the pod's nameserver, over the check's transports.
    #[default]
    Dig,
    /// `getent hosts`: the pod's C library resolver — /etc/hosts, then DNS through its
    /// search list — as applications see names; its transport is the library's own choice.
    Getent,
}

impl Via {
    /// The tool's name, as results show it.
    pub fn name(self) -> &'static str {
        match self {
            Via::Dig => "dig",
            Via::Getent => "getent",
        }
    }
}

/// A pod's `dnsPolicy` (Kubernetes' four values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum DnsPolicy {
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

impl DnsPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsPolicy::ClusterFirst => "ClusterFirst",
            DnsPolicy::ClusterFirstWithHostNet => "ClusterFirstWithHostNet",
            DnsPolicy::Default => "Default",
            DnsPolicy::None => "None",
        }
    }
}

/// A pod's `dnsConfig`, as the Pod API spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub searches: Vec<String>,
    #[serde(default)]
    pub options: Vec<DnsOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

/// A fresh pod the command makes to ask from (one per distinct spec, shared by its checks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProbeSpec {
    pub namespace: String,
    pub image: String,
    pub dns_policy: Option<DnsPolicy>,
    pub dns_config: Option<DnsConfig>,
    pub node_name: Option<String>,
}

/// Where a check asks from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pod that already runs.
    Pod {
        namespace: String,
        pod: String,
        container: Option<String>,
    },
    Probe(ProbeSpec),
}

/// What a check expects. Without `answers` and `rcode` a check expects the name to resolve:
/// NOERROR with at least one answer of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The answer data, compared as a set (order and duplicates do not matter).
    pub answers: Option<Vec<Answer>>,
    /// The code as dig names it; NOERROR when not given.
    pub rcode: Option<String>,
    /// The expectation must hold within this long of the check's start.
    pub within: Option<Duration>,
}

/// One check of the file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub index: usize,
    pub name: String,
    /// The record type as dig spells it.
    pub rtype: String,
    pub expect: Expect,
    pub from: Source,
    pub protocol: Protocol,
    /// How long the check keeps retrying (`within`, when it is shorter).
    pub timeout: Duration,
    pub search: bool,
    pub via: Via,
}

impl Check {
    /// The runs the check makes: one per transport for dig, one for getent (whose transport
    /// is not the check's to choose: `None`).
    pub fn runs(&self) -> Vec<Option<Transport>> {
        match self.via {
            Via::Dig => self
                .protocol
                .transports()
                .iter()
                .copied()
                .map(Some)
                .collect(),
            Via::Getent => vec![None],
        }
    }

    /// When the check gives up: its `within`, else its timeout.
    pub fn deadline(&self) -> Duration {
        self.expect
            .within
            .map_or(self.timeout, |w| w.min(self.timeout))
    }
}

/// The checks of a file. `source` (its path) goes into errors; `default_timeout` is the
/// timeout of checks that give none; `probe_image` the image of the default probe pod.
pub fn parse(
    text: &str,
    source: &str,
    default_timeout: Duration,
    probe_image: &str,
) -> Result<Vec<Check>> {
    if text.len() as u64 > MAX_FILE_BYTES {
        bail!("{source}: larger than {MAX_FILE_BYTES} bytes");
    }
    let raw: RawFile = serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    if raw.checks.is_empty() {
        bail!("{source}: `checks` is empty: nothing to test");
    }
    if raw.checks.len() > MAX_CHECKS {
        bail!(
            "{source}: {} checks, more than the {MAX_CHECKS} one file may hold",
            raw.checks.len()
        );
    }
    raw.checks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            check(i, c, default_timeout, probe_image)
                .map_err(|(field, msg)| anyhow::anyhow!("{source}: checks[{i}].{field}: {msg}"))
        })
        .collect()
}

type FieldError = (&'static str, String);

fn duration(field: &'static str, text: &str) -> Result<Duration, FieldError> {
    let d = humantime::parse_duration(text).map_err(|e| {
        (
            field,
            format!("{text:?} is not a duration like 5s or 1m ({e})"),
        )
    })?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err((
            field,
            format!(
                "{text:?} is not between 0 and {}",
                humantime::format_duration(MAX_TIMEOUT)
            ),
        ));
    }
    Ok(d)
}

/// The rcode as dig prints it (`NOERROR`, `NXDOMAIN`, …), from the one table of names.
fn rcode(text: &str) -> Option<String> {
    (0..4096u16)
        .map(minikind_dns_log::rcode_name)
        .filter(|n| matches!(n, std::borrow::Cow::Borrowed(_)))
        .find(|n| n.eq_ignore_ascii_case(text))
        .map(|n| n.to_string())
}

fn check(
    index: usize,
    raw: RawCheck,
    default_timeout: Duration,
    probe_image: &str,
) -> Result<Check, FieldError> {
    minikind_pod_tools::client::parse_name(&raw.name)
        .map_err(|e| ("name", format!("{:?}: {e}", raw.name)))?;
    let rtype = match raw.rtype.as_deref() {
        None => "A".to_string(),
        Some(t) => minikind_pod_tools::present::parse_record_type(t)
            .map(|t| t.to_string())
            .ok_or_else(|| {
                (
                    "type",
                    format!("{t:?} is not a DNS record type (A, AAAA, SRV, PTR, TXT, …)"),
                )
            })?,
    };
    let timeout = match &raw.timeout {
        Some(t) => duration("timeout", t)?,
        None => default_timeout,
    };
    let raw_expect = raw.expect.unwrap_or(RawExpect {
        answers: None,
        rcode: None,
        within: None,
    });
    let answers = match raw_expect.answers {
        None => None,
        Some(list) if list.len() > MAX_ANSWERS => {
            return Err((
                "expect.answers",
                format!("{} answers, more than {MAX_ANSWERS}", list.len()),
            ));
        }
        Some(list) => Some(
            list.iter()
                .map(|a| Answer::expected(&rtype, a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("expect.answers", e))?,
        ),
    };
    let rcode = match raw_expect.rcode {
        None => None,
        Some(r) => Some(rcode(&r).ok_or_else(|| {
            (
                "expect.rcode",
                format!("{r:?} is not a DNS response code (NOERROR, NXDOMAIN, SERVFAIL, …)"),
            )
        })?),
    };
    let within = match &raw_expect.within {
        Some(w) => Some(duration("expect.within", w)?),
        None => None,
    };
    let via = raw.via.unwrap_or_default();
    if via == Via::Getent {
        if raw.protocol.is_some() {
            return Err((
                "protocol",
                "getent asks as the C library chooses; `protocol` is for dig".into(),
            ));
        }
        if raw.search {
            return Err((
                "search",
                "getent always walks the search list; `search` is for dig".into(),
            ));
        }
        if rtype != "A" && rtype != "AAAA" {
            return Err((
                "type",
                format!("getent hosts gives addresses: A or AAAA, not {rtype}"),
            ));
        }
    }
    let from = source(raw.from, probe_image)?;
    Ok(Check {
        index,
        name: raw.name,
        rtype,
        expect: Expect {
            answers,
            rcode,
            within,
        },
        from,
        protocol: raw.protocol.unwrap_or_default(),
        timeout,
        search: raw.search,
        via,
    })
}

fn source(raw: Option<RawFrom>, probe_image: &str) -> Result<Source, FieldError> {
    let Some(raw) = raw else {
        return Ok(Source::Probe(ProbeSpec {
            namespace: DEFAULT_NAMESPACE.to_string(),
            image: probe_image.to_string(),
            dns_policy: None,
            dns_config: None,
            node_name: None,
        }));
    };
    let namespace = raw
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    if let Some(pod) = raw.pod {
        let probe_fields = [
            ("image", raw.image.is_some()),
            ("dnsPolicy", raw.dns_policy.is_some()),
            ("dnsConfig", raw.dns_config.is_some()),
            ("nodeName", raw.node_name.is_some()),
        ];
        if let Some((field, _)) = probe_fields.iter().find(|(_, set)| *set) {
            return Err((
                "from",
                format!(
                    "`pod` names an existing pod; `{field}` is for a fresh probe pod: give one \
                     or the other"
                ),
            ));
        }
        return Ok(Source::Pod {
            namespace,
            pod,
            container: raw.container,
        });
    }
    if raw.container.is_some() {
        return Err((
            "from.container",
            "only with `pod` (a probe pod has one container)".into(),
        ));
    }
    if raw.dns_policy == Some(DnsPolicy::None)
        && raw
            .dns_config
            .as_ref()
            .is_none_or(|c| c.nameservers.is_empty())
    {
        return Err((
            "from.dnsConfig",
            "dnsPolicy None needs dnsConfig.nameservers (the pod would have no resolver)".into(),
        ));
    }
    Ok(Source::Probe(ProbeSpec {
        namespace,
        image: raw.image.unwrap_or_else(|| probe_image.to_string()),
        dns_policy: raw.dns_policy,
        dns_config: raw.dns_config,
        node_name: raw.node_name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "tools";

    fn parse_ok(text: &str) -> Vec<Check> {
        parse(text, "checks.yaml", DEFAULT_TIMEOUT, IMAGE).unwrap()
    }

    fn parse_err(text: &str) -> String {
        format!(
            "{:#}",
            parse(text, "checks.yaml", DEFAULT_TIMEOUT, IMAGE).unwrap_err()
        )
    }

    #[test]
    fn getent_checks_run_once_and_refuse_dig_fields() {
        let c = parse(
            "checks:\n- name: dns-querier-1\n  via: getent\n",
            "f",
            DEFAULT_TIMEOUT,
            "tools",
        )
        .unwrap();
        assert_eq!((c[0].via, c[0].runs()), (Via::Getent, vec![None]));
        for (extra, field) in [
            ("  protocol: tcp\n", "protocol"),
            ("  search: true\n", "search"),
            ("  type: SRV\n", "type"),
        ] {
            let text = format!("checks:\n- name: a.test\n  via: getent\n{extra}");
            let e = parse(&text, "f", DEFAULT_TIMEOUT, "tools")
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("checks[0].{field}")), "{e}");
        }
    }

    #[test]
    fn the_issue_form_parses_with_its_defaults() {
        let checks = parse_ok(
            "checks:\n\
             - name: kubernetes.default.svc.cluster.local\n  type: A\n  expect: {answers: [10.96.0.1]}\n\
             - name: www.example.test\n  expect: {rcode: NOERROR}\n",
        );
        assert_eq!(checks.len(), 2);
        let probe = Source::Probe(ProbeSpec {
            namespace: "default".into(),
            image: IMAGE.into(),
            dns_policy: None,
            dns_config: None,
            node_name: None,
        });
        assert_eq!(checks[0].name, "kubernetes.default.svc.cluster.local");
        assert_eq!(checks[0].rtype, "A");
        assert_eq!(
            checks[0].expect.answers,
            Some(vec![Answer::expected("A", "10.96.0.1").unwrap()])
        );
        assert_eq!(checks[0].expect.rcode, None);
        assert_eq!(checks[0].from, probe);
        assert_eq!(checks[0].protocol, Protocol::Udp);
        assert_eq!(checks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(checks[1].rtype, "A");
        assert_eq!(checks[1].expect.rcode.as_deref(), Some("NOERROR"));
        assert_eq!(checks[1].expect.answers, None);
        assert_eq!(checks[1].from, probe);
        assert_eq!(checks[1].index, 1);
    }

    #[test]
    fn every_field_parses() {
        let checks = parse_ok(
            "checks:\n\
             - name: svc.other\n  type: aaaa\n  protocol: both\n  timeout: 1m\n  search: true\n\
             \x20 expect: {rcode: nxdomain, within: 5s}\n\
             \x20 from: {namespace: other, image: busybox, dnsPolicy: None, nodeName: n1,\n\
             \x20   dnsConfig: {nameservers: [10.96.0.10], searches: [a.test], options: [{name: ndots, value: '2'}]}}\n\
             - name: x.test\n  from: {namespace: team, pod: web, container: app}\n",
        );
        let c = &checks[0];
        assert_eq!(c.rtype, "AAAA");
        assert_eq!(c.protocol.transports(), [Transport::Udp, Transport::Tcp]);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert!(c.search);
        assert_eq!(c.expect.rcode.as_deref(), Some("NXDOMAIN"));
        assert_eq!(c.expect.within, Some(Duration::from_secs(5)));
        assert_eq!(c.deadline(), Duration::from_secs(5));
        let Source::Probe(p) = &c.from else {
            panic!("{:?}", c.from)
        };
        assert_eq!(
            (p.namespace.as_str(), p.image.as_str(), p.dns_policy),
            ("other", "busybox", Some(DnsPolicy::None))
        );
        assert_eq!(p.node_name.as_deref(), Some("n1"));
        let conf = p.dns_config.as_ref().unwrap();
        assert_eq!(conf.nameservers, ["10.96.0.10"]);
        assert_eq!(conf.options[0].value.as_deref(), Some("2"));
        assert_eq!(
            checks[1].from,
            Source::Pod {
                namespace: "team".into(),
                pod: "web".into(),
                container: Some("app".into())
            }
        );
    }

    #[test]
    fn unknown_fields_name_the_check_and_the_field() {
        let e =
            parse_err("checks:\n- name: a.test\n- name: b.test\n  expect: {answer: [192.0.2.1]}\n");
        assert!(
            e.contains("checks.yaml") && e.contains("checks[1].expect") && e.contains("`answer`"),
            "{e}"
        );
        let e = parse_err("checks:\n- name: a.test\n  tyep: A\n");
        assert!(e.contains("checks[0]") && e.contains("`tyep`"), "{e}");
        let e =
            parse_err("checks:\n- name: a.test\n  from: {pod: p, dnsConfig: {nameserver: []}}\n");
        assert!(
            e.contains("checks[0].from.dnsConfig") && e.contains("`nameserver`"),
            "{e}"
        );
        let e = parse_err("check:\n- name: a.test\n");
        assert!(e.contains("`check`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_check_and_the_field() {
        let e = parse_err("checks:\n- name: a.test\n- name: b.test\n  type: BOGUS\n");
        assert!(
            e.contains("checks[1].type") && e.contains("\"BOGUS\" is not a DNS record type"),
            "{e}"
        );
        let e = parse_err("checks:\n- name: a.test\n  expect: {rcode: NOPE}\n");
        assert!(
            e.contains("checks[0].expect.rcode") && e.contains("\"NOPE\""),
            "{e}"
        );
        let e = parse_err("checks:\n- name: a.test\n  expect: {answers: [not-an-ip]}\n");
        assert!(e.contains("checks[0].expect.answers"), "{e}");
        let e = parse_err("checks:\n- name: a.test\n  protocol: sctp\n");
        assert!(
            e.contains("checks[0].protocol") && e.contains("sctp"),
            "{e}"
        );
        let e = parse_err("checks:\n- name: a.test\n  timeout: soon\n");
        assert!(e.contains("checks[0].timeout"), "{e}");
        let e = parse_err("checks:\n- name: a.test\n  expect: {within: 0s}\n");
        assert!(e.contains("checks[0].expect.within"), "{e}");
        let e = parse_err("checks:\n- name: a.test\n  from: {pod: p, image: busybox}\n");
        assert!(e.contains("checks[0].from") && e.contains("`image`"), "{e}");
        let e = parse_err("checks:\n- name: a.test\n  from: {dnsPolicy: None}\n");
        assert!(e.contains("checks[0].from.dnsConfig"), "{e}");
        let e = parse_err("checks:\n- name: a..test\n");
        assert!(e.contains("checks[0].name"), "{e}");
        let e = parse_err("checks: []\n");
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn limits_bound_the_input() {
        let many: String = std::iter::once("checks:\n".to_string())
            .chain((0..=MAX_CHECKS).map(|i| format!("- name: n{i}.test\n")))
            .collect();
        let e = parse_err(&many);
        assert!(e.contains(&format!("more than the {MAX_CHECKS}")), "{e}");
        let big = format!(
            "checks:\n- name: a.test\n# {}\n",
            "x".repeat(MAX_FILE_BYTES as usize)
        );
        assert!(parse_err(&big).contains("larger than"));
        let answers: Vec<String> = (0..=MAX_ANSWERS)
            .map(|i| format!("192.0.2.{}", i % 250))
            .collect();
        let e = parse_err(&format!(
            "checks:\n- name: a.test\n  expect: {{answers: [{}]}}\n",
            answers.join(", ")
        ));
        assert!(e.contains("more than 100"), "{e}");
        let e = parse_err("checks:\n- name: a.test\n  timeout: 1h\n");
        assert!(e.contains("checks[0].timeout"), "{e}");
    }
}

//! The tests of kubernetes/kubernetes `test/e2e/network/dns.go` (the `DNS` and `DNS HostNetwork`
//! describes), each under its upstream name, each doing what its upstream body does: the same
//! objects, then the lookups of `createProbeCommand` (dns_common.go) — every name with dig over
//! UDP and TCP through the search list, `/etc/hosts` entries with `getent hosts`, the querier's
//! own A record in the `pods` zone, the PTR of a service address — or of
//! `createTargetedProbeCommand` (one name, one type). Where upstream only asks for a non-empty
//! answer and the right one is known (a ClusterIP, a pod's address), the answer is compared.
//!
//! Hermetic: the external names (upstream's google.com, foo.example.com, bar.example.com) are
//! the run's `--external-names`, by default names of the lab upstream's zone; the nameserver
//! written into a `dnsPolicy: None` pod is a documentation address nothing is sent to.
//!
//! Left out: "should work with a service name that starts with a digit" (behind the
//! RelaxedServiceNameValidation feature gate upstream).

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::objects::{self, QUERIER_HOSTNAME, Querier, SELECTOR, TEST_SERVICE};
use super::session::{Running, Session, output_is, output_is_not, resolv_conf_lacks};

/// One upstream test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Cluster,
    ClusterExternal,
    PartialClusterNames,
    EtcHosts,
    Services,
    PartialServiceNames,
    PodHostname,
    PodSubdomain,
    ExternalName,
    PodNameservers,
    PodResolvConf,
    ManySearchPaths,
    UnderscoreAndDotSearch,
    HostNetworkPartialNames,
    HostnameUsed,
    HostnameIgnoredOnHostNetwork,
}

/// Every test, in upstream's order.
pub const ALL: &[Test] = &[
    Test::Cluster,
    Test::ClusterExternal,
    Test::PartialClusterNames,
    Test::EtcHosts,
    Test::Services,
    Test::PartialServiceNames,
    Test::PodHostname,
    Test::PodSubdomain,
    Test::ExternalName,
    Test::PodNameservers,
    Test::PodResolvConf,
    Test::ManySearchPaths,
    Test::UnderscoreAndDotSearch,
    Test::HostNetworkPartialNames,
    Test::HostnameUsed,
    Test::HostnameIgnoredOnHostNetwork,
];

impl Test {
    /// The upstream test's full name, as the e2e suite reports it.
    pub fn name(self) -> &'static str {
        match self {
            Test::Cluster => "[sig-network] DNS should provide DNS for the cluster [Conformance]",
            Test::ClusterExternal => {
                "[sig-network] DNS should provide DNS for the cluster [Provider:GCE]"
            }
            Test::PartialClusterNames => {
                "[sig-network] DNS should resolve DNS of partial qualified names for the cluster \
                 [LinuxOnly]"
            }
            Test::EtcHosts => {
                "[sig-network] DNS should provide /etc/hosts entries for the cluster [Conformance]"
            }
            Test::Services => "[sig-network] DNS should provide DNS for services [Conformance]",
            Test::PartialServiceNames => {
                "[sig-network] DNS should resolve DNS of partial qualified names for services \
                 [LinuxOnly] [Conformance]"
            }
            Test::PodHostname => {
                "[sig-network] DNS should provide DNS for pods for Hostname [Conformance]"
            }
            Test::PodSubdomain => {
                "[sig-network] DNS should provide DNS for pods for Subdomain [Conformance]"
            }
            Test::ExternalName => {
                "[sig-network] DNS should provide DNS for ExternalName services [Conformance]"
            }
            Test::PodNameservers => {
                "[sig-network] DNS should support configurable pod DNS nameservers [Conformance]"
            }
            Test::PodResolvConf => "[sig-network] DNS should support configurable pod resolv.conf",
            Test::ManySearchPaths => {
                "[sig-network] DNS should work with the pod containing more than 6 DNS search \
                 paths and longer than 256 search list characters"
            }
            Test::UnderscoreAndDotSearch => {
                "[sig-network] DNS should work with a search path containing an underscore and a \
                 search path with a single dot"
            }
            Test::HostNetworkPartialNames => {
                "[sig-network] DNS HostNetwork should resolve DNS of partial qualified names for \
                 services on hostNetwork pods with dnsPolicy: ClusterFirstWithHostNet [LinuxOnly]"
            }
            Test::HostnameUsed => {
                "[sig-network] DNS HostNetwork spec.Hostname field is not silently ignored and is \
                 used for hostname for a Pod"
            }
            Test::HostnameIgnoredOnHostNetwork => {
                "[sig-network] DNS HostNetwork spec.Hostname field is silently ignored and the \
                 node hostname is used when hostNetwork is set to true for a Pod"
            }
        }
    }

    /// Runs the test in its session; the lookups' outcomes stay in the session.
    pub async fn run(self, s: &mut Session<'_>) -> Result<()> {
        match self {
            Test::Cluster => cluster(s).await,
            Test::ClusterExternal => cluster_external(s).await,
            Test::PartialClusterNames => partial_cluster_names(s).await,
            Test::EtcHosts => etc_hosts(s).await,
            Test::Services => services(s, false).await,
            Test::PartialServiceNames => services(s, true).await,
            Test::PodHostname => pod_hostname(s, false).await,
            Test::PodSubdomain => pod_hostname(s, true).await,
            Test::ExternalName => external_name(s).await,
            Test::PodNameservers => pod_nameservers(s).await,
            Test::PodResolvConf => pod_resolv_conf(s).await,
            Test::ManySearchPaths => {
                // Six 38-digit labels under k8s.io: more than 6 paths, over 256 characters.
                let searches: Vec<String> = (1..=6).map(|i| format!("{i:038}.k8s.io")).collect();
                expanded_search(
                    s,
                    json!({"searches": searches, "options": [{"name": "ndots", "value": "5"}]}),
                )
                .await
            }
            Test::UnderscoreAndDotSearch => {
                expanded_search(s, json!({"searches": [".", "_sip._tcp.abc_d.example.com"]})).await
            }
            Test::HostNetworkPartialNames => host_network_partial_names(s).await,
            Test::HostnameUsed => hostname(s, false).await,
            Test::HostnameIgnoredOnHostNetwork => hostname(s, true).await,
        }
    }
}

/// The address list of one expected answer.
fn one(answer: impl ToString) -> Vec<String> {
    vec![answer.to_string()]
}

/// The querier's `/etc/hosts` names (upstream's `hostEntries`): its FQDN under its subdomain
/// and its bare hostname, both its own address.
fn host_entries(s: &mut Session<'_>, q: &Running, hostname: &str, subdomain: &str) -> Result<()> {
    let fqdn = format!("{hostname}.{}", s.fqdn(subdomain));
    s.getent(q, &fqdn, &one(q.ip))?;
    s.getent(q, hostname, &one(q.ip))
}

/// The querier's own A record, which every `createProbeCommand` probe asks.
fn own_a_record(s: &mut Session<'_>, q: &Running) -> Result<()> {
    let name = q.a_record(&s.ns, &s.ctx.domain);
    s.dig(q, &name, "A", true, Some(&one(q.ip)))
}

async fn cluster(s: &mut Session<'_>) -> Result<()> {
    let kubernetes = s.kubernetes_ip().await?;
    let q = s.querier(&Querier::default()).await?;
    let name = format!("kubernetes.default.svc.{}", s.ctx.domain);
    s.dig(&q, &name, "A", true, Some(&one(&kubernetes)))?;
    own_a_record(s, &q)?;
    s.flush().await
}

/// Upstream resolves google.com (and the GCE metadata name); here the external names, so the
/// path out through the cluster's upstream is tested without leaving the machine.
async fn cluster_external(s: &mut Session<'_>) -> Result<()> {
    let q = s.querier(&Querier::default()).await?;
    for name in s.ctx.external.clone() {
        s.dig(&q, &name, "A", true, None)?;
    }
    own_a_record(s, &q)?;
    s.flush().await
}

/// `kubernetes.default` and `kubernetes.default.svc` through the search list.
fn kubernetes_partial_names(s: &mut Session<'_>, q: &Running, kubernetes: &str) -> Result<()> {
    for name in ["kubernetes.default", "kubernetes.default.svc"] {
        s.dig(q, name, "A", true, Some(&one(kubernetes)))?;
    }
    Ok(())
}

async fn partial_cluster_names(s: &mut Session<'_>) -> Result<()> {
    let kubernetes = s.kubernetes_ip().await?;
    let q = s.querier(&Querier::default()).await?;
    kubernetes_partial_names(s, &q, &kubernetes)?;
    host_entries(s, &q, QUERIER_HOSTNAME, TEST_SERVICE)?;
    own_a_record(s, &q)?;
    s.flush().await
}

async fn etc_hosts(s: &mut Session<'_>) -> Result<()> {
    let q = s.querier(&Querier::default()).await?;
    host_entries(s, &q, QUERIER_HOSTNAME, TEST_SERVICE)?;
    own_a_record(s, &q)?;
    s.flush().await
}

fn selector(key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_string(), "true".to_string())])
}

/// The headless `dns-test-service` and the regular `test-service-2`, both selecting the
/// querier; its ClusterIP.
async fn two_services(s: &Session<'_>) -> Result<String> {
    let sel = selector(SELECTOR.0);
    s.create(&objects::service(TEST_SERVICE, true, &sel)?)
        .await?;
    let regular = s
        .create(&objects::service("test-service-2", false, &sel)?)
        .await?;
    Session::cluster_ip(&regular)
}

/// The lookups of the services tests: the headless service's A (the querier's address: it is
/// the one endpoint), the SRV of both services' named port, the PTR of the ClusterIP.
fn service_lookups(
    s: &mut Session<'_>,
    q: &Running,
    regular_ip: &str,
    partial: bool,
) -> Result<()> {
    let ns = s.ns.clone();
    let domain = s.ctx.domain.clone();
    let regular_fqdn = s.fqdn("test-service-2");
    let suffix = |svc: &str| {
        if partial {
            format!("{svc}.{ns}.svc")
        } else {
            format!("{svc}.{ns}.svc.{domain}")
        }
    };
    if partial {
        for name in [
            TEST_SERVICE.to_string(),
            format!("{TEST_SERVICE}.{ns}"),
            suffix(TEST_SERVICE),
        ] {
            s.dig(q, &name, "A", true, Some(&one(q.ip)))?;
        }
    } else {
        s.dig(q, &suffix(TEST_SERVICE), "A", true, Some(&one(q.ip)))?;
    }
    s.dig(
        q,
        &format!("_http._tcp.{}", suffix(TEST_SERVICE)),
        "SRV",
        true,
        None,
    )?;
    s.dig(
        q,
        &format!("_http._tcp.{}", suffix("test-service-2")),
        "SRV",
        true,
        Some(&one(format!("0 100 80 {regular_fqdn}."))),
    )?;
    let ip: std::net::Ipv4Addr = regular_ip
        .parse()
        .map_err(|e| anyhow::anyhow!("ClusterIP {regular_ip}: {e}"))?;
    let [a, b, c, d] = ip.octets();
    s.dig(
        q,
        &format!("{d}.{c}.{b}.{a}.in-addr.arpa"),
        "PTR",
        true,
        Some(&one(format!("{regular_fqdn}."))),
    )?;
    own_a_record(s, q)
}

async fn services(s: &mut Session<'_>, partial: bool) -> Result<()> {
    let regular_ip = two_services(s).await?;
    let q = s
        .querier(&Querier {
            labels: selector(SELECTOR.0),
            ..Default::default()
        })
        .await?;
    service_lookups(s, &q, &regular_ip, partial)?;
    s.flush().await
}

/// A headless `dns-test-service-2` and a querier `dns-querier-2` in that subdomain: by
/// hostname its /etc/hosts entries, by subdomain its FQDN and the subdomain in DNS.
async fn pod_hostname(s: &mut Session<'_>, subdomain: bool) -> Result<()> {
    let (service, hostname) = ("dns-test-service-2", "dns-querier-2");
    let key = "dns-test-hostname-attribute";
    s.create(&objects::service(service, true, &selector(key))?)
        .await?;
    let q = s
        .querier(&Querier {
            hostname: Some(hostname.into()),
            subdomain: Some(service.into()),
            labels: selector(key),
            ..Default::default()
        })
        .await?;
    let fqdn = format!("{hostname}.{}", s.fqdn(service));
    if subdomain {
        s.dig(&q, &fqdn, "A", true, Some(&one(q.ip)))?;
        let sub = s.fqdn(service);
        s.dig(&q, &sub, "A", true, Some(&one(q.ip)))?;
    } else {
        host_entries(s, &q, hostname, service)?;
    }
    own_a_record(s, &q)?;
    s.flush().await
}

/// CNAME to the first external name; changed to the second; then a ClusterIP service whose A
/// is its address.
async fn external_name(s: &mut Session<'_>) -> Result<()> {
    let service = "dns-test-service-3";
    let [first, second] = s.ctx.external.clone();
    s.create(&objects::external_name_service(service, &first)?)
        .await?;
    let fqdn = s.fqdn(service);
    let q = s.querier(&Querier::default()).await?;
    s.dig(&q, &fqdn, "CNAME", false, Some(&one(format!("{first}."))))?;
    s.flush().await?;

    s.patch_service(service, json!({"spec": {"externalName": second}}))
        .await?;
    s.dig(&q, &fqdn, "CNAME", false, Some(&one(format!("{second}."))))?;
    s.flush().await?;

    let svc = s
        .patch_service(
            service,
            json!({"spec": {
                "type": "ClusterIP",
                "externalName": null,
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            }}),
        )
        .await?;
    let ip = Session::cluster_ip(&svc)?;
    s.dig(&q, &fqdn, "A", false, Some(&one(ip)))?;
    s.flush().await
}

/// What a `dnsPolicy: None` pod's dnsConfig names. The nameserver is a documentation address
/// (upstream writes 1.1.1.1): the test reads it back and sends nothing to it.
const NONE_NAMESERVER: &str = "203.0.113.53";
const NONE_SEARCH: &str = "resolv.conf.local";

async fn pod_nameservers(s: &mut Session<'_>) -> Result<()> {
    let q = s
        .querier(&Querier {
            dns_policy: Some("None"),
            dns_config: Some(json!({"nameservers": [NONE_NAMESERVER], "searches": [NONE_SEARCH]})),
            ..Default::default()
        })
        .await?;
    s.command(&q, &["cat", "/etc/resolv.conf"], |text| {
        resolv_conf_lacks(text, &[NONE_NAMESERVER], &[NONE_SEARCH], None)
    })
    .await;
    Ok(())
}

/// A DNS server pod of the test's own (a Corefile with one `hosts` name), a pod with
/// `dnsPolicy: None` naming it with a search path and ndots 2, and the short name found
/// through that search path at that server.
async fn pod_resolv_conf(s: &mut Session<'_>) -> Result<()> {
    let (short, injected) = ("notexistname", "192.0.2.123");
    let full = format!("{short}.{NONE_SEARCH}");
    let cm = s.create(&objects::coredns_config(&full, injected)?).await?;
    let cm_name = cm.metadata.name.unwrap_or_default();
    let server = s
        .start_pod(
            &objects::coredns_server(&s.ctx.coredns_image, &cm_name)?,
            &s.ctx.coredns_image,
        )
        .await?;
    let server_ip = server
        .status
        .and_then(|st| st.pod_ip)
        .ok_or_else(|| anyhow::anyhow!("the test DNS server pod runs without an IP"))?;
    let q = s
        .querier(&Querier {
            dns_policy: Some("None"),
            dns_config: Some(json!({
                "nameservers": [server_ip],
                "searches": [NONE_SEARCH],
                "options": [{"name": "ndots", "value": "2"}],
            })),
            ..Default::default()
        })
        .await?;
    s.command(&q, &["cat", "/etc/resolv.conf"], |text| {
        resolv_conf_lacks(text, &[&server_ip], &[NONE_SEARCH], Some(2))
    })
    .await;
    s.dig(&q, short, "A", true, Some(&one(injected)))?;
    s.flush().await
}

/// The partial-names probe from a querier whose dnsConfig adds search paths.
async fn expanded_search(s: &mut Session<'_>, dns_config: serde_json::Value) -> Result<()> {
    let kubernetes = s.kubernetes_ip().await?;
    let q = s
        .querier(&Querier {
            dns_policy: Some("ClusterFirst"),
            dns_config: Some(dns_config),
            ..Default::default()
        })
        .await?;
    kubernetes_partial_names(s, &q, &kubernetes)?;
    host_entries(s, &q, QUERIER_HOSTNAME, TEST_SERVICE)?;
    own_a_record(s, &q)?;
    s.flush().await
}

async fn host_network_partial_names(s: &mut Session<'_>) -> Result<()> {
    let regular_ip = two_services(s).await?;
    let q = s
        .querier(&Querier {
            labels: selector(SELECTOR.0),
            host_network: true,
            dns_policy: Some("ClusterFirstWithHostNet"),
            ..Default::default()
        })
        .await?;
    service_lookups(s, &q, &regular_ip, true)?;
    s.flush().await
}

/// The pod's hostname, as `hostname` prints it (the UTS name the kernel keeps).
async fn hostname(s: &mut Session<'_>, host_network: bool) -> Result<()> {
    let q = s
        .querier(&Querier {
            host_network,
            ..Default::default()
        })
        .await?;
    let argv = ["cat", "/proc/sys/kernel/hostname"];
    if host_network {
        s.command(&q, &argv, |t| output_is_not(t, QUERIER_HOSTNAME))
            .await;
    } else {
        s.command(&q, &argv, |t| output_is(t, QUERIER_HOSTNAME))
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_has_its_own_upstream_name() {
        let mut names: Vec<&str> = ALL.iter().map(|t| t.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("[sig-network] DNS ")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        // The six-path search list is longer than 256 characters, as upstream's.
        let searches: Vec<String> = (1..=6).map(|i| format!("{i:038}.k8s.io")).collect();
        assert!(
            searches.join(" ").len() > 256,
            "{}",
            searches.join(" ").len()
        );
    }
}

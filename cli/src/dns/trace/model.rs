//! What `minikind dns trace` found, as data (`-o json` prints it as is): the lookup, its
//! search-list attempts, and for each attempt the hops with the evidence each was read from.

use std::net::{IpAddr, SocketAddr};

use minikind_pod_tools::attempt::Attempt;
use serde::Serialize;

/// The whole trace of one lookup.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    pub cluster: String,
    pub pod: PodRef,
    /// The name as given and the type asked.
    pub name: String,
    pub rtype: String,
    /// The pod's own resolver configuration, read from its `/etc/resolv.conf`.
    pub resolv_conf: ResolvSummary,
    /// The command run in the pod.
    pub command: Vec<String>,
    pub attempts: Vec<TracedAttempt>,
    /// The answer records the pod got (the tool's lines), empty when nothing was found.
    pub answer: Vec<String>,
    /// What the lookup came to: the last reply's code, or why there was none.
    pub outcome: String,
    /// Things the trace could not read (a log it could not get, …); the hops say what is
    /// unknown because of them.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub ip: Option<IpAddr>,
    pub node: Option<String>,
}

impl PodRef {
    pub fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResolvSummary {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub ndots: u8,
}

/// One exchange of the lookup (a name asked to a server) and the path it took.
#[derive(Debug, Clone, Serialize)]
pub struct TracedAttempt {
    pub number: usize,
    #[serde(flatten)]
    pub attempt: Attempt,
    pub hops: Vec<Hop>,
}

/// One hop of an attempt's path; each kind carries its own evidence.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "hop", rename_all = "snake_case")]
pub enum Hop {
    /// NodeLocal DNSCache's NOTRACK rule on the client's node caught the query: the node's
    /// cache answers it before kube-proxy's DNAT.
    NodeLocal(NodeLocalHop),
    /// What the node's cache did with it (hit or miss), from its own counters.
    NodeCache(NodeCacheHop),
    /// The cache's forward of a miss: to kube-dns-upstream over TCP (cluster zones), or to the
    /// node's resolv.conf (`.`).
    NodeCacheForward(NodeCacheForwardHop),
    ServiceRule(ServiceRuleHop),
    Endpoint(EndpointHop),
    /// The replica behind the endpoint, known by its address alone (its log says nothing).
    Replica(ReplicaHop),
    ClusterDns(ClusterDnsHop),
    Forward(ForwardHop),
    EmbeddedResolver(EmbeddedHop),
    Upstream(UpstreamHop),
    /// The path ends here, or can't be followed further: where and why.
    Stop(StopHop),
}

/// The node-local cache's rule that caught the query.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeLocalHop {
    pub node: String,
    pub rule: String,
}

/// Whether node-cache answered from its cache, as its counters show.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CacheVerdict {
    Hit,
    Miss,
    /// The counters do not tell this attempt apart (see the evidence).
    Unknown,
}

/// The node-local cache's answer to the query.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeCacheHop {
    pub node: String,
    /// The cache pod, `kube-system/node-local-dns-…`.
    pub pod: String,
    /// The server block of the cache the name falls in (`cluster.local.`, `.`, …).
    pub zone: Option<String>,
    pub verdict: CacheVerdict,
    /// What shows it: the counters' changes during the lookup, a replica's log line.
    pub evidence: Vec<String>,
}

/// node-cache's forward of a cache miss.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeCacheForwardHop {
    pub node: String,
    /// The node's address (the cache has the node's network).
    pub from: Option<IpAddr>,
    pub to: SocketAddr,
    /// `tcp` or `udp`, from the cache's connection counters.
    pub proto: String,
    /// `pooled` (a kept connection was reused) or `dialled` (a new one), when the counters say.
    pub connection: Option<String>,
    /// Where kube-proxy's DNAT sent the connection, from the node's conntrack table: known
    /// when a replica's log names the connection's port, or when every pooled connection
    /// goes to the same endpoint.
    pub endpoint: Option<SocketAddr>,
    /// The conntrack lines of the connection(s) that may have carried the query.
    pub conntrack: Vec<String>,
    pub flows: usize,
    pub evidence: Vec<String>,
}

/// kube-proxy's `KUBE-SERVICES` rule on the client's node that caught the query.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceRuleHop {
    pub node: String,
    /// `<namespace>/<service>:<port name>` from the rule's comment.
    pub service: Option<String>,
    pub chain: String,
    pub rule: String,
}

/// The endpoint the service chain picked, and its DNAT.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EndpointHop {
    pub node: String,
    pub sep_chain: String,
    /// The `KUBE-SVC-…` rule that jumps to it (its `--probability`, if any, below).
    pub jump_rule: String,
    pub probability: Option<String>,
    pub dnat_rule: Option<String>,
    pub to: Option<SocketAddr>,
    /// How many endpoints the service chain had to choose from.
    pub of_endpoints: usize,
    /// How the pick is known: the replica behind this endpoint logged the query.
    pub evidence: String,
}

/// The pod behind the endpoint the DNAT chose, found by its address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplicaHop {
    pub pod: String,
    pub node: Option<String>,
    pub ip: IpAddr,
}

/// The cluster-dns (CoreDNS) replica that answered, from its query log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterDnsHop {
    pub pod: String,
    pub node: Option<String>,
    pub ip: IpAddr,
    pub rcode: String,
    pub flags: String,
    #[serde(rename = "duration_us", serialize_with = "micros")]
    pub duration: std::time::Duration,
    /// The query log line that proves it.
    pub log_line: String,
    /// `own_zone` (the name is in its `kubernetes` zones and nothing went further),
    /// `forwarded` (a matching query reached the next hop) or `not_forwarded` (nothing reached
    /// the next hop: answered from its cache, or the forward failed before leaving).
    pub answered: Answered,
    /// The `kubernetes` zone the name belongs to, if any.
    pub zone: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    OwnZone,
    Forwarded,
    NotForwarded,
}

/// cluster-dns's `forward` to the nameserver of its resolv.conf (the host IP the magic put
/// there), and Docker's rule on that replica's node that redirects it to 127.0.0.11.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ForwardHop {
    pub node: String,
    pub from: IpAddr,
    pub to: SocketAddr,
    pub prerouting_rule: String,
    pub dnat_rule: String,
    pub dnat_to: Option<SocketAddr>,
    /// The node's conntrack table: the flow(s) of this forward and where the DNAT sent them
    /// (`None`: no such flow in the table).
    pub conntrack: Option<ForwardFlow>,
}

/// What a node's conntrack table says about a forward to the embedded resolver.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ForwardFlow {
    /// The address the flow's replies came from: the DNAT's target, `127.0.0.11:<port>`.
    pub answered_by: SocketAddr,
    /// The flow's line; with `flows` > 1, the newest of them.
    pub line: String,
    /// How many flows from the same source address to the same server the table holds (one
    /// when the client port is known; a forwarder that reuses sockets has one per socket).
    pub flows: usize,
}

/// Which resolver serves 127.0.0.11 in the node.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddedMode {
    /// Docker's own, inside dockerd: it keeps no query log.
    Docker,
    /// minikind's dns-embedded (`dns.embedded: builtin`), logging to the node's log.
    Builtin,
}

/// The embedded resolver at 127.0.0.11 in the replica's node.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EmbeddedHop {
    pub node: String,
    pub listen: Option<SocketAddr>,
    pub mode: EmbeddedMode,
    /// From its query log (builtin mode only).
    pub rcode: Option<String>,
    #[serde(rename = "duration_us", serialize_with = "micros_opt")]
    pub duration: Option<std::time::Duration>,
    pub log_line: Option<String>,
    pub note: Option<String>,
}

/// The lab upstream container's answer, from its log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamHop {
    pub container: String,
    pub ip: Option<IpAddr>,
    pub client: SocketAddr,
    pub rcode: String,
    #[serde(rename = "duration_us", serialize_with = "micros")]
    pub duration: std::time::Duration,
    pub log_line: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StopHop {
    /// Where: a node, a pod, a container.
    pub at: String,
    pub reason: String,
}

fn micros<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn micros_opt<S: serde::Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => micros(d, s),
        None => s.serialize_none(),
    }
}

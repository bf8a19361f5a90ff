//! Putting one attempt's path together from the evidence read off the cluster. Pure: every
//! input is text already fetched (rules, logs, resolv.conf), so the assembly is tested on
//! recorded text. Nothing is inferred that the evidence does not show; where it runs out, a
//! [`Hop::Stop`] says what is missing.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use minikind_pod_tools::attempt::{Attempt, AttemptResult};

use super::conntrack::{self, Flow};
use super::model::{
    Answered, ClusterDnsHop, EmbeddedHop, EmbeddedMode, EndpointHop, ForwardFlow, ForwardHop, Hop,
    PodRef, ReplicaHop, ServiceRuleHop, StopHop, UpstreamHop,
};
use super::nodelocal::NodeCacheEvidence;
use super::querylog::{LoggedError, LoggedQuery};
use super::rules::{Endpoint, Ruleset};

/// How far apart (beyond a hop's own duration) two log collectors' times of one query may be.
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// A cluster-dns replica and what it logged.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    pub name: String,
    pub ip: Option<IpAddr>,
    pub node: Option<String>,
    pub queries: Vec<LoggedQuery>,
    /// Its `errors` lines (why a forward failed).
    pub errors: Vec<LoggedError>,
    /// Why its log could not be read, if it could not.
    pub log_error: Option<String>,
    /// The servers its `forward` sends to (its resolv.conf's nameservers, or the Corefile's).
    pub forward_to: Vec<IpAddr>,
    /// The zones of its `kubernetes` plugin (`cluster.local.`, `in-addr.arpa.`, …).
    pub zones: Vec<String>,
}

/// The zone of `zones` that `name` is in (label-wise, case-insensitive), if any.
pub fn zone_of<'a>(name: &str, zones: &'a [String]) -> Option<&'a str> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    zones
        .iter()
        .map(String::as_str)
        .filter(|z| {
            let z = z.trim_end_matches('.').to_ascii_lowercase();
            z.is_empty() || name == z || name.ends_with(&format!(".{z}"))
        })
        .max_by_key(|z| z.len())
}

/// What is known about a node container.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its address on the cluster network (what the upstream sees as the client).
    pub ip: Option<IpAddr>,
    pub rules: Option<Ruleset>,
    pub embedded: EmbeddedMode,
    /// Query lines of the node's own log (minikind's embedded resolver in builtin mode).
    pub queries: Vec<LoggedQuery>,
    /// Its connection-tracking table, read right after the lookup (empty: not read).
    pub conntrack: Vec<Flow>,
}

/// The lab upstream and what it logged.
#[derive(Debug, Clone)]
pub struct UpstreamInfo {
    pub container: String,
    pub ip: Option<IpAddr>,
    pub queries: Vec<LoggedQuery>,
}

/// Everything read from the cluster for one trace.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub client: PodRef,
    pub nodes: BTreeMap<String, NodeInfo>,
    pub replicas: Vec<Replica>,
    /// Whether the Corefile has `log` (None: it could not be read).
    pub corefile_logs: Option<bool>,
    pub upstream: Option<UpstreamInfo>,
    /// The node-local cache on the client's node, when one runs there.
    pub node_cache: Option<NodeCacheEvidence>,
    /// Every attempt of the lookup (the cache's counters are read per lookup, not per attempt).
    pub attempts: Vec<Attempt>,
    /// When the lookup ran (from just before the tool started to just after it ended).
    pub window: (SystemTime, SystemTime),
}

fn stop(at: impl Into<String>, reason: impl Into<String>) -> Hop {
    Hop::Stop(StopHop {
        at: at.into(),
        reason: reason.into(),
    })
}

/// A time span in which a logged query counts as "this one".
#[derive(Debug, Clone, Copy)]
struct Window {
    from: SystemTime,
    to: SystemTime,
    /// The preferred time (the closest line to it wins).
    around: Option<SystemTime>,
}

impl Window {
    /// The span of an upstream hop of `q`: it ran while `q` was being answered.
    fn during(q: &LoggedQuery, fallback: (SystemTime, SystemTime)) -> Window {
        match q.time {
            Some(t) => Window {
                from: t
                    .checked_sub(q.duration + CLOCK_SLACK)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                to: t + CLOCK_SLACK,
                around: Some(t),
            },
            None => Window::run(fallback),
        }
    }

    fn run((from, to): (SystemTime, SystemTime)) -> Window {
        Window {
            from: from.checked_sub(CLOCK_SLACK).unwrap_or(from),
            to: to + CLOCK_SLACK,
            around: None,
        }
    }

    /// The lookup's run for a line the lookup itself caused: no slack before its start. The
    /// lines' times are stamped on the cluster's hosts after the line was written, so such a
    /// line never precedes the lookup; a line from just before it (the same name asked a moment
    /// earlier, e.g. the miss that filled the cache this lookup hits) stays out. (With a remote
    /// engine whose clock runs behind this host's, a line may be missed; never a wrong one
    /// taken.)
    fn caused_by_run((from, to): (SystemTime, SystemTime)) -> Window {
        Window {
            from,
            to: to + CLOCK_SLACK,
            around: None,
        }
    }

    /// The best of `candidates` that fall in the window (all of them when a line carries no
    /// time): the closest to `around`, else the last.
    fn pick<'a>(
        &self,
        candidates: impl Iterator<Item = &'a LoggedQuery>,
    ) -> Option<&'a LoggedQuery> {
        let inside: Vec<&LoggedQuery> = candidates
            .filter(|q| q.time.is_none_or(|t| t >= self.from && t <= self.to))
            .collect();
        let distance = |q: &LoggedQuery| match (q.time, self.around) {
            (Some(t), Some(a)) => t.duration_since(a).unwrap_or_else(|e| e.duration()),
            _ => Duration::ZERO,
        };
        match self.around {
            Some(_) => inside.into_iter().min_by_key(|q| distance(q)),
            None => inside.into_iter().last(),
        }
    }
}

/// The replica whose log shows this exact exchange: same client address and port, same id,
/// same question.
fn replica_for<'a>(attempt: &Attempt, ev: &'a Evidence) -> Option<(&'a Replica, &'a LoggedQuery)> {
    let local = attempt.local?;
    ev.replicas.iter().find_map(|r| {
        r.queries
            .iter()
            .find(|q| {
                q.client == local && q.id == attempt.id && q.asks(&attempt.name, &attempt.rtype)
            })
            .map(|q| (r, q))
    })
}

/// The endpoint hop for `ep`, one of `of` endpoints of its service chain, with how the pick
/// is known.
fn endpoint_hop(node: &str, ep: &Endpoint, of: usize, evidence: String) -> Hop {
    Hop::Endpoint(EndpointHop {
        node: node.to_string(),
        sep_chain: ep.sep_chain.clone(),
        jump_rule: ep.jump.text.clone(),
        probability: ep.jump.probability().map(str::to_string),
        dnat_rule: ep.dnat.as_ref().map(|r| r.text.clone()),
        to: ep.to(),
        of_endpoints: of,
        evidence,
    })
}

/// The hops of one attempt.
pub fn assemble(attempt: &Attempt, ev: &Evidence) -> Vec<Hop> {
    let mut hops = Vec::new();
    let pod = ev.client.display();
    let Some(node) = ev.client.node.as_deref() else {
        return vec![stop(pod, "the pod is not scheduled on a node")];
    };
    let Some(rules) = ev.nodes.get(node).and_then(|n| n.rules.as_ref()) else {
        return vec![stop(node, "the node's iptables rules could not be read")];
    };
    let proto = attempt.transport.as_proto();
    let server = attempt.server;

    if let Some(r) = rules.node_local_rule(server, proto) {
        return nodelocal::assemble(attempt, ev, node, rules, r);
    }

    if let Some(svc) = rules.service_rule(server, proto) {
        let chain = svc.target().unwrap_or_default().to_string();
        hops.push(Hop::ServiceRule(ServiceRuleHop {
            node: node.to_string(),
            service: svc
                .comment()
                .map(|c| c.trim_end_matches(" cluster IP").to_string()),
            chain: chain.clone(),
            rule: svc.text.clone(),
        }));
        let endpoints = rules.endpoints(&chain);
        if endpoints.is_empty() {
            hops.push(stop(node, format!("{chain} has no endpoint rules")));
            return hops;
        }
        let Some((replica, logged)) = replica_for(attempt, ev) else {
            // No replica logged it: the node's conntrack table still names the endpoint.
            let flow = attempt.local.and_then(|local| {
                ev.nodes
                    .get(node)
                    .and_then(|n| n.conntrack.iter().find(|f| f.is(proto, local, server)))
            });
            let picked = flow.and_then(|f| {
                endpoints
                    .iter()
                    .find(|e| e.to() == Some(f.answered_by()))
                    .map(|e| (f, e))
            });
            let Some((flow, ep)) = picked else {
                hops.push(stop(
                    format!("{chain} on {node}"),
                    no_replica_reason(attempt, ev, endpoints.len()),
                ));
                return hops;
            };
            hops.push(endpoint_hop(
                node,
                ep,
                endpoints.len(),
                format!("the conntrack table of {node}: {}", flow.line),
            ));
            let to = flow.answered_by().ip();
            let behind = ev.replicas.iter().find(|r| r.ip == Some(to));
            match behind {
                Some(r) => {
                    hops.push(Hop::Replica(ReplicaHop {
                        pod: r.name.clone(),
                        node: r.node.clone(),
                        ip: to,
                    }));
                    if !unlogged_forward(&mut hops, attempt, r, to, ev) {
                        hops.push(stop(r.name.clone(), unlogged_reason(attempt, ev, &r.name)));
                    }
                }
                None => hops.push(stop(
                    to.to_string(),
                    format!("no pod of the cluster has the address {to} now"),
                )),
            }
            return hops;
        };
        if let Some(ep) = endpoints
            .iter()
            .find(|e| e.to().map(|a| a.ip()) == replica.ip)
        {
            hops.push(endpoint_hop(
                node,
                ep,
                endpoints.len(),
                format!(
                    "{} logged the query from {} with id {}",
                    replica.name, logged.client, logged.id
                ),
            ));
        }
        replica_hops(&mut hops, replica, logged, ev);
        return hops;
    }
    if let Some(reject) = rules.no_endpoints_rule(server, proto) {
        hops.push(stop(
            node,
            format!(
                "kube-proxy rejects the query: the service has no ready endpoints ({})",
                reject.text
            ),
        ));
        return hops;
    }
    // Not a service address: a nameserver reached through Docker's rules (dnsPolicy Default
    // gives a pod the node's resolv.conf, the host IP), or nothing at all.
    let docker = rules.docker_dns(server.ip(), proto);
    match (server.port(), docker.prerouting, docker.dnat) {
        (53, Some(prerouting), Some(dnat)) => {
            let Some(from) = ev.client.ip else {
                hops.push(stop(pod, "the pod has no IP"));
                return hops;
            };
            hops.push(Hop::Forward(ForwardHop {
                node: node.to_string(),
                from,
                to: server,
                prerouting_rule: prerouting.text.clone(),
                dnat_rule: dnat.text.clone(),
                dnat_to: dnat.dnat_to(),
                conntrack: forward_flow(
                    ev,
                    node,
                    proto,
                    from,
                    attempt.local.map(|l| l.port()),
                    server,
                ),
            }));
            let exact = |q: &&LoggedQuery| Some(q.client) == attempt.local;
            let window = Window::run(ev.window);
            let reply = match &attempt.result {
                AttemptResult::Reply { rcode, .. } => Some(rcode.as_str()),
                AttemptResult::Failed { .. } => None,
            };
            resolver_hops(
                &mut hops,
                node,
                from,
                (&attempt.name, &attempt.rtype),
                window,
                &exact,
                reply,
                ev,
                dnat.dnat_to(),
            );
        }
        _ => hops.push(stop(
            node,
            format!(
                "no rule on {node} sends {server}/{proto} anywhere: neither a kube-proxy \
                 service nor Docker's DNS rules catch it{}",
                docker_output_says(rules)
            ),
        )),
    }
    hops
}

/// Why no replica can be named for an attempt.
fn no_replica_reason(attempt: &Attempt, ev: &Evidence, endpoints: usize) -> String {
    let from = attempt
        .local
        .map_or_else(|| "an unknown port".to_string(), |l| l.to_string());
    let outcome = match &attempt.result {
        AttemptResult::Reply { rcode, .. } => format!("the reply ({rcode}) came"),
        AttemptResult::Failed { error } => format!("no reply came ({error})"),
    };
    if ev.corefile_logs == Some(false) {
        return format!(
            "{outcome}, but neither the node's conntrack table (the flow is gone: UDP flows \
             live 30 s) nor cluster-dns (no `log`: see the note) says which of the \
             {endpoints} endpoints was taken"
        );
    }
    let unreadable: Vec<String> = ev
        .replicas
        .iter()
        .filter_map(|r| r.log_error.as_ref().map(|e| format!("{}: {e}", r.name)))
        .collect();
    let names: Vec<&str> = ev.replicas.iter().map(|r| r.name.as_str()).collect();
    let mut reason = format!(
        "{outcome}; none of the cluster-dns replicas ({}) logged a query from {from} with id {}",
        names.join(", "),
        attempt.id
    );
    if !unreadable.is_empty() {
        reason.push_str(&format!(" (logs not readable: {})", unreadable.join("; ")));
    }
    reason
}

/// Why the path ends at a replica known only by its address.
fn unlogged_reason(attempt: &Attempt, ev: &Evidence, replica: &str) -> String {
    let what = match &attempt.result {
        AttemptResult::Reply { rcode, .. } => format!("it answered {rcode}"),
        AttemptResult::Failed { error } => format!("no reply came ({error})"),
    };
    match ev.corefile_logs {
        Some(false) => format!(
            "{what}; how (its cache, its own zone, a forward) only its `log` line would say, \
             and the Corefile has no `log` (see the note)"
        ),
        _ => format!("{what}; {replica} logged no matching query"),
    }
}

/// The note a trace carries once when cluster-dns does not log: what `log` adds and how it
/// is switched on without a restart.
pub const NO_LOG_NOTE: &str = "cluster-dns does not log queries (the Corefile in ConfigMap \
kube-system/coredns has no `log`): the endpoint each query was DNATed to and the forward's DNAT \
to the embedded resolver are read from the nodes' conntrack tables, but how a replica answered \
(its cache, its own zone) is not. Add `log` to the Corefile (e.g. \
examples/seed-001-coredns-scaling-and-ndots/coredns-log.yaml): the `reload` plugin picks the \
edit up by itself once the kubelet has updated the mounted ConfigMap (within a minute or two), \
no restart needed";

/// What DOCKER_OUTPUT does catch, to explain why it doesn't catch a query.
fn docker_output_says(rules: &Ruleset) -> String {
    let mut dests: Vec<&str> = rules
        .docker_output_dnats()
        .iter()
        .filter_map(|r| r.opt("-d"))
        .collect();
    dests.dedup();
    if dests.is_empty() {
        return String::new();
    }
    format!(
        ": DOCKER_OUTPUT only redirects queries to {}, an address only the node itself can reach",
        dests.join(", ")
    )
}

/// The replica's own `errors` line for this query, as `; cluster-dns logged: …`.
fn replica_error(replica: &Replica, q: &LoggedQuery, window: Window) -> String {
    replica
        .errors
        .iter()
        .rev()
        .find(|e| {
            e.name.eq_ignore_ascii_case(&q.name)
                && e.qtype.eq_ignore_ascii_case(&q.qtype)
                && e.time.is_none_or(|t| t >= window.from && t <= window.to)
        })
        .map(|e| format!(" (cluster-dns logged: {})", e.message))
        .unwrap_or_default()
}

/// The replica's hop and, for what it did not answer from its own zone, the forward path.
fn replica_hops(hops: &mut Vec<Hop>, replica: &Replica, q: &LoggedQuery, ev: &Evidence) {
    let Some(ip) = replica.ip else {
        return;
    };
    let zone = zone_of(&q.name, &replica.zones);
    let mut dns_hop = ClusterDnsHop {
        pod: replica.name.clone(),
        node: replica.node.clone(),
        ip,
        rcode: q.rcode.clone(),
        flags: q.flags.clone(),
        duration: q.duration,
        log_line: q.line.clone(),
        answered: Answered::NotForwarded,
        zone: zone.map(str::to_string),
    };
    let at = replica.name.clone();
    let Some(node) = replica.node.as_deref() else {
        hops.push(Hop::ClusterDns(dns_hop));
        hops.push(stop(at, "the replica's node is unknown"));
        return;
    };
    // Forwarded or not is read from the next hops' logs, not from the reply (an authoritative
    // upstream's AA bit comes back through `forward` unchanged).
    let window = Window::during(q, ev.window);
    let from_replica = |l: &&LoggedQuery| l.client.ip() == ip;
    let question = (q.name.as_str(), q.qtype.as_str());
    let seen_downstream = downstream(node, question, window, &from_replica, ev);
    dns_hop.answered = if seen_downstream.0.is_some() || seen_downstream.1.is_some() {
        Answered::Forwarded
    } else if zone.is_some() {
        Answered::OwnZone
    } else {
        Answered::NotForwarded
    };
    let own_zone = dns_hop.answered == Answered::OwnZone;
    hops.push(Hop::ClusterDns(dns_hop));
    if own_zone {
        return;
    }

    forward_path(
        hops,
        replica,
        (node, ip),
        question,
        q.proto.as_str(),
        window,
        &from_replica,
        Some(q.rcode.as_str()),
        &replica_error(replica, q, window),
        ev,
    );
}

/// The forward of a replica at `ip` on `node` to the first server it forwards to: Docker's
/// rules that redirect it to the embedded resolver, the node's conntrack flow that shows where
/// it went, then the embedded resolver and the upstream. `failed` is the replica's own word on
/// a failed forward, for the stop when nothing redirects it.
#[allow(clippy::too_many_arguments)]
fn forward_path(
    hops: &mut Vec<Hop>,
    replica: &Replica,
    (node, ip): (&str, IpAddr),
    question: (&str, &str),
    proto: &str,
    window: Window,
    from_replica: &dyn Fn(&&LoggedQuery) -> bool,
    rcode: Option<&str>,
    failed: &str,
    ev: &Evidence,
) {
    let at = replica.name.clone();
    let Some(&target) = replica.forward_to.first() else {
        hops.push(stop(
            at,
            "where the replica forwards is unknown (its resolv.conf could not be read)",
        ));
        return;
    };
    let Some(rules) = ev.nodes.get(node).and_then(|n| n.rules.as_ref()) else {
        hops.push(stop(node, "the node's iptables rules could not be read"));
        return;
    };
    let docker = rules.docker_dns(target, proto);
    let (Some(prerouting), Some(dnat)) = (docker.prerouting, docker.dnat) else {
        hops.push(stop(
            node,
            format!(
                "{} forwards to {target}:53, but no rule on {node} redirects it to the \
                 embedded resolver: there is no `-A PREROUTING -d {target}/32 -j DOCKER_OUTPUT` \
                 with its DNAT, the network magic is off{}; the forward reaches nothing, hence \
                 {}{failed}",
                replica.name,
                docker_output_says(rules),
                rcode.unwrap_or("no reply"),
            ),
        ));
        return;
    };
    // The embedded resolver's log (builtin mode) names the forward's source port, and so
    // its one flow; without it, the flows from the replica to that server.
    let (embedded, _) = downstream(node, question, window, from_replica, ev);
    let port = embedded.map(|e| e.client.port());
    let to = SocketAddr::new(target, 53);
    hops.push(Hop::Forward(ForwardHop {
        node: node.to_string(),
        from: ip,
        to,
        prerouting_rule: prerouting.text.clone(),
        dnat_rule: dnat.text.clone(),
        dnat_to: dnat.dnat_to(),
        conntrack: forward_flow(ev, node, proto, ip, port, to),
    }));
    resolver_hops(
        hops,
        node,
        ip,
        question,
        window,
        from_replica,
        rcode,
        ev,
        dnat.dnat_to(),
    );
}

/// The flow(s) of a forward from `from` (and `port`, when known) to `to` in `node`'s conntrack
/// table, and where the DNAT sent them.
fn forward_flow(
    ev: &Evidence,
    node: &str,
    proto: &str,
    from: IpAddr,
    port: Option<u16>,
    to: SocketAddr,
) -> Option<ForwardFlow> {
    let table = &ev.nodes.get(node)?.conntrack;
    let flows = conntrack::from_to(table, proto, from, port, to);
    let newest = flows.first()?;
    Some(ForwardFlow {
        answered_by: newest.answered_by(),
        line: newest.line.clone(),
        flows: flows.len(),
    })
}

/// For a replica known only by its address (no `log`): the forward of a name outside its
/// zones, when its node's conntrack table holds a flow from it to the server it forwards to.
/// The flow shows the DNAT to the embedded resolver; the upstream's log, whether this name
/// went out. `false` when there is no such forward to show.
fn unlogged_forward(
    hops: &mut Vec<Hop>,
    attempt: &Attempt,
    replica: &Replica,
    ip: IpAddr,
    ev: &Evidence,
) -> bool {
    let (Some(node), Some(&target)) = (replica.node.as_deref(), replica.forward_to.first()) else {
        return false;
    };
    if zone_of(&attempt.name, &replica.zones).is_some() {
        return false;
    }
    let proto = attempt.transport.as_proto();
    if forward_flow(ev, node, proto, ip, None, SocketAddr::new(target, 53)).is_none() {
        return false;
    }
    let reply = match &attempt.result {
        AttemptResult::Reply { rcode, .. } => Some(rcode.as_str()),
        AttemptResult::Failed { .. } => None,
    };
    let from_replica = |l: &&LoggedQuery| l.client.ip() == ip;
    forward_path(
        hops,
        replica,
        (node, ip),
        (&attempt.name, &attempt.rtype),
        proto,
        Window::run(ev.window),
        &from_replica,
        reply,
        "",
        ev,
    );
    true
}

/// The embedded resolver's and the upstream's log lines for a query forwarded by `from` on
/// `node` (either may be missing).
fn downstream<'a>(
    node: &str,
    (name, qtype): (&str, &str),
    window: Window,
    from: &dyn Fn(&&LoggedQuery) -> bool,
    ev: &'a Evidence,
) -> (Option<&'a LoggedQuery>, Option<&'a LoggedQuery>) {
    let info = ev.nodes.get(node);
    let embedded = info.and_then(|n| {
        window.pick(
            n.queries
                .iter()
                .filter(|q| q.asks(name, qtype))
                .filter(|q| from(q)),
        )
    });
    let node_ip = info.and_then(|n| n.ip);
    let upstream = ev.upstream.as_ref().and_then(|u| {
        let asked = || {
            u.queries
                .iter()
                .filter(|q| q.asks(name, qtype) && Some(q.client.ip()) == node_ip)
        };
        // The embedded resolver forwards with the id it was given (Docker's and minikind's
        // alike), so with its line at hand the upstream's line is the one with that id.
        embedded
            .and_then(|e| window.pick(asked().filter(|q| q.id == e.id)))
            .or_else(|| window.pick(asked()))
    });
    (embedded, upstream)
}

/// The embedded resolver at 127.0.0.11 and the upstream behind it.
#[allow(clippy::too_many_arguments)]
fn resolver_hops(
    hops: &mut Vec<Hop>,
    node: &str,
    from: IpAddr,
    question: (&str, &str),
    window: Window,
    from_client: &dyn Fn(&&LoggedQuery) -> bool,
    reply: Option<&str>,
    ev: &Evidence,
    listen: Option<SocketAddr>,
) {
    let Some(info) = ev.nodes.get(node) else {
        return;
    };
    let (embedded, upstream) = downstream(node, question, window, from_client, ev);
    let mut hop = EmbeddedHop {
        node: node.to_string(),
        listen,
        mode: info.embedded,
        rcode: embedded.map(|q| q.rcode.clone()),
        duration: embedded.map(|q| q.duration),
        log_line: embedded.map(|q| q.line.clone()),
        note: None,
    };
    match (info.embedded, embedded) {
        (EmbeddedMode::Docker, _) => {
            hop.note = Some(
                "Docker's embedded resolver runs inside dockerd and keeps no query log".into(),
            );
        }
        (EmbeddedMode::Builtin, None) => {
            hop.note = Some(format!(
                "no query for {} {} from {from} in the node's log",
                question.0, question.1
            ));
        }
        (EmbeddedMode::Builtin, Some(_)) => {}
    }
    let builtin_saw_nothing = info.embedded == EmbeddedMode::Builtin && embedded.is_none();
    if !builtin_saw_nothing || upstream.is_some() {
        hops.push(Hop::EmbeddedResolver(hop));
    }
    if let Some(u) = upstream {
        let info = ev
            .upstream
            .as_ref()
            .expect("an upstream line comes from an upstream");
        hops.push(Hop::Upstream(UpstreamHop {
            container: info.container.clone(),
            ip: info.ip,
            client: u.client,
            rcode: u.rcode.clone(),
            duration: u.duration,
            log_line: u.line.clone(),
        }));
        return;
    }
    // Nothing reached the upstream: say what the evidence allows.
    let name = question.0;
    let reason = if builtin_saw_nothing {
        match reply {
            Some("SERVFAIL") | None => format!(
                "the query for {name} never reached the embedded resolver: the forward failed"
            ),
            Some(_) => format!("no query for {name} left cluster-dns: it answered from its cache"),
        }
    } else if let Some(e) = embedded {
        format!(
            "the embedded resolver answered {name} itself ({}), nothing went to the upstream",
            e.rcode
        )
    } else {
        match &ev.upstream {
            None => "the upstream is the host's DNS, which keeps no log here".to_string(),
            Some(u) => format!(
                "no query for {name} reached {}: answered from cluster-dns's cache or by the \
                 embedded resolver itself (node and container names)",
                u.container
            ),
        }
    };
    hops.push(stop(
        if builtin_saw_nothing {
            node.to_string()
        } else {
            format!("127.0.0.11 on {node}")
        },
        reason,
    ));
}

mod nodelocal;

#[cfg(test)]
mod tests;

//! The path of a query the node-local cache caught (its NOTRACK rule matched): whether the
//! cache answered it (hit) or forwarded it (miss), read from the cache's counters before and
//! after the lookup and from the cluster-dns replicas' logs; a miss's forward (TCP to
//! kube-dns-upstream, the endpoint kube-proxy's DNAT picked from the node's conntrack table),
//! then the usual chain behind the replica.

use std::net::SocketAddr;

use minikind_pod_tools::attempt::{Attempt, AttemptResult};

use super::super::model::{
    CacheVerdict, Hop, NodeCacheForwardHop, NodeCacheHop, NodeLocalHop, ReplicaHop,
};
use super::super::nodelocal::{CacheCounters, NodeCacheEvidence, seen_as};
use super::super::rules::{Rule, Ruleset};
use super::{Evidence, Replica, Window, conntrack, replica_hops, resolver_hops, stop};
use crate::dns::trace::querylog::LoggedQuery;

/// The replica line of the cache's forward of `attempt`'s question: a TCP query in the
/// lookup's window from one of the cache's connections (or from the node's address, when
/// the table no longer holds the flow).
fn forwarded<'a>(attempt: &Attempt, ev: &'a Evidence) -> Option<(&'a Replica, &'a LoggedQuery)> {
    let node = ev.client.node.as_deref()?;
    let node_ip = ev.nodes.get(node)?.ip?;
    let seen = ev
        .node_cache
        .as_ref()
        .and_then(|c| c.upstream_service)
        .map(|up| seen_as(&ev.nodes[node].conntrack, node_ip, up))
        .unwrap_or_default();
    let window = Window::caused_by_run(ev.window);
    ev.replicas.iter().find_map(|r| {
        window
            .pick(r.queries.iter().filter(|q| {
                (q.client.ip() == node_ip || seen.contains(&q.client))
                    && q.proto.as_str() == "tcp"
                    && q.asks(&attempt.name, &attempt.rtype)
            }))
            .map(|q| (r, q))
    })
}

/// Hit or miss for `attempt`, with what shows it. A replica's log line of the cache's forward
/// proves a miss; otherwise the counters decide when they leave no choice. Of the lookup's
/// attempts that reached the same server block of the cache (less the proven misses): all were
/// hits when the block counted no other miss; this one was a miss when the block counted no hit
/// of its kind of answer (`success` or `denial`); and when nothing else asked the block, it was
/// a hit when there were as many hits of its kind as attempts with that kind of answer.
fn verdict(
    attempt: &Attempt,
    ev: &Evidence,
    rules: &Ruleset,
    cache: &NodeCacheEvidence,
) -> (Option<String>, CacheVerdict, Vec<String>) {
    if let Some((r, q)) = forwarded(attempt, ev) {
        let zone = cache
            .delta
            .as_ref()
            .and_then(|d| d.zone_of(&attempt.name).map(str::to_string));
        return (
            zone,
            CacheVerdict::Miss,
            vec![format!("{} logged the cache's forward: {}", r.name, q.line)],
        );
    }
    let Some(delta) = cache.delta.as_ref() else {
        let why = cache
            .error
            .clone()
            .unwrap_or_else(|| "the cache's counters were not read".into());
        return (None, CacheVerdict::Unknown, vec![why]);
    };
    let Some(zone) = delta.zone_of(&attempt.name) else {
        return (
            None,
            CacheVerdict::Unknown,
            vec![format!(
                "the cache counted nothing for a zone holding {}",
                attempt.name
            )],
        );
    };
    let z = delta.zones[zone];
    // This lookup's attempts that reached the same block and got a reply.
    let same_block: Vec<&Attempt> = ev
        .attempts
        .iter()
        .filter(|a| {
            rules
                .node_local_rule(a.server, a.transport.as_proto())
                .is_some()
        })
        .filter(|a| a.rcode().is_some() && delta.zone_of(&a.name) == Some(zone))
        .collect();
    let open: Vec<&&Attempt> = same_block
        .iter()
        .filter(|a| forwarded(a, ev).is_none())
        .collect();
    let proven = (same_block.len() - open.len()) as u64;
    let misses = z.misses.saturating_sub(proven);
    // The cache counts a hit by the kind of answer it held: `success` (NOERROR with records)
    // or `denial` (NXDOMAIN, NODATA), as CoreDNS's response classification does.
    let success = |a: &Attempt| matches!(&a.result, AttemptResult::Reply { rcode, answers, .. } if rcode == "NOERROR" && *answers > 0);
    let class = success(attempt);
    let (kind_hits, kind_open) = if class {
        (
            z.hits_success,
            open.iter().filter(|a| success(a)).count() as u64,
        )
    } else {
        (
            z.hits_denial,
            open.iter().filter(|a| !success(a)).count() as u64,
        )
    };
    let only_this_lookup = z.requests <= same_block.len() as u64;
    let mut evidence = vec![format!(
        "{} `{zone}` block during the lookup: coredns_cache_hits_total +{} success +{} denial, \
         coredns_cache_misses_total +{}, coredns_dns_requests_total +{} ({} of this lookup's \
         attempts)",
        cache.pod,
        z.hits_success,
        z.hits_denial,
        z.misses,
        z.requests,
        same_block.len()
    )];
    if !only_this_lookup {
        evidence.push(format!(
            "{} other queries reached the block meanwhile: the counts include them",
            z.requests - same_block.len() as u64
        ));
    }
    let kind = if class { "success" } else { "denial" };
    let v = if attempt.rcode().is_none() {
        evidence.push("no reply came".into());
        CacheVerdict::Unknown
    } else if misses == 0 && z.hits() >= open.len() as u64 {
        CacheVerdict::Hit
    } else if kind_hits == 0 {
        // No hit of this answer's kind at all: this one came from the forward.
        CacheVerdict::Miss
    } else if only_this_lookup && kind_hits >= kind_open {
        // Nothing else asked the block: every attempt with this kind of answer was a hit.
        CacheVerdict::Hit
    } else {
        evidence.push(format!(
            "{kind_hits} {kind} hit(s) and {misses} miss(es) for {kind_open} attempt(s) with a \
             {kind} answer: which was which is not recorded (node-cache's Corefile has no `log`)"
        ));
        CacheVerdict::Unknown
    };
    (Some(zone.to_string()), v, evidence)
}

/// Where the cache forwarded: the upstream Service when its counter moved (cluster zones),
/// else the one other upstream that did (the node's resolv.conf for `.`).
fn forward_target(delta: &CacheCounters, upstream: Option<SocketAddr>) -> Option<SocketAddr> {
    if let Some(up) = upstream
        && delta.forwards.contains_key(&up.to_string())
    {
        return Some(up);
    }
    let others: Vec<SocketAddr> = delta
        .forwards
        .keys()
        .filter_map(|k| k.parse().ok())
        .filter(|a| Some(*a) != upstream)
        .collect();
    match others.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// The node-local hops of `attempt`, whose query `rule` (the cache's NOTRACK) caught on `node`.
pub(super) fn assemble(
    attempt: &Attempt,
    ev: &Evidence,
    node: &str,
    rules: &Ruleset,
    rule: &Rule,
) -> Vec<Hop> {
    let mut hops = vec![Hop::NodeLocal(NodeLocalHop {
        node: node.to_string(),
        rule: rule.text.clone(),
    })];
    let Some(cache) = ev.node_cache.as_ref() else {
        hops.push(stop(
            format!("the node-local cache on {node}"),
            "no node-local-dns pod runs on the node: nothing listens behind the rule \
             (a cache killed with SIGKILL leaves its rules and address behind)",
        ));
        return hops;
    };
    let (zone, verdict, evidence) = verdict(attempt, ev, rules, cache);
    hops.push(Hop::NodeCache(NodeCacheHop {
        node: node.to_string(),
        pod: cache.pod.clone(),
        zone: zone.clone(),
        verdict,
        evidence,
    }));
    match verdict {
        CacheVerdict::Hit => return hops,
        CacheVerdict::Unknown => {
            hops.push(stop(
                cache.pod.clone(),
                "whether the cache forwarded this query is not known (see above)",
            ));
            return hops;
        }
        CacheVerdict::Miss => {}
    }
    let node_ip = ev.nodes.get(node).and_then(|n| n.ip);
    let logged = forwarded(attempt, ev);
    let delta = cache.delta.clone().unwrap_or_default();
    let to = logged
        .and(cache.upstream_service)
        .or_else(|| forward_target(&delta, cache.upstream_service));
    let Some(to) = to else {
        hops.push(stop(
            cache.pod.clone(),
            "the cache's forward counters name no single upstream for the lookup",
        ));
        return hops;
    };
    let key = to.to_string();
    let proto = if logged.is_some()
        || delta
            .conn_hits
            .keys()
            .chain(delta.conn_misses.keys())
            .any(|(t, p)| *t == key && p == "tcp")
    {
        "tcp"
    } else {
        "udp"
    };
    let reused = delta.conn_hits.get(&(key.clone(), proto.to_string()));
    let dialled = delta.conn_misses.get(&(key.clone(), proto.to_string()));
    let connection = match (reused, dialled) {
        (Some(_), None) => Some("pooled".to_string()),
        (None, Some(_)) => Some("dialled".to_string()),
        _ => None,
    };
    let mut evidence = Vec::new();
    if let Some(n) = delta.forwards.get(&key) {
        evidence.push(format!(
            "coredns_forward_requests_total{{to=\"{key}\"}} +{n}"
        ));
    }
    for (what, n) in [("hits", reused), ("misses", dialled)] {
        if let Some(n) = n {
            evidence.push(format!(
                "coredns_proxy_conn_cache_{what}_total{{to=\"{key}\",proto_type=\"{proto}\"}} +{n}"
            ));
        }
    }
    // The connection's flow: the logged source port names it; otherwise the node's flows to
    // that address (a pool keeps one per connection).
    let flows: Vec<_> = match node_ip {
        Some(ip) => conntrack::from_to(&ev.nodes[node].conntrack, proto, ip, None, to)
            .into_iter()
            .filter(|f| {
                logged.is_none_or(|(_, q)| f.reply.1 == q.client || f.original.0 == q.client)
            })
            .collect(),
        None => Vec::new(),
    };
    let mut endpoints: Vec<SocketAddr> = flows.iter().map(|f| f.answered_by()).collect();
    endpoints.sort();
    endpoints.dedup();
    let endpoint = match endpoints.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    if endpoints.len() > 1 {
        evidence.push(format!(
            "{} pooled connections, to {}: which one carried this query only a replica's `log` \
             line would say",
            flows.len(),
            endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let upstream = Some(to) == cache.upstream_service;
    hops.push(Hop::NodeCacheForward(NodeCacheForwardHop {
        node: node.to_string(),
        from: node_ip,
        to,
        proto: proto.to_string(),
        connection,
        endpoint,
        conntrack: flows.iter().map(|f| f.line.clone()).collect(),
        flows: flows.len(),
        evidence,
    }));
    let window = Window::run(ev.window);
    let reply = attempt.rcode();
    if !upstream {
        // `.`: the node's resolv.conf server, which Docker's rules send to the embedded
        // resolver.
        let Some(ip) = node_ip else {
            hops.push(stop(node, "the node's address is unknown"));
            return hops;
        };
        let dnat_to = rules
            .docker_dns(to.ip(), proto)
            .dnat
            .and_then(|r| r.dnat_to());
        let from_node = |q: &&LoggedQuery| q.client.ip() == ip || q.client.ip().is_loopback();
        resolver_hops(
            &mut hops,
            node,
            ip,
            (&attempt.name, &attempt.rtype),
            window,
            &from_node,
            reply,
            ev,
            dnat_to,
        );
        return hops;
    }
    match (logged, endpoint) {
        (Some((replica, q)), _) => replica_hops(&mut hops, replica, q, ev),
        (None, Some(ep)) => {
            let ip = ep.ip();
            match ev.replicas.iter().find(|r| r.ip == Some(ip)) {
                Some(r) => {
                    hops.push(Hop::Replica(ReplicaHop {
                        pod: r.name.clone(),
                        node: r.node.clone(),
                        ip,
                    }));
                    hops.push(stop(
                        r.name.clone(),
                        match ev.corefile_logs {
                            Some(false) => "how it answered only its `log` line would say, and \
                                            the Corefile has no `log` (see the note)"
                                .to_string(),
                            _ => format!("{} logged no matching TCP query from the node", r.name),
                        },
                    ));
                }
                None => hops.push(stop(
                    ip.to_string(),
                    format!("no pod of the cluster has the address {ip} now"),
                )),
            }
        }
        (None, None) if !flows.is_empty() => hops.push(stop(
            format!("{to} on {node}"),
            "the pool's connections go to more than one endpoint (see above)",
        )),
        (None, None) => hops.push(stop(
            node,
            format!("no TCP flow from the node to {to} in its conntrack table"),
        )),
    }
    hops
}

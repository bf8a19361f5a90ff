//! The trace as text: the lookup, why the search list is walked in this order, and per
//! attempt a tree of hops, each with its answer code, its time and the rule or log line that
//! shows it.

use std::fmt::Write;
use std::time::Duration;

use super::model::{Answered, CacheVerdict, EmbeddedMode, Hop, Trace, TracedAttempt};

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Why the candidates come in this order (glibc's `res_nsearch` in resolv/res_query.c: fewer
/// dots than `ndots` tries the search list first).
pub fn ndots_explanation(name: &str, ndots: u8) -> String {
    if name.ends_with('.') {
        return format!("{name} ends with a dot: it is asked as is, the search list is not used");
    }
    let dots = name.matches('.').count();
    let plural = if dots == 1 { "" } else { "s" };
    if dots >= usize::from(ndots) {
        format!(
            "{name} has {dots} dot{plural}, at least ndots {ndots}: asked as is first, then with \
             each search domain"
        )
    } else {
        format!(
            "{name} has {dots} dot{plural}, fewer than ndots {ndots}: each search domain first, \
             then the name as is"
        )
    }
}

/// One hop: a label, a summary and the lines of evidence under it.
pub(super) fn hop_lines(hop: &Hop) -> (&'static str, String, Vec<String>) {
    match hop {
        Hop::NodeLocal(h) => (
            "node-local",
            format!("on {}: NOTRACK, no DNAT", h.node),
            vec![h.rule.clone()],
        ),
        Hop::NodeCache(h) => (
            "node cache",
            format!(
                "{}{}: {}",
                h.pod,
                h.zone
                    .as_ref()
                    .map(|z| format!(" (block {z})"))
                    .unwrap_or_default(),
                match h.verdict {
                    CacheVerdict::Hit => "cache hit, answered on the node",
                    CacheVerdict::Miss => "cache miss, forwarded",
                    CacheVerdict::Unknown => "hit or miss unknown",
                }
            ),
            h.evidence.clone(),
        ),
        Hop::NodeCacheForward(h) => {
            let mut evidence = h.evidence.clone();
            evidence.extend(h.conntrack.iter().cloned());
            (
                "its forward",
                format!(
                    "{} → {} over {}{}{}",
                    h.from.map_or_else(|| h.node.clone(), |ip| ip.to_string()),
                    h.to,
                    h.proto.to_uppercase(),
                    h.connection
                        .as_ref()
                        .map(|c| format!(" ({c} connection)"))
                        .unwrap_or_default(),
                    h.endpoint
                        .map(|e| format!(", DNAT → {e}"))
                        .unwrap_or_default()
                ),
                evidence,
            )
        }
        Hop::ServiceRule(h) => (
            "service rule",
            format!(
                "on {}: KUBE-SERVICES → {}{}",
                h.node,
                h.chain,
                h.service
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ),
            vec![h.rule.clone()],
        ),
        Hop::Endpoint(h) => {
            let chance = h.probability.as_ref().map_or_else(
                || "the remaining share".to_string(),
                |p| format!("probability {p}"),
            );
            let mut evidence = vec![h.jump_rule.clone()];
            evidence.extend(h.dnat_rule.clone());
            evidence.push(format!("taken: {}", h.evidence));
            (
                "endpoint",
                format!(
                    "{} DNAT → {} (one of {}, {chance})",
                    h.sep_chain,
                    h.to.map_or_else(|| "?".to_string(), |t| t.to_string()),
                    h.of_endpoints
                ),
                evidence,
            )
        }
        Hop::Replica(h) => (
            "cluster-dns",
            format!(
                "{} ({}{})",
                h.pod,
                h.ip,
                h.node
                    .as_ref()
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default()
            ),
            vec!["the pod with the address the DNAT chose".to_string()],
        ),
        Hop::ClusterDns(h) => {
            let how = match (h.answered, &h.zone) {
                (Answered::OwnZone, Some(zone)) => {
                    format!("answered from its own zone {zone} (kubernetes plugin)")
                }
                (Answered::OwnZone, None) => "answered from its own zone".to_string(),
                (Answered::Forwarded, _) => "forwarded".to_string(),
                (Answered::NotForwarded, _) => "nothing forwarded".to_string(),
            };
            (
                "cluster-dns",
                format!(
                    "{} ({}{}): {} in {}, {how}",
                    h.pod,
                    h.ip,
                    h.node
                        .as_ref()
                        .map(|n| format!(" on {n}"))
                        .unwrap_or_default(),
                    h.rcode,
                    ms(h.duration)
                ),
                vec![h.log_line.clone()],
            )
        }
        Hop::Forward(h) => {
            let mut evidence = vec![h.prerouting_rule.clone(), h.dnat_rule.clone()];
            let seen = match &h.conntrack {
                Some(c) => {
                    let which = if c.flows > 1 {
                        format!("the newest of {} flows", c.flows)
                    } else {
                        "the flow".to_string()
                    };
                    evidence.push(format!("conntrack ({which}): {}", c.line));
                    format!(
                        ", answered from {} (conntrack of {})",
                        c.answered_by, h.node
                    )
                }
                None => String::new(),
            };
            (
                "forward",
                format!(
                    "{} → {} on {}: PREROUTING → DOCKER_OUTPUT DNAT → {}{seen}",
                    h.from,
                    h.to,
                    h.node,
                    h.dnat_to.map_or_else(|| "?".to_string(), |t| t.to_string())
                ),
                evidence,
            )
        }
        Hop::EmbeddedResolver(h) => {
            let who = match h.mode {
                EmbeddedMode::Docker => "Docker's",
                EmbeddedMode::Builtin => "minikind's builtin",
            };
            let at = h
                .listen
                .map_or_else(|| "127.0.0.11".to_string(), |l| l.to_string());
            let result = match (&h.rcode, h.duration) {
                (Some(rcode), Some(d)) => format!(": {rcode} in {}", ms(d)),
                _ => String::new(),
            };
            let mut evidence: Vec<String> = h.log_line.iter().cloned().collect();
            evidence.extend(h.note.clone());
            (
                "embedded",
                format!("{who} resolver at {at} in {}{result}", h.node),
                evidence,
            )
        }
        Hop::Upstream(h) => (
            "upstream",
            format!(
                "{}{}: {} in {} (asked by {})",
                h.container,
                h.ip.map(|ip| format!(" ({ip})")).unwrap_or_default(),
                h.rcode,
                ms(h.duration),
                h.client
            ),
            vec![h.log_line.clone()],
        ),
        Hop::Stop(h) => ("stops", format!("at {}", h.at), vec![h.reason.clone()]),
    }
}

fn attempt_text(out: &mut String, a: &TracedAttempt) {
    let line = a.attempt.line(a.number);
    let _ = writeln!(out, "{}", line.trim_start_matches(";; attempt "));
    let n = a.hops.len();
    for (i, hop) in a.hops.iter().enumerate() {
        let last = i + 1 == n;
        let (branch, rail) = if last {
            ("└─", "  ")
        } else {
            ("├─", "│ ")
        };
        let (label, summary, evidence) = hop_lines(hop);
        let _ = writeln!(out, "   {branch} {label:<13}{summary}");
        for e in evidence {
            let _ = writeln!(out, "   {rail}{:13} {e}", "");
        }
    }
}

/// The whole trace as text.
pub fn text(trace: &Trace) -> String {
    let mut out = String::new();
    let pod = &trace.pod;
    let _ = writeln!(
        out,
        "Tracing {} {} from pod {}{}{} in cluster {}",
        trace.name,
        trace.rtype,
        pod.display(),
        pod.ip.map(|ip| format!(" ({ip})")).unwrap_or_default(),
        pod.node
            .as_ref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default(),
        trace.cluster
    );
    let r = &trace.resolv_conf;
    let _ = writeln!(
        out,
        "resolv.conf: nameserver {}; search {}; ndots {}",
        r.nameservers.join(", "),
        if r.search.is_empty() {
            "(none)".to_string()
        } else {
            r.search.join(" ")
        },
        r.ndots
    );
    let _ = writeln!(out, "{}", ndots_explanation(&trace.name, r.ndots));
    let _ = writeln!(out, "ran: {}", trace.command.join(" "));
    for a in &trace.attempts {
        let _ = writeln!(out);
        attempt_text(&mut out, a);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Outcome: {}", trace.outcome);
    for line in &trace.answer {
        let _ = writeln!(out, "  {line}");
    }
    for note in &trace.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_the_search_order() {
        assert_eq!(
            ndots_explanation("abc.123", 2),
            "abc.123 has 1 dot, fewer than ndots 2: each search domain first, then the name as is"
        );
        assert!(
            ndots_explanation("abc.123.def", 2).contains("at least ndots 2: asked as is first")
        );
        assert!(ndots_explanation("x.", 5).contains("not used"));
    }
}

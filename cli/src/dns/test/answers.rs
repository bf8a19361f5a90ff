//! What a lookup returned, read from dig's output (minikind's or BIND's: the `->>HEADER<<-`
//! line's `status:` and the ANSWER SECTION's records), and the comparison of answer data with
//! what a check expects — as sets, with each type's data in one canonical form so that
//! `10.96.0.1` and an expanded IPv6 address or a name without its final dot compare equal.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

/// One answer's data in canonical form, for its record type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Answer(String);

/// Types whose data is one domain name.
const NAME_TYPES: &[&str] = &["CNAME", "PTR", "NS", "DNAME"];

fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with('.') {
        lower
    } else {
        format!("{lower}.")
    }
}

impl Answer {
    /// The canonical form of `data` (as dig prints it) for a record of type `rtype`;
    /// `None` when it is not valid data of that type.
    fn canonical(rtype: &str, data: &str) -> Option<Answer> {
        let words: Vec<&str> = data.split_whitespace().collect();
        let text = match rtype {
            "A" => match data.trim().parse::<IpAddr>().ok()? {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(_) => return None,
            },
            "AAAA" => match data.trim().parse::<IpAddr>().ok()? {
                IpAddr::V6(ip) => ip.to_string(),
                IpAddr::V4(_) => return None,
            },
            t if NAME_TYPES.contains(&t) => match words.as_slice() {
                [name] => canonical_name(name),
                _ => return None,
            },
            // Priority, weight, port, target.
            "SRV" => match words.as_slice() {
                [p, w, port, target] => format!(
                    "{} {} {} {}",
                    p.parse::<u16>().ok()?,
                    w.parse::<u16>().ok()?,
                    port.parse::<u16>().ok()?,
                    canonical_name(target)
                ),
                _ => return None,
            },
            "MX" => match words.as_slice() {
                [pref, exchange] => {
                    format!("{} {}", pref.parse::<u16>().ok()?, canonical_name(exchange))
                }
                _ => return None,
            },
            // TXT and the rest: the words as dig prints them, case kept.
            _ if words.is_empty() => return None,
            _ => words.join(" "),
        };
        Some(Answer(text))
    }

    /// An expected answer from a checks file; the error says what is wrong with it.
    pub fn expected(rtype: &str, text: &str) -> Result<Answer, String> {
        Answer::canonical(rtype, text)
            .ok_or_else(|| format!("{text:?} is not the data of a {rtype} record"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A reply as dig printed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub rcode: String,
    /// The answer records of the asked type, canonical (the CNAMEs leading to them are not
    /// among them).
    pub answers: Vec<Answer>,
}

/// The reply in dig's output (`+noall +comments +answer`, or its full output), `None` when
/// there is no `status:` line (no reply).
pub fn parse_dig(output: &str, rtype: &str) -> Option<Reply> {
    let rcode = output
        .lines()
        .filter(|l| l.contains("->>HEADER<<-"))
        .filter_map(|l| l.split("status:").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(|s| s.trim().to_string())
        .next_back()?;
    // The answer section of the last reply printed (dig +search may print several).
    let section = output.rsplit(";; ANSWER SECTION:").next().unwrap_or("");
    let answers = if output.contains(";; ANSWER SECTION:") {
        section
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty() && !l.starts_with(";;"))
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                // name TTL class type data…
                let words: Vec<&str> = l.split_whitespace().collect();
                let (t, data) = (words.get(3)?, words.get(4..)?);
                t.eq_ignore_ascii_case(rtype)
                    .then(|| Answer::canonical(rtype, &data.join(" ")))
                    .flatten()
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(Reply { rcode, answers })
}

/// What `getent hosts NAME` printed (`ADDRESS NAME ALIASES…` a line; the C library's
/// answer, from /etc/hosts or DNS) as a reply: the addresses of `rtype`'s family. getent
/// prints nothing and exits 2 for a name it cannot find; that is no reply at all here.
pub fn parse_getent(output: &str, rtype: &str) -> Option<Reply> {
    let answers: Vec<Answer> = output
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|addr| Answer::canonical(rtype, addr))
        .collect();
    let any = output.lines().any(|l| !l.trim().is_empty());
    any.then(|| Reply {
        rcode: "NOERROR".into(),
        answers,
    })
}

/// Whether two answer lists hold the same data, as sets.
pub fn same_set(a: &[Answer], b: &[Answer]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// Why `reply` does not meet the expectation (`None`: it does). `answers` and `rcode` as in
/// [`super::checks::Expect`]: the code defaults to NOERROR, and with neither given at least
/// one answer is expected.
pub fn mismatch(reply: &Reply, answers: Option<&[Answer]>, rcode: Option<&str>) -> Option<String> {
    let want_rcode = rcode.unwrap_or("NOERROR");
    let got = || {
        let data: Vec<&str> = reply.answers.iter().map(Answer::as_str).collect();
        format!("{} [{}]", reply.rcode, data.join(", "))
    };
    if reply.rcode != want_rcode {
        return Some(format!("expected rcode {want_rcode}, got {}", got()));
    }
    match answers {
        Some(want) if !same_set(want, &reply.answers) => {
            let want: Vec<&str> = want.iter().map(Answer::as_str).collect();
            Some(format!(
                "expected answers [{}], got {}",
                want.join(", "),
                got()
            ))
        }
        None if rcode.is_none() && reply.answers.is_empty() => {
            Some(format!("expected at least one answer, got {}", got()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(rtype: &str, text: &str) -> Answer {
        Answer::expected(rtype, text).unwrap()
    }

    const MINIKIND_DIG: &str = ";; Got answer:\n\
        ;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n\
        ;; flags: qr aa rd; QUERY: 1, ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 1\n\n\
        ;; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags:; udp: 1232\n\n\
        ;; ANSWER SECTION:\n\
        alias.example.test.\t30\tIN\tCNAME\twww.example.test.\n\
        www.example.test.\t30\tIN\tA\t192.0.2.10\n\
        www.example.test.\t30\tIN\tA\t192.0.2.11\n";

    #[test]
    fn dig_output_gives_the_code_and_the_asked_types_answers() {
        let r = parse_dig(MINIKIND_DIG, "A").unwrap();
        assert_eq!(r.rcode, "NOERROR");
        assert_eq!(r.answers, [a("A", "192.0.2.10"), a("A", "192.0.2.11")]);
        let cname = parse_dig(MINIKIND_DIG, "CNAME").unwrap();
        assert_eq!(cname.answers, [a("CNAME", "WWW.example.test")]);
        // BIND's NXDOMAIN, no answer section.
        let nx = parse_dig(
            ";; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n\
             ;; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1\n",
            "A",
        )
        .unwrap();
        assert_eq!((nx.rcode.as_str(), nx.answers.len()), ("NXDOMAIN", 0));
        assert_eq!(parse_dig(";; no servers could be reached\n", "A"), None);
        let srv = parse_dig(
            ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 2\n\n;; ANSWER SECTION:\n\
             _dns._udp.kube-dns.kube-system.svc.cluster.local. 30 IN SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.\n",
            "SRV",
        )
        .unwrap();
        assert_eq!(
            srv.answers,
            [a("SRV", "0 100 53 Kube-DNS.kube-system.svc.cluster.local")]
        );
    }

    #[test]
    fn getent_output_gives_the_families_addresses() {
        let out =
            "10.244.1.5      dns-querier-1.dns-test-service.ns.svc.cluster.local dns-querier-1\n";
        let r = parse_getent(out, "A").unwrap();
        assert_eq!(
            (r.rcode.as_str(), &r.answers[..]),
            ("NOERROR", &[a("A", "10.244.1.5")][..])
        );
        assert!(parse_getent(out, "AAAA").unwrap().answers.is_empty());
        assert_eq!(parse_getent("", "A"), None);
    }

    #[test]
    fn answers_compare_as_canonical_sets() {
        assert_eq!(a("AAAA", "2001:db8:0:0::1"), a("AAAA", "2001:db8::1"));
        assert_eq!(a("PTR", "x.test"), a("PTR", "X.TEST."));
        assert_ne!(a("TXT", "\"Hello\""), a("TXT", "\"hello\""));
        assert!(Answer::expected("A", "2001:db8::1").is_err());
        assert!(Answer::expected("A", "www").is_err());
        assert!(Answer::expected("SRV", "0 100 x t.").is_err());
        let one = [a("A", "192.0.2.10"), a("A", "192.0.2.11")];
        let other = [
            a("A", "192.0.2.11"),
            a("A", "192.0.2.10"),
            a("A", "192.0.2.10"),
        ];
        assert!(same_set(&one, &other));
        assert!(!same_set(&one, &one[..1]));
    }

    #[test]
    fn mismatches_say_what_was_expected_and_what_came() {
        let reply = parse_dig(MINIKIND_DIG, "A").unwrap();
        let both = [a("A", "192.0.2.11"), a("A", "192.0.2.10")];
        assert_eq!(mismatch(&reply, Some(&both), None), None);
        assert_eq!(mismatch(&reply, None, Some("NOERROR")), None);
        assert_eq!(mismatch(&reply, None, None), None);
        assert_eq!(
            mismatch(&reply, Some(&both[..1]), None).unwrap(),
            "expected answers [192.0.2.11], got NOERROR [192.0.2.10, 192.0.2.11]"
        );
        assert_eq!(
            mismatch(&reply, None, Some("NXDOMAIN")).unwrap(),
            "expected rcode NXDOMAIN, got NOERROR [192.0.2.10, 192.0.2.11]"
        );
        let nodata = Reply {
            rcode: "NOERROR".into(),
            answers: vec![],
        };
        assert!(
            mismatch(&nodata, None, None)
                .unwrap()
                .contains("at least one")
        );
        assert_eq!(mismatch(&nodata, None, Some("NOERROR")), None);
        assert_eq!(mismatch(&nodata, Some(&[]), None), None);
    }
}

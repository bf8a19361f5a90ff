//! One exchange of a lookup with one server, as `dig +showsearch` and `nslookup -debug` print
//! it, one line each:
//!
//! ```text
//! ;; attempt 1: abc.default.svc.cluster.local. A to 10.96.0.10#53 (UDP) from 10.244.1.4#40123 id 51439: NXDOMAIN, 0 answers, 0.412 ms
//! ;; attempt 4: abc. A to 10.96.0.10#53 (UDP) from 10.244.1.4#40125 id 811: failed (timed out) after 5000.981 ms
//! ```
//!
//! The line says everything needed to find the query again in a server's CoreDNS-format log
//! (`<client-ip>:<port> - <id> "<type> IN <name> …"`): the client address and port, the id and
//! the name. `minikind dns trace` runs a tool in the pod and reads these lines back with
//! [`parse_line`], so the format is kept stable and tested both ways here.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::transport::Transport;

/// The prefix of every attempt line.
pub const LINE_PREFIX: &str = ";; attempt ";

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AttemptResult {
    /// The server replied with this code (`NOERROR`, `NXDOMAIN`, …).
    Reply {
        rcode: String,
        /// TC was set (a UDP reply that did not fit); the same server is asked over TCP next.
        truncated: bool,
        answers: usize,
    },
    /// No usable reply: timeout, refused connection, a malformed reply.
    Failed { error: String },
}

/// One query sent to one server over one transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The fully qualified name asked (trailing dot).
    pub name: String,
    /// The record type asked, as dig spells it.
    pub rtype: String,
    pub server: SocketAddr,
    pub transport: Transport,
    /// The client's own address and port (what a server's log shows as the client); unknown
    /// when the socket never got one (a TCP connection that failed).
    pub local: Option<SocketAddr>,
    pub id: u16,
    pub result: AttemptResult,
    /// From sending the query to the reply (or giving up).
    #[serde(with = "micros")]
    pub elapsed: Duration,
}

impl Attempt {
    /// The line the tools print for the `number`-th exchange of a lookup (1-based).
    pub fn line(&self, number: usize) -> String {
        format!("{LINE_PREFIX}{number}: {self}")
    }

    /// The reply's code, if a reply came.
    pub fn rcode(&self) -> Option<&str> {
        match &self.result {
            AttemptResult::Reply { rcode, .. } => Some(rcode),
            AttemptResult::Failed { .. } => None,
        }
    }
}

/// `ip#port`, as dig writes a server (IPv6 without brackets: the `#` separates).
fn hash_addr(addr: &SocketAddr) -> String {
    format!("{}#{}", addr.ip(), addr.port())
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self
            .local
            .as_ref()
            .map_or_else(|| "-".to_string(), hash_addr);
        write!(
            f,
            "{} {} to {} ({}) from {from} id {}: ",
            self.name,
            self.rtype,
            hash_addr(&self.server),
            self.transport.as_str(),
            self.id
        )?;
        match &self.result {
            AttemptResult::Reply {
                rcode,
                truncated,
                answers,
            } => {
                let tc = if *truncated { " truncated," } else { "" };
                let plural = if *answers == 1 { "" } else { "s" };
                write!(
                    f,
                    "{rcode},{tc} {answers} answer{plural}, {} ms",
                    millis(self.elapsed)
                )
            }
            AttemptResult::Failed { error } => {
                // The error text must not look like the end of the line to the parser.
                let error = error.replace(") after ", ") after\u{a0}");
                write!(f, "failed ({error}) after {} ms", millis(self.elapsed))
            }
        }
    }
}

fn parse_hash_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.rsplit_once('#')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

fn parse_millis(text: &str) -> Option<Duration> {
    let ms: f64 = text.strip_suffix(" ms")?.parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_micros((ms * 1000.0).round() as u64))
}

/// Reads back a line printed by [`Attempt::line`]: the attempt number and the attempt. `None`
/// for any other line (the tools print other things around them).
pub fn parse_line(line: &str) -> Option<(usize, Attempt)> {
    let rest = line.trim_end().strip_prefix(LINE_PREFIX)?;
    let (number, rest) = rest.split_once(": ")?;
    let number = number.parse().ok()?;
    // Names have no spaces or colons in them, so the head ends at the first ": ".
    let (head, result) = rest.split_once(": ")?;
    let words: Vec<&str> = head.split(' ').collect();
    let [
        name,
        rtype,
        "to",
        server,
        transport,
        "from",
        local,
        "id",
        id,
    ] = words.as_slice()
    else {
        return None;
    };
    let transport = match *transport {
        "(UDP)" => Transport::Udp,
        "(TCP)" => Transport::Tcp,
        _ => return None,
    };
    let local = match *local {
        "-" => None,
        other => Some(parse_hash_addr(other)?),
    };
    let (result, elapsed) = if let Some(failed) = result.strip_prefix("failed (") {
        let (error, ms) = failed.rsplit_once(") after ")?;
        (
            AttemptResult::Failed {
                error: error.replace(") after\u{a0}", ") after "),
            },
            parse_millis(ms)?,
        )
    } else {
        let parts: Vec<&str> = result.split(", ").collect();
        let (rcode, truncated, answers, ms) = match parts.as_slice() {
            [rcode, answers, ms] => (*rcode, false, *answers, *ms),
            [rcode, "truncated", answers, ms] => (*rcode, true, *answers, *ms),
            _ => return None,
        };
        let (count, word) = answers.split_once(' ')?;
        if word != "answer" && word != "answers" {
            return None;
        }
        (
            AttemptResult::Reply {
                rcode: rcode.to_string(),
                truncated,
                answers: count.parse().ok()?,
            },
            parse_millis(ms)?,
        )
    };
    Some((
        number,
        Attempt {
            name: name.to_string(),
            rtype: rtype.to_string(),
            server: parse_hash_addr(server)?,
            transport,
            local,
            id: id.parse().ok()?,
            result,
            elapsed,
        },
    ))
}

/// Durations as whole microseconds in JSON (`elapsed_us`-style numbers are easy to compare).
mod micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(rcode: &str, truncated: bool, answers: usize) -> AttemptResult {
        AttemptResult::Reply {
            rcode: rcode.into(),
            truncated,
            answers,
        }
    }

    fn attempt(result: AttemptResult) -> Attempt {
        Attempt {
            name: "abc.default.svc.cluster.local.".into(),
            rtype: "A".into(),
            server: "10.96.0.10:53".parse().unwrap(),
            transport: Transport::Udp,
            local: Some("10.244.1.4:40123".parse().unwrap()),
            id: 51439,
            result,
            elapsed: Duration::from_micros(412),
        }
    }

    #[test]
    fn the_line_reads_like_the_docs() {
        assert_eq!(
            attempt(reply("NXDOMAIN", false, 0)).line(1),
            ";; attempt 1: abc.default.svc.cluster.local. A to 10.96.0.10#53 (UDP) from \
             10.244.1.4#40123 id 51439: NXDOMAIN, 0 answers, 0.412 ms"
        );
        let mut tcp = attempt(reply("NOERROR", true, 1));
        tcp.transport = Transport::Tcp;
        tcp.local = None;
        assert_eq!(
            tcp.line(12),
            ";; attempt 12: abc.default.svc.cluster.local. A to 10.96.0.10#53 (TCP) from - \
             id 51439: NOERROR, truncated, 1 answer, 0.412 ms"
        );
    }

    #[test]
    fn lines_read_back_exactly() {
        let mut v6 = attempt(AttemptResult::Failed {
            error: "timed out (after all) after 5 s".into(),
        });
        v6.server = "[fd00::10]:53".parse().unwrap();
        v6.local = Some("[fd00::4]:5353".parse().unwrap());
        for (n, a) in [
            (1, attempt(reply("NXDOMAIN", false, 0))),
            (2, attempt(reply("NOERROR", true, 3))),
            (3, attempt(reply("SERVFAIL", false, 1))),
            (4, v6),
        ] {
            let line = a.line(n);
            assert_eq!(parse_line(&line), Some((n, a)), "{line}");
        }
    }

    #[test]
    fn other_lines_are_not_attempts() {
        for line in [
            "",
            ";; Got answer:",
            ";; attempt x: a. A to 1.1.1.1#53 (UDP) from - id 1: NOERROR, 0 answers, 1 ms",
            ";; attempt 1: a. A to 1.1.1.1#53 (QUIC) from - id 1: NOERROR, 0 answers, 1 ms",
            ";; attempt 1: a. A to 1.1.1.1:53 (UDP) from - id 1: NOERROR, 0 answers, 1 ms",
            ";; attempt 1: a. A to 1.1.1.1#53 (UDP) from - id 1: NOERROR, 0 answers",
            ";; attempt 1: a. A to 1.1.1.1#53 (UDP) from - id 1: NOERROR, many answers, 1 ms",
            ";; attempt 1: a. A to 1.1.1.1#53 (UDP) from - id 99999: NOERROR, 0 answers, 1 ms",
        ] {
            assert_eq!(parse_line(line), None, "{line}");
        }
    }

    #[test]
    fn json_has_microseconds() {
        let json = serde_json::to_value(attempt(reply("NOERROR", false, 1))).unwrap();
        assert_eq!(json["elapsed"], 412);
        assert_eq!(json["result"]["kind"], "reply");
        assert_eq!(json["transport"], "udp");
        assert_eq!(json["server"], "10.96.0.10:53");
    }
}

//! Reading query log lines in CoreDNS's `log` format, which every logging hop of the lab writes
//! (cluster-dns with `log`, minikind's embedded resolver, the lab upstream), with the one parser
//! of `minikind_dns_log::QueryLine`:
//!
//! `[INFO] <client-ip>:<port> - <id> "<type> <class> <name> <proto> <size> <do> <bufsize>" <rcode> <flags> <rsize> <duration>`
//!
//! Lines come from `kubectl logs --timestamps` or `docker logs --timestamps`, so an RFC 3339
//! time may come first; it is kept to order the hops of one lookup.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use minikind_dns_log::{ErrorLine, Proto, QueryLine};

/// One query as a server logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedQuery {
    /// When the log collector stored the line (a little after the reply was sent).
    pub time: Option<SystemTime>,
    pub client: SocketAddr,
    pub id: u16,
    pub qtype: String,
    pub name: String,
    pub proto: Proto,
    pub rcode: String,
    pub flags: String,
    pub duration: Duration,
    /// The line as the server wrote it (without the collector's time).
    pub line: String,
}

impl LoggedQuery {
    /// Same question (names compare case-insensitively, as DNS does).
    pub fn asks(&self, name: &str, qtype: &str) -> bool {
        self.name.eq_ignore_ascii_case(name) && self.qtype.eq_ignore_ascii_case(qtype)
    }
}

/// Splits a leading RFC 3339 time (`2026-11-22T04:12:18.123456789Z `) off a log line.
fn split_time(line: &str) -> (Option<SystemTime>, &str) {
    if let Some((first, rest)) = line.split_once(' ')
        && first.len() >= 20
        && first.as_bytes()[4] == b'-'
        && let Ok(t) = humantime::parse_rfc3339(first)
    {
        return (Some(t), rest);
    }
    (None, line)
}

/// Parses one log line; `None` for anything that is not a query line (start-up messages,
/// errors, plugin output).
pub fn parse(line: &str) -> Option<LoggedQuery> {
    let (time, logged) = split_time(line.trim_end());
    let q = QueryLine::parse(logged)?;
    Some(LoggedQuery {
        time,
        client: q.client,
        id: q.id,
        qtype: q.qtype,
        name: q.name,
        proto: q.proto,
        rcode: q.rcode,
        flags: q.flags,
        duration: q.duration,
        line: logged.to_string(),
    })
}

/// Every query line of a log text.
pub fn parse_all(text: &str) -> Vec<LoggedQuery> {
    text.lines().filter_map(parse).collect()
}

/// A failure CoreDNS's `errors` plugin logged for a query:
/// `[ERROR] plugin/errors: <rcode> <name> <type>: <message>`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedError {
    pub time: Option<SystemTime>,
    pub name: String,
    pub qtype: String,
    pub message: String,
}

/// Reads one `errors` line (with `minikind_dns_log::ErrorLine`'s parser); `None` for anything
/// else.
pub fn parse_error(line: &str) -> Option<LoggedError> {
    let (time, logged) = split_time(line.trim_end());
    let e = ErrorLine::parse(logged)?;
    Some(LoggedError {
        time,
        name: e.name,
        qtype: e.qtype,
        message: e.message,
    })
}

/// Every `errors` line of a log text.
pub fn parse_errors(text: &str) -> Vec<LoggedError> {
    text.lines().filter_map(parse_error).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_coredns_lines_with_and_without_a_time() {
        let q = parse(
            "2026-11-22T04:12:18.123456789Z [INFO] 10.244.1.4:50940 - 51439 \"A IN \
             abc.svc.cluster.local. udp 51 false 512\" NXDOMAIN qr,aa,rd 144 0.000114128s",
        )
        .unwrap();
        assert_eq!(q.client, "10.244.1.4:50940".parse().unwrap());
        assert_eq!(q.id, 51439);
        assert!(q.asks("ABC.svc.cluster.local.", "a"));
        assert_eq!((q.proto.as_str(), q.rcode.as_str()), ("udp", "NXDOMAIN"));
        assert_eq!(q.flags, "qr,aa,rd");
        assert_eq!(q.duration, Duration::from_nanos(114_128));
        assert_eq!(
            q.time.unwrap(),
            humantime::parse_rfc3339("2026-11-22T04:12:18.123456789Z").unwrap()
        );
        assert!(
            q.line
                .starts_with("[INFO] 10.244.1.4:50940 - 51439 \"A IN "),
            "{}",
            q.line
        );
        assert!(q.line.ends_with(" 144 0.000114128s"), "{}", q.line);

        let v6 = parse(
            "[INFO] [fd00::5]:53 - 7 \"AAAA IN www.example.test. tcp 45 true 65535\" \
             NOERROR qr,rd,ra 101 2.5ms",
        )
        .unwrap();
        assert_eq!(v6.client, "[fd00::5]:53".parse().unwrap());
        assert_eq!(v6.duration, Duration::from_micros(2500));
        assert_eq!(v6.time, None);
    }

    #[test]
    fn reads_errors_lines() {
        let e = parse_error(
            "2026-11-22T04:36:03.431455617Z [ERROR] plugin/errors: 2 off-6.wild.example.test. A: \
             read udp 172.26.0.1:53: Connection refused (os error 111)",
        )
        .unwrap();
        assert_eq!(
            (e.name.as_str(), e.qtype.as_str()),
            ("off-6.wild.example.test.", "A")
        );
        assert_eq!(
            e.message,
            "read udp 172.26.0.1:53: Connection refused (os error 111)"
        );
        assert!(e.time.is_some());
        assert_eq!(parse_error("[INFO] plugin/reload: x"), None);
    }

    #[test]
    fn other_lines_are_skipped() {
        let text = ".:53\nCoreDNS-1.11.3\n[INFO] plugin/reload: Running configuration SHA512 = ab\n\
                    [INFO] lab-upstream: serving zone example.test. on 0.0.0.0:53 (udp, tcp)\n\
                    [INFO] 10.0.0.1:1 - 2 \"A IN a. udp 1 false 512\" NOERROR qr 1 soon\n\
                    [INFO] 10.0.0.1:1 - 2 \"A IN a. udp 1 false 512\" NOERROR qr 1 0.1s\n";
        let all = parse_all(text);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].duration, Duration::from_millis(100));
    }
}

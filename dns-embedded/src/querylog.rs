//! Where the servers' query log lines go, and what one line shows. The line itself (CoreDNS's
//! `log` plugin format, which every hop of the lab writes so all can be read and compared the
//! same way) is written by `minikind_dns_log::QueryLine`:
//!
//! `[INFO] <client-ip>:<port> - <id> "<type> IN <name> <proto> <size> <do> <bufsize>" <rcode> <flags> <rsize> <duration>s`

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::Message;
use minikind_dns_log::{Proto, QueryLine, class_name, type_name};
use tokio::sync::mpsc::UnboundedSender;

use crate::wire::ResponseHeader;

/// Where query log lines go.
#[derive(Clone, Debug, Default)]
pub enum QueryLog {
    /// One line per query on the process's standard output (what `docker logs` shows).
    #[default]
    Stdout,
    /// No logging (benchmarks measuring the server alone).
    Discard,
    /// Lines are sent to a channel (tests, or a caller that multiplexes logs).
    Channel(UnboundedSender<String>),
}

impl QueryLog {
    /// Emits one finished line.
    pub fn emit(&self, line: String) {
        match self {
            QueryLog::Stdout => {
                let mut out = std::io::stdout().lock();
                // A closed stdout must not take the server down: the answer matters more.
                let _ = writeln!(out, "{line}");
            }
            QueryLog::Discard => {}
            QueryLog::Channel(tx) => {
                let _ = tx.send(line);
            }
        }
    }

    /// True when lines would be thrown away, so callers can skip formatting them.
    pub fn is_discard(&self) -> bool {
        matches!(self, QueryLog::Discard)
    }
}

/// The facts of one request/response pair that a log line shows.
pub struct QueryRecord<'a> {
    pub client: SocketAddr,
    pub proto: Proto,
    pub request: &'a Message,
    pub request_size: usize,
    pub response: Option<ResponseHeader>,
    pub response_size: usize,
    pub duration: Duration,
}

/// Formats one line the way CoreDNS's default log format does ([`QueryLine`] writes it).
pub fn format_line(rec: &QueryRecord<'_>) -> String {
    let (qtype, qclass, name) = match rec.request.queries.first() {
        Some(q) => (
            type_name(q.query_type().into()).into_owned(),
            class_name(q.query_class().into()).into_owned(),
            q.name().to_ascii(),
        ),
        None => ("TYPE0".to_string(), "IN".to_string(), ".".to_string()),
    };
    let (do_bit, bufsize) = match &rec.request.edns {
        Some(edns) => (edns.flags().dnssec_ok, edns.max_payload()),
        None => (false, 0),
    };
    // CoreDNS reports the size the reply may have: 65535 on TCP, at least 512 on UDP.
    let bufsize = match rec.proto {
        Proto::Tcp => 65535,
        Proto::Udp => bufsize.max(512),
    };
    let (rcode, flags) = match &rec.response {
        Some(h) => (h.rcode_name(), h.flags_string()),
        None => ("-".to_string(), "-".to_string()),
    };
    QueryLine {
        client: rec.client,
        id: rec.request.metadata.id,
        qtype,
        qclass,
        name,
        proto: rec.proto,
        size: rec.request_size,
        do_bit,
        bufsize,
        rcode,
        flags,
        rsize: rec.response_size,
        duration: rec.duration,
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::{Name, RecordType};

    fn request(edns: Option<u16>) -> Message {
        let mut m = Message::query();
        m.metadata.id = 51439;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(
            Name::from_ascii("abc.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m
    }

    #[test]
    fn line_matches_coredns_format() {
        let req = request(None);
        // qr, aa, rd set; NXDOMAIN (3).
        let header = ResponseHeader::parse(&[0xc8, 0xef, 0x85, 0x03, 0, 1, 0, 0, 0, 1, 0, 0])
            .expect("12 bytes");
        let line = format_line(&QueryRecord {
            client: "10.244.1.4:50940".parse().unwrap(),
            proto: Proto::Udp,
            request: &req,
            request_size: 51,
            response: Some(header),
            response_size: 144,
            duration: Duration::from_nanos(114_128),
        });
        assert_eq!(
            line,
            "[INFO] 10.244.1.4:50940 - 51439 \"A IN abc.svc.cluster.local. udp 51 false 512\" NXDOMAIN qr,aa,rd 144 0.000114128s"
        );
    }

    #[test]
    fn edns_size_and_tcp_are_reported_like_coredns() {
        let req = request(Some(1232));
        let header =
            ResponseHeader::parse(&[0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]).expect("12 bytes");
        let udp = format_line(&QueryRecord {
            client: "[::1]:5353".parse().unwrap(),
            proto: Proto::Udp,
            request: &req,
            request_size: 62,
            response: Some(header),
            response_size: 80,
            duration: Duration::from_millis(2),
        });
        assert!(
            udp.starts_with("[INFO] [::1]:5353 - 51439 \"A IN abc.svc.cluster.local. udp 62 false 1232\" NOERROR qr,rd,ra 80 0.002s"),
            "{udp}"
        );
        let tcp = format_line(&QueryRecord {
            client: "127.0.0.1:4000".parse().unwrap(),
            proto: Proto::Tcp,
            request: &req,
            request_size: 62,
            response: None,
            response_size: 0,
            duration: Duration::from_millis(2),
        });
        assert!(tcp.contains(" tcp 62 false 65535\" - - 0 "), "{tcp}");
    }

    #[test]
    fn class_and_unknown_type_are_named_like_coredns() {
        let mut req = Message::query();
        let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
        q.set_query_class(hickory_proto::rr::DNSClass::CH);
        req.add_query(q);
        req.add_query(Query::query(Name::root(), RecordType::Unknown(65534)));
        let rec = |req: &Message| {
            format_line(&QueryRecord {
                client: "127.0.0.1:1".parse().unwrap(),
                proto: Proto::Udp,
                request: req,
                request_size: 30,
                response: None,
                response_size: 0,
                duration: Duration::ZERO,
            })
        };
        assert!(
            rec(&req).contains("\"TXT CH version.bind. udp"),
            "{}",
            rec(&req)
        );
        req.queries.remove(0);
        assert!(rec(&req).contains("\"TYPE65534 IN . udp"), "{}", rec(&req));
    }
}

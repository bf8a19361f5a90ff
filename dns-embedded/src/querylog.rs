//! Where the servers' query log lines go, and what one line shows. The line itself (CoreDNS's
//! `log` plugin format, which every hop of the lab writes so all can be read and compared the
//! same way) is written by `minikind_dns_log::QueryLine`:
//!
//! `[INFO] <client-ip>:<port> - <id> "<type> IN <name> <proto> <size> <do> <bufsize>" <rcode> <flags> <rsize> <duration>s`

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
            QueryLog::Stdout => stdout_batches::write(line),
            QueryLog::Discard => {}
            QueryLog::Channel(tx) => {
                let _ = tx.send(line);
            }
        }
    }

    /// Waits until every line emitted so far is written (before the process exits).
    pub fn flush(&self) {
        if let QueryLog::Stdout = self {
            stdout_batches::flush();
        }
    }

    /// True when lines would be thrown away, so callers can skip formatting them.
    pub fn is_discard(&self) -> bool {
        matches!(self, QueryLog::Discard)
    }
}

/// Standard output's query lines, written in batches by one thread. Under load a server answers
/// many queries between two writes; one `write` (and one read by the engine's log copier, for
/// `docker logs`) per batch instead of per line takes most of the logging's cost off the hot path.
/// A quiet server's line is written as soon as the thread wakes, so `dns trace` and `docker logs`
/// see it at once.
mod stdout_batches {
    use std::io::Write;
    use std::sync::OnceLock;
    use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

    /// Lines waiting for the writer at most; beyond that a server writes its line itself (and
    /// waits for the pipe as it did before batching) rather than letting memory grow.
    const QUEUED: usize = 16 * 1024;
    /// Bytes gathered into one write at most.
    const BATCH_BYTES: usize = 64 * 1024;

    enum Item {
        Line(String),
        /// Answered once every line sent before it is written.
        Flush(SyncSender<()>),
    }

    fn writer() -> Option<&'static SyncSender<Item>> {
        static WRITER: OnceLock<Option<SyncSender<Item>>> = OnceLock::new();
        WRITER
            .get_or_init(|| {
                let (tx, rx) = sync_channel(QUEUED);
                std::thread::Builder::new()
                    .name("query-log".into())
                    .spawn(move || {
                        drain(rx, |batch| {
                            let mut out = std::io::stdout().lock();
                            // A closed stdout must not take the server down.
                            let _ = out.write_all(batch);
                            let _ = out.flush();
                        })
                    })
                    .ok()
                    .map(|_| tx)
            })
            .as_ref()
    }

    pub fn write(line: String) {
        let line = match writer() {
            Some(tx) => match tx.try_send(Item::Line(line)) {
                Ok(()) => return,
                // The queue is full (or the writer gone): this line is written here.
                Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => match item {
                    Item::Line(line) => line,
                    Item::Flush(_) => return,
                },
            },
            // No writer thread could be started: every line is written where it is made.
            None => line,
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout must not take the server down: the answer matters more.
        let _ = writeln!(out, "{line}");
    }

    /// Waits until every line written so far is on standard output (a server calls it before
    /// it exits, so no answered query goes unlogged).
    pub fn flush() {
        let Some(tx) = writer() else { return };
        let (ack, done) = sync_channel(1);
        if tx.send(Item::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }

    /// Gathers what is queued into batches and hands each to `write`; a flush is answered once
    /// the lines before it are written.
    fn drain(rx: Receiver<Item>, mut write: impl FnMut(&[u8])) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        let mut acks = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(item) = next.take() {
                match item {
                    Item::Line(line) => {
                        batch.extend_from_slice(line.as_bytes());
                        batch.push(b'\n');
                    }
                    Item::Flush(ack) => acks.push(ack),
                }
                if batch.len() < BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            write(&batch);
            batch.clear();
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::sync::{Arc, Mutex};

        #[test]
        fn lines_come_out_whole_in_order_and_a_flush_waits_for_them() {
            let (tx, rx) = sync_channel(QUEUED);
            let written = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
            let sink = written.clone();
            let writer = std::thread::spawn(move || {
                drain(rx, |batch| sink.lock().unwrap().push(batch.to_vec()))
            });
            let lines: Vec<String> = (0..5000).map(|i| format!("[INFO] line {i}")).collect();
            for l in &lines {
                tx.send(Item::Line(l.clone())).unwrap();
            }
            let (ack, done) = sync_channel(1);
            tx.send(Item::Flush(ack)).unwrap();
            done.recv().unwrap();
            let batches = written.lock().unwrap().clone();
            let text = String::from_utf8(batches.concat()).unwrap();
            assert_eq!(
                text,
                lines.iter().map(|l| format!("{l}\n")).collect::<String>()
            );
            assert!(
                batches.iter().all(|b| b.len() <= BATCH_BYTES + 64),
                "a batch stays within its bound"
            );
            drop(tx);
            writer.join().unwrap();
        }
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

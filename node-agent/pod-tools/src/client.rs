//! A small blocking DNS client over UDP and TCP (hickory-proto for the wire format), and the
//! stub-resolver lookup (servers × attempts, search list) the tools share.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::attempt::{Attempt, AttemptResult};
use super::present::rcode_name;
use super::search::candidate_names;
use super::transport::Transport;
use minikind_resolv_conf::ResolvConf;

/// UDP payload size advertised with EDNS (the DNS-flag-day value BIND's dig uses).
pub const EDNS_UDP_SIZE: u16 = 1232;

/// Why one exchange with one server failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

/// A reply and how it came.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub response: Message,
    pub server: SocketAddr,
    pub transport: Transport,
    /// The client side of the exchange (what the server saw as the client).
    pub local: SocketAddr,
    pub elapsed: Duration,
    /// Size of the reply on the wire, in bytes.
    pub size: usize,
}

/// Builds a standard query: random id, RD set, EDNS with [`EDNS_UDP_SIZE`] unless `edns` is
/// false.
pub fn build_query(name: Name, rtype: RecordType, edns: bool) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, rtype));
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(EDNS_UDP_SIZE);
        message.set_edns(opt);
    }
    message
}

/// Parses a name given on a command line (IDNA allowed), making it fully qualified.
pub fn parse_name(text: &str) -> Result<Name, String> {
    let mut name =
        Name::from_utf8(text).map_err(|e| format!("'{text}' is not a valid domain name: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The reverse-lookup name of an address (`1.0.96.10.in-addr.arpa.`, nibbles for IPv6).
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::new();
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            out + "ip6.arpa."
        }
    }
}

/// One query to one server over one transport.
pub fn exchange(
    server: SocketAddr,
    query: &Message,
    transport: Transport,
    timeout: Duration,
) -> Result<Exchange, ExchangeError> {
    exchange_attempt(server, query, transport, timeout).0
}

/// Like [`exchange`], and the exchange as an [`Attempt`] (client port, id, outcome, time),
/// whatever happened.
pub fn exchange_attempt(
    server: SocketAddr,
    query: &Message,
    transport: Transport,
    timeout: Duration,
) -> (Result<Exchange, ExchangeError>, Attempt) {
    let mut local = None;
    let started = Instant::now();
    let result = exchange_inner(server, query, transport, timeout, &mut local, started);
    let elapsed = started.elapsed();
    let (name, rtype) = query.queries.first().map_or_else(
        || (".".to_string(), "A".to_string()),
        |q| (q.name().to_string(), q.query_type().to_string()),
    );
    let attempt = Attempt {
        name,
        rtype,
        server,
        transport,
        local,
        id: query.metadata.id,
        result: match &result {
            Ok(reply) => AttemptResult::Reply {
                rcode: rcode_name(reply.response.metadata.response_code),
                truncated: reply.response.metadata.truncation,
                answers: reply.response.answers.len(),
            },
            Err(e) => AttemptResult::Failed {
                error: e.to_string(),
            },
        },
        elapsed: match &result {
            Ok(reply) => reply.elapsed,
            Err(_) => elapsed,
        },
    };
    (result, attempt)
}

fn exchange_inner(
    server: SocketAddr,
    query: &Message,
    transport: Transport,
    timeout: Duration,
    local: &mut Option<SocketAddr>,
    started: Instant,
) -> Result<Exchange, ExchangeError> {
    let bytes = query
        .to_vec()
        .map_err(|e| ExchangeError::Encode(e.to_string()))?;
    let reply = match transport {
        Transport::Udp => udp_exchange(server, &bytes, query.metadata.id, timeout, local)?,
        Transport::Tcp => tcp_exchange(server, &bytes, timeout, local)?,
    };
    let elapsed = started.elapsed();
    let size = reply.len();
    let response =
        Message::from_vec(&reply).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
    if response.metadata.id != query.metadata.id
        || response.metadata.message_type != MessageType::Response
    {
        return Err(ExchangeError::Malformed(
            "the reply does not answer the query (id or QR bit)".into(),
        ));
    }
    Ok(Exchange {
        response,
        server,
        transport,
        local: local.unwrap_or_else(|| unspecified_for(server)),
        elapsed,
        size,
    })
}

fn unspecified_for(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

fn io_timeout(e: std::io::Error) -> ExchangeError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ExchangeError::Timeout,
        _ => ExchangeError::Io(e),
    }
}

fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> Result<Vec<u8>, ExchangeError> {
    let socket = UdpSocket::bind(unspecified_for(server))?;
    // connect() makes the kernel drop datagrams from anyone but the server; it also picks the
    // source address, which is what the server will log as the client.
    socket.connect(server)?;
    *local = socket.local_addr().ok();
    socket.send(bytes)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ExchangeError::Timeout);
        }
        socket.set_read_timeout(Some(left))?;
        let n = socket.recv(&mut buf).map_err(io_timeout)?;
        // A stray datagram with another id (a late reply to an earlier try) is skipped.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

fn tcp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
    local: &mut Option<SocketAddr>,
) -> Result<Vec<u8>, ExchangeError> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&server, timeout).map_err(io_timeout)?;
    *local = stream.local_addr().ok();
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left()))?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| ExchangeError::Encode("query longer than 65535 bytes".into()))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).map_err(io_timeout)?;
    stream.set_read_timeout(Some(left()))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(io_timeout)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.set_read_timeout(Some(left()))?;
    stream.read_exact(&mut reply).map_err(io_timeout)?;
    Ok(reply)
}

/// How a stub resolver sends its queries.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub servers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: u8,
    /// Per try.
    pub timeout: Duration,
    /// Rounds over all servers.
    pub attempts: u32,
    /// `use-vc` / `+tcp`: TCP from the start.
    pub tcp: bool,
    /// Send an EDNS OPT record.
    pub edns: bool,
}

impl ResolverConfig {
    /// The configuration a resolv.conf describes (servers on `port`).
    pub fn from_resolv_conf(conf: &ResolvConf, port: u16) -> Self {
        Self {
            servers: conf
                .nameservers()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
            search: conf.search(),
            ndots: conf.ndots(),
            timeout: Duration::from_secs(u64::from(conf.timeout_secs())),
            attempts: conf.attempts(),
            tcp: conf.has_option("use-vc"),
            edns: conf.has_option("edns0"),
        }
    }
}

/// Failures of one query sent to every server, in the order they happened.
#[derive(Debug, Default)]
pub struct Unreachable {
    pub errors: Vec<(SocketAddr, Transport, ExchangeError)>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.errors.is_empty() {
            return f.write_str("no nameserver configured");
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(server, transport, e)| format!("{server} ({}): {e}", transport.as_str()))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Something worth telling while a query is under way (dig prints these).
#[derive(Debug)]
pub enum QueryEvent<'a> {
    /// One exchange with one server failed; the next server or round follows.
    Failed(SocketAddr, Transport, &'a ExchangeError),
    /// The UDP reply had TC set; the same server is asked over TCP.
    Truncated(SocketAddr),
    /// One exchange finished (or failed); sent for every exchange, before the events above.
    Attempt(&'a Attempt),
}

/// Sends `query` to each server in turn, `attempts` rounds, until one answers. A truncated
/// UDP reply is asked again over TCP from the same server, as every stub resolver does.
/// Failures and retries are reported to `on_event` as they happen.
pub fn query_servers(
    config: &ResolverConfig,
    query: &Message,
    mut on_event: impl FnMut(QueryEvent<'_>),
) -> Result<Exchange, Unreachable> {
    let mut failed = Unreachable::default();
    let first = if config.tcp {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let send = |server, transport, on_event: &mut dyn FnMut(QueryEvent<'_>)| {
        let (result, attempt) = exchange_attempt(server, query, transport, config.timeout);
        on_event(QueryEvent::Attempt(&attempt));
        result
    };
    for _ in 0..config.attempts.max(1) {
        for &server in &config.servers {
            match send(server, first, &mut on_event) {
                Ok(reply) if reply.response.metadata.truncation && first == Transport::Udp => {
                    on_event(QueryEvent::Truncated(server));
                    match send(server, Transport::Tcp, &mut on_event) {
                        Ok(reply) => return Ok(reply),
                        Err(e) => {
                            on_event(QueryEvent::Failed(server, Transport::Tcp, &e));
                            failed.errors.push((server, Transport::Tcp, e));
                        }
                    }
                }
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    on_event(QueryEvent::Failed(server, first, &e));
                    failed.errors.push((server, first, e));
                }
            }
        }
    }
    Err(failed)
}

/// How a search-list lookup ended.
#[derive(Debug)]
pub enum Outcome {
    /// A candidate had records of the asked type (possibly behind CNAMEs).
    Answer(Exchange),
    /// Every candidate was NXDOMAIN.
    NxDomain,
    /// Some candidate exists but has no record of that type; the last such reply.
    NoData(Exchange),
    /// No candidate answered and some server failed (SERVFAIL, REFUSED, …); the last reply.
    ServerFailure(Exchange),
    /// No server could be reached.
    Unreachable(Unreachable),
}

/// A search-list lookup: the candidates tried (in order) and the outcome.
#[derive(Debug)]
pub struct Lookup {
    pub tried: Vec<String>,
    pub outcome: Outcome,
}

/// Resolves `name` for `rtype` the way glibc's `res_nsearch` walks the search list: the next
/// candidate after NXDOMAIN, NODATA or a server failure; stop at the first answer, or when no
/// server replies at all.
pub fn lookup(config: &ResolverConfig, name: &str, rtype: RecordType) -> Result<Lookup, String> {
    lookup_with(config, name, rtype, |_| {})
}

/// [`lookup`], telling `on_event` about every exchange (`nslookup -debug` prints them).
pub fn lookup_with(
    config: &ResolverConfig,
    name: &str,
    rtype: RecordType,
    mut on_event: impl FnMut(QueryEvent<'_>),
) -> Result<Lookup, String> {
    let mut tried = Vec::new();
    let mut nodata = None;
    let mut servfail = None;
    for candidate in candidate_names(name, &config.search, config.ndots) {
        let qname = parse_name(&candidate)?;
        tried.push(candidate);
        let query = build_query(qname, rtype, config.edns);
        let reply = match query_servers(config, &query, &mut on_event) {
            Ok(reply) => reply,
            Err(unreachable) => {
                return Ok(Lookup {
                    tried,
                    outcome: Outcome::Unreachable(unreachable),
                });
            }
        };
        match reply.response.metadata.response_code {
            ResponseCode::NoError => {
                if reply
                    .response
                    .answers
                    .iter()
                    .any(|r| r.record_type() == rtype)
                {
                    return Ok(Lookup {
                        tried,
                        outcome: Outcome::Answer(reply),
                    });
                }
                nodata = Some(reply);
            }
            ResponseCode::NXDomain => {}
            _ => servfail = Some(reply),
        }
    }
    let outcome = match (nodata, servfail) {
        (Some(reply), _) => Outcome::NoData(reply),
        (None, Some(reply)) => Outcome::ServerFailure(reply),
        (None, None) => Outcome::NxDomain,
    };
    Ok(Lookup { tried, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.96.0.1".parse().unwrap()),
            "1.0.96.10.in-addr.arpa."
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(parse_name("example.test").unwrap().is_fqdn());
        let long = "a".repeat(64);
        let err = parse_name(&long).unwrap_err();
        assert!(err.contains("not a valid domain name"), "{err}");
    }

    #[test]
    fn nobody_listening_is_reported_not_panicked() {
        // A UDP port on loopback that nothing listens on: refused or timed out, either way an error.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        drop(socket);
        let config = ResolverConfig {
            servers: vec![addr],
            search: vec![],
            ndots: 1,
            timeout: Duration::from_millis(200),
            attempts: 1,
            tcp: false,
            edns: false,
        };
        let result = lookup(&config, "x.test.", RecordType::A).unwrap();
        assert!(matches!(result.outcome, Outcome::Unreachable(ref u) if u.errors.len() == 1));
    }
}

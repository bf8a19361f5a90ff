//! The request as plugins see it, a plugin's reply, and the helpers that shape replies on the
//! wire: echoing the question and OPT record, and truncating to the client's size the way
//! miekg/dns does (coredns request/request.go).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use minikind_dns_log::Proto;

use crate::pkg::wire::WireEntry;

/// A query being served.
#[derive(Debug, Clone)]
pub struct Request {
    pub msg: Message,
    /// The question name as the client wrote it (answers keep this spelling).
    pub qname: Name,
    /// Lower-case text form with the final dot, used for every lookup.
    pub qname_lc: String,
    pub qtype: RecordType,
    pub qclass: DNSClass,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub proto: Proto,
    /// Size of the query on the wire.
    pub size: usize,
    pub do_bit: bool,
    /// The client's advertised UDP size (512 without EDNS).
    pub bufsize: u16,
    /// How many internal re-queries (CNAME chasing) led to this one.
    pub depth: u8,
}

impl Request {
    /// Builds a request from a parsed query; None if it has not exactly one question.
    pub fn new(
        msg: Message,
        client: SocketAddr,
        local: SocketAddr,
        proto: Proto,
        size: usize,
    ) -> Option<Self> {
        if msg.queries.len() != 1 {
            return None;
        }
        let q = &msg.queries[0];
        let qname = q.name.clone();
        let qname_lc = lower_fqdn(&qname);
        let (do_bit, bufsize) = match &msg.edns {
            Some(e) => (e.flags().dnssec_ok, e.max_payload().max(512)),
            None => (false, 512),
        };
        Some(Request {
            qtype: q.query_type,
            qclass: q.query_class,
            qname,
            qname_lc,
            msg,
            client,
            local,
            proto,
            size,
            do_bit,
            bufsize,
            depth: 0,
        })
    }

    /// A new internal request for another name/type (used to chase CNAME targets).
    pub fn derived(&self, name: Name, qtype: RecordType) -> Self {
        let mut msg = Message::new(self.msg.metadata.id, MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(hickory_proto::op::Query::query(name.clone(), qtype));
        let qname_lc = lower_fqdn(&name);
        Request {
            msg,
            qname: name,
            qname_lc,
            qtype,
            depth: self.depth + 1,
            ..self.clone_meta()
        }
    }

    fn clone_meta(&self) -> Self {
        Request {
            msg: Message::new(0, MessageType::Query, OpCode::Query),
            qname: Name::root(),
            qname_lc: ".".into(),
            qtype: self.qtype,
            qclass: self.qclass,
            client: self.client,
            local: self.local,
            proto: self.proto,
            size: self.size,
            do_bit: self.do_bit,
            bufsize: self.bufsize,
            depth: self.depth,
        }
    }

    /// An empty reply to this request: same id, opcode, RD and CD, question echoed.
    pub fn reply(&self) -> Message {
        let mut m = Message::response(self.msg.metadata.id, self.msg.metadata.op_code);
        m.metadata.recursion_desired = self.msg.metadata.recursion_desired;
        m.metadata.checking_disabled = self.msg.metadata.checking_disabled;
        m.queries = self.msg.queries.clone();
        m
    }

    pub fn reply_rcode(&self, rcode: ResponseCode) -> Message {
        let mut m = self.reply();
        m.metadata.response_code = rcode;
        m
    }
}

/// A plugin's answer, with who wrote it (the `plugin` label of the responses metric) and the
/// error the `errors` plugin logs.
#[derive(Debug)]
pub struct Reply {
    /// The reply; for a cache hit only its header (rcode), the full reply being in `wire`.
    pub msg: Message,
    pub plugin: &'static str,
    pub error: Option<String>,
    /// A reply already on the wire (cache hits), without OPT record.
    pub wire: Option<Vec<u8>>,
    /// `msg` already encoded as the cache stores it (the `kubernetes` plugin's kept answers),
    /// so storing it takes no second encoding.
    pub encoded: Option<Arc<WireEntry>>,
}

impl Reply {
    pub fn new(msg: Message, plugin: &'static str) -> Self {
        Reply {
            msg,
            plugin,
            error: None,
            wire: None,
            encoded: None,
        }
    }
    pub fn err(msg: Message, plugin: &'static str, error: String) -> Self {
        Reply {
            msg,
            plugin,
            error: Some(error),
            wire: None,
            encoded: None,
        }
    }
    /// A cache hit: the bytes, and the rcode for metrics.
    pub fn cached(req: &Request, wire: Vec<u8>, rcode: u8) -> Self {
        // Only the header matters here (metrics read the rcode); no question copy.
        let mut msg = Message::response(req.msg.metadata.id, req.msg.metadata.op_code);
        msg.metadata.response_code = ResponseCode::from_low(rcode);
        Reply {
            msg,
            plugin: "cache",
            error: None,
            wire: Some(wire),
            encoded: None,
        }
    }
    /// The full message (decoding a wire reply).
    pub fn message(&self) -> Message {
        match &self.wire {
            Some(w) => Message::from_vec(w).unwrap_or_else(|_| self.msg.clone()),
            None => self.msg.clone(),
        }
    }
}

/// Decodes a query packet into a request; None if it does not parse or has not exactly one
/// question.
pub fn decode_request(
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Option<Request> {
    let msg = Message::from_vec(buf).ok()?;
    Request::new(msg, client, local, proto, buf.len())
}

/// The lower-case presentation form of a name with its final dot.
pub fn lower_fqdn(name: &Name) -> String {
    let mut s = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        for &b in label {
            match b {
                b'.' => s.push_str("\\."),
                b'!'..=b'~' => s.push(b.to_ascii_lowercase() as char),
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        s.push('.');
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// True if `name` (lower-case fqdn) is `zone` or below it.
pub fn in_zone(name: &str, zone: &str) -> bool {
    if zone == "." {
        return true;
    }
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// Readies a reply for the wire: matches it to the request (id, question spelling), echoes an
/// OPT record when the query had one, and truncates to what the client accepts.
pub fn finalize(req: &Request, mut m: Message) -> Vec<u8> {
    m.metadata.id = req.msg.metadata.id;
    m.metadata.message_type = MessageType::Response;
    m.metadata.op_code = req.msg.metadata.op_code;
    m.metadata.recursion_desired = req.msg.metadata.recursion_desired;
    m.queries = req.msg.queries.clone();
    m.edns = req.msg.edns.as_ref().map(|_| {
        let mut e = Edns::new();
        e.set_max_payload(req.bufsize);
        e.set_dnssec_ok(req.do_bit);
        e
    });
    let limit = match req.proto {
        Proto::Tcp => 65535,
        Proto::Udp => req.bufsize.max(512) as usize,
    };
    encode_truncated(m, limit)
}

/// Readies a reply that is already on the wire (a cache hit): appends the OPT record when the
/// query had one; one that does not fit the client goes through [`finalize`]'s truncation.
pub fn finalize_wire(req: &Request, mut w: Vec<u8>) -> Vec<u8> {
    if req.msg.edns.is_some() && w.len() >= 12 {
        let ar = u16::from_be_bytes([w[10], w[11]]).saturating_add(1);
        w[10..12].copy_from_slice(&ar.to_be_bytes());
        // root name, type OPT, class = UDP size, TTL = ext-rcode/version/DO, no data.
        w.push(0);
        w.extend_from_slice(&41u16.to_be_bytes());
        w.extend_from_slice(&req.bufsize.to_be_bytes());
        w.extend_from_slice(&[0, 0, if req.do_bit { 0x80 } else { 0 }, 0]);
        w.extend_from_slice(&[0, 0]);
    }
    let limit = match req.proto {
        Proto::Tcp => 65535,
        Proto::Udp => req.bufsize.max(512) as usize,
    };
    if w.len() <= limit {
        return w;
    }
    match Message::from_vec(&w) {
        Ok(m) => finalize(req, m),
        Err(_) => encode(&req.reply_rcode(ResponseCode::ServFail)),
    }
}

/// Encodes `m`, removing records from the end (additional, then authority, then answer) until
/// it fits in `limit` bytes; TC is set when anything was removed.
pub fn encode_truncated(mut m: Message, limit: usize) -> Vec<u8> {
    let full = encode(&m);
    if full.len() <= limit {
        return full;
    }
    let (na, nn, nx) = (m.answers.len(), m.authorities.len(), m.additionals.len());
    let total = na + nn + nx;
    let all: Vec<_> = m
        .answers
        .drain(..)
        .chain(m.authorities.drain(..))
        .chain(m.additionals.drain(..))
        .collect();
    let build = |k: usize| {
        let mut t = m.clone();
        for (i, r) in all.iter().take(k).enumerate() {
            if i < na {
                t.answers.push(r.clone());
            } else if i < na + nn {
                t.authorities.push(r.clone());
            } else {
                t.additionals.push(r.clone());
            }
        }
        t.metadata.truncation = true;
        t
    };
    // Largest prefix of records that fits.
    let (mut lo, mut hi) = (0usize, total);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if encode(&build(mid)).len() <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let out = encode(&build(lo));
    if out.len() <= limit {
        return out;
    }
    // Even the bare header and question do not fit (tiny limit): send without the OPT record.
    let mut t = build(0);
    t.edns = None;
    encode(&t)
}

/// Encodes a message; a record that cannot be encoded turns the reply into SERVFAIL rather
/// than failing the send.
pub fn encode(m: &Message) -> Vec<u8> {
    match m.to_vec() {
        Ok(v) => v,
        Err(_) => {
            let mut e = Message::response(m.metadata.id, m.metadata.op_code);
            e.metadata.response_code = ResponseCode::ServFail;
            e.metadata.recursion_desired = m.metadata.recursion_desired;
            e.queries = m.queries.clone();
            e.to_vec().unwrap_or_else(|_| {
                let mut h = vec![0u8; 12];
                h[..2].copy_from_slice(&m.metadata.id.to_be_bytes());
                h[2] = 0x80;
                h[3] = 2;
                h
            })
        }
    }
}

/// The reply to a packet that could not be parsed: the header's id and opcode with FORMERR and
/// no question. None when not even a header is there or it is itself a response (dropped).
pub fn formerr_for(buf: &[u8]) -> Option<Vec<u8>> {
    header_reply(buf, 1)
}

/// A header-only SERVFAIL for a query whose handling failed unexpectedly.
pub fn servfail_for(buf: &[u8]) -> Option<Vec<u8>> {
    header_reply(buf, 2)
}

fn header_reply(buf: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if buf.len() < 12 || buf[2] & 0x80 != 0 {
        return None;
    }
    let mut h = vec![0u8; 12];
    h[0] = buf[0];
    h[1] = buf[1];
    // QR set, opcode copied, RD copied.
    h[2] = 0x80 | (buf[2] & 0x78) | (buf[2] & 0x01);
    h[3] = rcode;
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{RData, Record, rdata::A};

    #[test]
    fn zone_membership() {
        assert!(in_zone("a.cluster.local.", "cluster.local."));
        assert!(in_zone("cluster.local.", "cluster.local."));
        assert!(!in_zone("acluster.local.", "cluster.local."));
        assert!(in_zone("anything.", "."));
    }

    #[test]
    fn lower_fqdn_keeps_escapes() {
        let n = Name::from_ascii("FoO.Bar.").unwrap();
        assert_eq!(lower_fqdn(&n), "foo.bar.");
        assert_eq!(lower_fqdn(&Name::root()), ".");
    }

    #[test]
    fn truncation_keeps_a_prefix_and_sets_tc() {
        let mut m = Message::response(7, OpCode::Query);
        let n = Name::from_ascii("a-rather-long-name-to-fill-the-packet.example.org.").unwrap();
        m.add_query(hickory_proto::op::Query::query(n.clone(), RecordType::A));
        for i in 0..100u8 {
            m.add_answer(Record::from_rdata(
                n.clone(),
                5,
                RData::A(A::new(10, 0, 0, i)),
            ));
        }
        let out = encode_truncated(m, 512);
        assert!(out.len() <= 512);
        let back = Message::from_vec(&out).unwrap();
        assert!(back.metadata.truncation);
        assert!(!back.answers.is_empty() && back.answers.len() < 100);
    }

    #[test]
    fn formerr_header() {
        assert_eq!(formerr_for(&[1, 2]), None);
        let r = formerr_for(&[0xab, 0xcd, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(&r[..4], &[0xab, 0xcd, 0x81, 0x01]);
        assert_eq!(formerr_for(&[0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}

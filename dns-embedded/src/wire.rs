//! Wire-level helpers shared by both servers: the response header as read from raw
//! bytes (forwarded replies are passed on untouched, so logging reads their header directly),
//! size limits and truncation.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use minikind_dns_log::{Flags, Proto};

/// Maximum DNS message size over TCP (two-byte length prefix).
pub const TCP_MAX: usize = 65535;
/// The classic UDP limit without EDNS (RFC 1035).
pub const UDP_MIN: usize = 512;

/// The largest reply a client accepts: 65535 on TCP; on UDP its EDNS size, never below 512.
pub fn reply_limit(request: &Message, proto: Proto) -> usize {
    match proto {
        Proto::Tcp => TCP_MAX,
        Proto::Udp => request
            .edns
            .as_ref()
            .map(|e| usize::from(e.max_payload()))
            .unwrap_or(UDP_MIN)
            .max(UDP_MIN),
    }
}

/// Header fields of a reply, read from its first 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    pub id: u16,
    pub flags_hi: u8,
    pub flags_lo: u8,
}

impl ResponseHeader {
    /// Reads the header; `None` when the buffer is shorter than a DNS header.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 12 {
            return None;
        }
        Some(Self {
            id: u16::from_be_bytes([bytes[0], bytes[1]]),
            flags_hi: bytes[2],
            flags_lo: bytes[3],
        })
    }

    pub fn rcode(&self) -> u8 {
        self.flags_lo & 0x0f
    }

    pub fn truncated(&self) -> bool {
        self.flags_hi & 0x02 != 0
    }

    pub fn authoritative(&self) -> bool {
        self.flags_hi & 0x04 != 0
    }

    /// The rcode as CoreDNS prints it.
    pub fn rcode_name(&self) -> String {
        minikind_dns_log::rcode_name(self.rcode().into()).into_owned()
    }

    /// The header flags in CoreDNS's order: `qr,aa,tc,rd,ra,z,ad,cd`.
    pub fn flags_string(&self) -> String {
        Flags::from_header(self.flags_hi, self.flags_lo).to_string()
    }
}

/// Errors turning a reply into bytes.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("encoding the DNS reply failed: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
}

/// Whether names in a reply are compressed (RFC 1035 4.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    Compressed,
    /// Every name written in full, as Docker's resolver writes its own answers (its DNS
    /// library leaves compression off unless asked), which decides how many fit in 512 bytes.
    Uncompressed,
}

/// Encodes `msg` with or without name compression.
pub fn encode(msg: &Message, names: Names) -> Result<Vec<u8>, WireError> {
    match names {
        Names::Compressed => Ok(msg.to_vec()?),
        Names::Uncompressed => {
            let mut buf = Vec::with_capacity(512);
            let mut encoder = BinEncoder::new(&mut buf);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            msg.emit(&mut encoder)?;
            Ok(buf)
        }
    }
}

/// Encodes `msg`, dropping records from the end (additional, then authority, then answer) until
/// it fits in `limit` bytes. When anything had to go and `set_tc` is true the TC bit is set so
/// the client retries over TCP; over TCP nothing is flagged, the reply is just cut (as Docker's
/// resolver does).
pub fn encode_within(
    msg: &mut Message,
    limit: usize,
    set_tc: bool,
    names: Names,
) -> Result<Vec<u8>, WireError> {
    let bytes = encode(msg, names)?;
    if bytes.len() <= limit {
        return Ok(bytes);
    }
    if set_tc {
        msg.metadata.truncation = true;
    }
    loop {
        let removed = msg.additionals.pop().is_some()
            || msg.authorities.pop().is_some()
            || msg.answers.pop().is_some();
        let bytes = encode(msg, names)?;
        if bytes.len() <= limit || !removed {
            return Ok(bytes);
        }
    }
}

/// A reply with only a header and the question, e.g. SERVFAIL or REFUSED.
pub fn error_reply(request: &Message, rcode: ResponseCode, recursion_available: bool) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = recursion_available;
    reply.metadata.checking_disabled = request.metadata.checking_disabled;
    reply.metadata.response_code = rcode;
    reply.add_queries(request.queries.iter().cloned());
    reply
}

/// A FORMERR for a packet whose header could be read but whose body could not: only the id
/// and opcode bits are echoed.
pub fn formerr_from_raw(raw: &[u8]) -> Option<Vec<u8>> {
    let header = ResponseHeader::parse(raw)?;
    if header.flags_hi & 0x80 != 0 {
        // A response sent to us: never answer it (that is how reflection loops start).
        return None;
    }
    let mut out = vec![0u8; 12];
    out[0..2].copy_from_slice(&header.id.to_be_bytes());
    out[2] = 0x80 | (header.flags_hi & 0x79); // qr + opcode + rd
    out[3] = 1; // FORMERR
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::Ipv4Addr;

    fn query(edns: Option<u16>) -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(
            Name::from_ascii("many.example.test.").unwrap(),
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
    fn limits_follow_transport_and_edns() {
        assert_eq!(reply_limit(&query(None), Proto::Udp), 512);
        assert_eq!(reply_limit(&query(Some(4096)), Proto::Udp), 4096);
        // An EDNS size below 512 is treated as 512 (RFC 6891).
        assert_eq!(reply_limit(&query(Some(100)), Proto::Udp), 512);
        assert_eq!(reply_limit(&query(Some(4096)), Proto::Tcp), 65535);
    }

    #[test]
    fn oversize_reply_is_cut_and_flagged() {
        let req = query(None);
        let mut reply = error_reply(&req, ResponseCode::NoError, true);
        let name = Name::from_ascii("many.example.test.").unwrap();
        for i in 0..100u8 {
            reply.add_answer(Record::from_rdata(
                name.clone(),
                600,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
            ));
        }
        let bytes = encode_within(&mut reply.clone(), 512, true, Names::Compressed).unwrap();
        assert!(bytes.len() <= 512, "{}", bytes.len());
        let decoded = Message::from_vec(&bytes).unwrap();
        assert!(decoded.metadata.truncation);
        assert!(!decoded.answers.is_empty() && decoded.answers.len() < 100);

        let tcp = encode_within(&mut reply.clone(), 1000, false, Names::Compressed).unwrap();
        let decoded = Message::from_vec(&tcp).unwrap();
        assert!(!decoded.metadata.truncation);
        assert!(tcp.len() <= 1000);
    }

    #[test]
    fn uncompressed_names_take_docker_sizes() {
        // Docker 20.10's reply to `A mk-h3-golden.` with one address is 58 bytes: 12 header,
        // 18 question, 28 answer with the owner name written in full.
        let mut req = Message::query();
        req.add_query(Query::query(
            Name::from_ascii("mk-h3-golden.").unwrap(),
            RecordType::A,
        ));
        let mut reply = error_reply(&req, ResponseCode::NoError, true);
        reply.add_answer(Record::from_rdata(
            Name::from_ascii("mk-h3-golden.").unwrap(),
            600,
            RData::A(A(Ipv4Addr::new(172, 31, 0, 2))),
        ));
        assert_eq!(encode(&reply, Names::Uncompressed).unwrap().len(), 58);
        assert_eq!(encode(&reply, Names::Compressed).unwrap().len(), 46);
        let decoded = Message::from_vec(&encode(&reply, Names::Uncompressed).unwrap()).unwrap();
        assert_eq!(decoded.answers, reply.answers);
    }

    #[test]
    fn header_flags_and_rcode() {
        let h = ResponseHeader::parse(&[0, 7, 0x87, 0x85, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(h.id, 7);
        assert_eq!(h.flags_string(), "qr,aa,tc,rd,ra");
        assert_eq!(h.rcode_name(), "REFUSED");
        assert!(ResponseHeader::parse(&[0; 11]).is_none());
    }

    #[test]
    fn formerr_echoes_id_and_ignores_responses() {
        let q = [0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0xde];
        let r = formerr_from_raw(&q).unwrap();
        assert_eq!(&r[0..4], &[0x12, 0x34, 0x81, 0x01]);
        let mut resp = q;
        resp[2] |= 0x80;
        assert!(formerr_from_raw(&resp).is_none());
        assert!(formerr_from_raw(&[1, 2, 3]).is_none());
    }
}

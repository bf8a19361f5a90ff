//! The common query answered straight from the wire: one question of class IN, no records but
//! perhaps a bare OPT, a name of plain labels. When the answer is one the server already holds
//! on the wire (a cache hit, or a `kubernetes` answer kept until the data changes) it is copied
//! with the asker's id, flags and spelling, without decoding the query into a message.
//!
//! Nothing here decides an answer: the bytes come from what the general path produced for the
//! same question, and anything else (another shape, a block with `log`, a miss) goes to the
//! general path, which gives the same result it always did.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use minikind_dns_log::Proto;

use crate::chain::Block;
use crate::dnsmsg::finalize_wire;
use crate::pkg::wire::WireEntry;
use crate::plugins::cache::{Asker, Hit};
use crate::plugins::prometheus::{Asked, record_metrics};
use crate::query::{Step, prepare_decoded};
use crate::zones::ZoneTable;

/// A query in the common shape, as read from the wire.
#[derive(Debug, PartialEq, Eq)]
pub struct WireQuery<'a> {
    pub id: u16,
    pub rd: bool,
    pub cd: bool,
    /// The question name's labels as sent (no compression).
    pub qname_wire: &'a [u8],
    pub qtype: u16,
    /// From a bare OPT record: the UDP size to advertise back (at least 512) and the DO bit.
    pub edns: Option<(u16, bool)>,
}

/// Reads `buf` if it is a query of the common shape, writing the lower-case name with its final
/// dot into `lc` (returning its length); None for any other packet.
pub fn parse<'a>(buf: &'a [u8], lc: &mut [u8; 256]) -> Option<(WireQuery<'a>, usize)> {
    if buf.len() < 17 {
        return None;
    }
    // QR clear, opcode QUERY.
    if buf[2] & 0xf8 != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut i = 12;
    let mut n = 0;
    loop {
        let len = *buf.get(i)? as usize;
        if len == 0 {
            break;
        }
        // Compression pointers and the reserved label types are left to the general path.
        if len > 63 {
            return None;
        }
        let label = buf.get(i + 1..i + 1 + len)?;
        if n + len + 1 > 255 {
            return None;
        }
        for &b in label {
            // Bytes the presentation form would escape are left to the general path.
            if !(b'!'..=b'~').contains(&b) || b == b'.' {
                return None;
            }
            lc[n] = b.to_ascii_lowercase();
            n += 1;
        }
        lc[n] = b'.';
        n += 1;
        i += 1 + len;
    }
    let qname_wire = &buf[12..=i];
    if n == 0 {
        lc[0] = b'.';
        n = 1;
    }
    i += 1;
    let qtype = u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*buf.get(i + 2)?, *buf.get(i + 3)?]);
    if qclass != 1 {
        return None;
    }
    i += 4;
    let mut edns = None;
    if ar == 1 {
        // Root owner, type OPT, class = UDP size, TTL = extended rcode, version, flags; no
        // options (the general path reads those).
        let opt = buf.get(i..i + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[6] != 0 || opt[9..11] != [0, 0] {
            return None;
        }
        let size = u16::from_be_bytes([opt[3], opt[4]]).max(512);
        edns = Some((size, opt[7] & 0x80 != 0));
        i += 11;
    }
    if i != buf.len() {
        return None;
    }
    Some((
        WireQuery {
            id: u16::from_be_bytes([buf[0], buf[1]]),
            rd: buf[2] & 0x01 != 0,
            cd: buf[3] & 0x10 != 0,
            qname_wire,
            qtype,
            edns,
        },
        n,
    ))
}

/// Serves `buf` from answers already on the wire; None when the general path must decide.
pub fn serve(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Option<Step> {
    let mut lc = [0u8; 256];
    let (q, n) = parse(buf, &mut lc)?;
    let qname_lc = std::str::from_utf8(&lc[..n]).ok()?;
    let (zone, block) = table.select(qname_lc)?;
    // The log line shows the whole reply: that takes the general path anyway.
    if block.log.is_some() {
        return None;
    }
    let started = block.prometheus.is_some().then(Instant::now);
    let asker = Asker {
        id: q.id,
        rd: q.rd,
        cd: q.cd,
        qname_wire: q.qname_wire,
    };
    let balance = block.loadbalance.is_some();
    let do_bit = q.edns.is_some_and(|e| e.1);
    let (wire, rcode, plugin) = match block.cache.as_ref().filter(|c| c.applies_to(qname_lc)) {
        Some(cache) => {
            let key = cache.key_of(qname_lc, q.qtype, do_bit, q.cd);
            match cache.get_key(key, &asker, balance) {
                Some(Hit::Fresh(w, rc, prefetch)) => {
                    if prefetch {
                        cache.count_prefetch();
                        refresh(table, block, buf, client, local, proto);
                    }
                    (w, rc, "cache")
                }
                Some(Hit::Stale(w, rc)) => {
                    refresh(table, block, buf, client, local, proto);
                    (w, rc, "cache")
                }
                None => match memoized(block, qname_lc, &q) {
                    Some(e) => {
                        let w = cache
                            .put_entry(key, e.clone(), &asker, balance)
                            .unwrap_or_else(|| fresh_copy(&asker, &e, balance));
                        (w, e.rcode(), "kubernetes")
                    }
                    // The miss is counted: the general path goes on after the cache.
                    None => return Some(prepare_decoded(table, buf, client, local, proto, false)),
                },
            }
        }
        None => {
            let e = memoized(block, qname_lc, &q)?;
            (fresh_copy(&asker, &e, balance), e.rcode(), "kubernetes")
        }
    };
    let out = finish(&q, wire, buf, client, local, proto)?;
    if let Some(started) = started {
        let asked = Asked {
            client,
            proto,
            qtype: RecordType::from(q.qtype),
            size: buf.len(),
        };
        let rcode = ResponseCode::from_low(rcode);
        record_metrics(
            &block.server,
            zone,
            &asked,
            rcode,
            plugin,
            out.len(),
            started.elapsed(),
        );
    }
    Some(Step::Done(out))
}

/// A kept `kubernetes` answer, when nothing before it in the chain (hosts) could answer first.
fn memoized(block: &Block, qname_lc: &str, q: &WireQuery) -> Option<Arc<WireEntry>> {
    if block.hosts.is_some() {
        return None;
    }
    let k = block.kubernetes.as_ref()?;
    k.zone_for(qname_lc)?;
    k.memoized(q.qname_wire, q.qtype)
}

/// A plugin's answer as it would leave the chain uncached (its own TTLs and AA flag).
fn fresh_copy(asker: &Asker, e: &WireEntry, balance: bool) -> Vec<u8> {
    e.reply(
        asker.id,
        asker.rd,
        asker.cd,
        false,
        asker.qname_wire,
        u32::MAX,
        balance,
    )
}

/// Echoes the OPT record; a reply too large for the client is truncated by the general code.
fn finish(
    q: &WireQuery,
    mut w: Vec<u8>,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Option<Vec<u8>> {
    let limit = match (proto, q.edns) {
        (Proto::Tcp, _) => 65535,
        (Proto::Udp, Some((size, _))) => size as usize,
        (Proto::Udp, None) => 512,
    };
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    if w.len() + opt_len > limit || w.len() < 12 {
        let req = crate::dnsmsg::decode_request(buf, client, local, proto)?;
        return Some(finalize_wire(&req, w));
    }
    if let Some((size, do_bit)) = q.edns {
        let ar = u16::from_be_bytes([w[10], w[11]]).saturating_add(1);
        w[10..12].copy_from_slice(&ar.to_be_bytes());
        w.extend_from_slice(&[0, 0, 41]);
        w.extend_from_slice(&size.to_be_bytes());
        w.extend_from_slice(&[0, 0, if do_bit { 0x80 } else { 0 }, 0, 0, 0]);
    }
    Some(w)
}

/// Starts the background refresh of a cached answer (prefetch, serve_stale), which needs the
/// decoded request.
fn refresh(
    table: &ZoneTable,
    block: &Arc<Block>,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) {
    if let Some(req) = crate::dnsmsg::decode_request(buf, client, local, proto) {
        block.refresh(&req, &table.display);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnsmsg::Request;
    use hickory_proto::op::{Edns, Message, Query};
    use hickory_proto::rr::Name;

    fn wire(name: &str, qtype: RecordType, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some((size, d)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(d);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// Whatever the fast parser accepts, hickory reads the same way.
    fn agrees(buf: &[u8]) {
        let mut lc = [0u8; 256];
        let Some((q, n)) = parse(buf, &mut lc) else {
            return;
        };
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let m = Message::from_vec(buf).expect("hickory reads what the fast path reads");
        let req = Request::new(m, client, client, Proto::Udp, buf.len()).unwrap();
        assert_eq!(std::str::from_utf8(&lc[..n]).unwrap(), req.qname_lc);
        assert_eq!(q.qtype, u16::from(req.qtype));
        assert_eq!(q.id, req.msg.metadata.id);
        assert_eq!(q.rd, req.msg.metadata.recursion_desired);
        assert_eq!(q.cd, req.msg.metadata.checking_disabled);
        assert_eq!(q.edns.is_some(), req.msg.edns.is_some());
        if let Some((size, d)) = q.edns {
            assert_eq!((size, d), (req.bufsize, req.do_bit));
        }
        let mut spelled = Vec::new();
        crate::pkg::wire::name_wire(&req.qname, &mut spelled);
        assert_eq!(q.qname_wire, &spelled[..]);
    }

    #[test]
    fn reads_the_common_shape_like_hickory() {
        for (name, t, e) in [
            ("web.default.svc.cluster.local.", RecordType::A, None),
            (
                "WeB.DeFault.svc.cluster.local.",
                RecordType::AAAA,
                Some((1232, true)),
            ),
            ("x.", RecordType::SRV, Some((100, false))),
            (".", RecordType::NS, None),
            ("a-b_c.example.", RecordType::Unknown(65000), None),
        ] {
            let buf = wire(name, t, e);
            let mut lc = [0u8; 256];
            assert!(parse(&buf, &mut lc).is_some(), "{name}");
            agrees(&buf);
        }
        let mut lc = [0u8; 256];
        let buf = wire("WeB.X.", RecordType::A, Some((100, true)));
        let (q, n) = parse(&buf, &mut lc).unwrap();
        assert_eq!(&lc[..n], b"web.x.");
        assert_eq!(q.edns, Some((512, true)), "the size is at least 512");
    }

    #[test]
    fn leaves_every_other_shape_to_the_general_path() {
        let mut lc = [0u8; 256];
        let base = wire("web.example.", RecordType::A, None);
        // A response, another opcode, two questions, an answer record.
        for (at, v) in [(2usize, 0x81u8), (2, 0x28), (5, 2), (7, 1)] {
            let mut b = base.clone();
            b[at] = v;
            assert!(parse(&b, &mut lc).is_none(), "byte {at} = {v}");
        }
        // Class CH.
        let mut b = base.clone();
        let n = b.len();
        b[n - 1] = 3;
        assert!(parse(&b, &mut lc).is_none());
        // Trailing bytes, a truncated question.
        let mut b = base.clone();
        b.push(0);
        assert!(parse(&b, &mut lc).is_none());
        assert!(parse(&base[..base.len() - 1], &mut lc).is_none());
        // A compression pointer as the name.
        let mut b = base[..12].to_vec();
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(parse(&b, &mut lc).is_none());
        // A label with a dot or a space in it.
        for bad in [b'.', b' ', 0x80] {
            let mut b = base.clone();
            b[13] = bad;
            assert!(parse(&b, &mut lc).is_none(), "{bad}");
        }
        // EDNS version 1, an OPT with options, a TSIG-like record.
        let e = wire("web.example.", RecordType::A, Some((1232, false)));
        let mut b = e.clone();
        let n = b.len();
        b[n - 5] = 1;
        assert!(parse(&b, &mut lc).is_none());
        let mut b = e.clone();
        let n = b.len();
        b[n - 1] = 4;
        b.extend_from_slice(&[0, 10, 0, 0]);
        assert!(parse(&b, &mut lc).is_none());
        let mut b = e.clone();
        let n = b.len();
        b[n - 9] = 250;
        assert!(parse(&b, &mut lc).is_none());
    }

    #[test]
    fn random_packets_agree_with_hickory() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let base = wire("ab.cd.", RecordType::A, Some((1232, true)));
        for _ in 0..20000 {
            let mut b = base.clone();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            agrees(&b);
        }
    }
}

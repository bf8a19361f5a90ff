//! Replies kept in wire format (the cache's entries, the `kubernetes` plugin's kept answers): a
//! few dozen bytes each instead of a decoded message, and a hit is a copy with the id, question
//! spelling and TTLs patched in place.

use rand::seq::SliceRandom;

/// A reply encoded once, with where its TTLs and address records are.
#[derive(Debug)]
pub struct WireEntry {
    pub wire: Box<[u8]>,
    /// Offsets of every record's TTL field.
    ttl_offsets: Box<[u16]>,
    /// Byte ranges of the answer section's A/AAAA records when they all have the same length
    /// (so loadbalance can permute them in place).
    addr_rrs: Box<[(u16, u16)]>,
    /// Length of the question name on the wire (to respell it like the asker).
    qname_len: u16,
    /// What the cache decides on (read once from the records).
    pub meta: Meta,
}

/// The facts about a reply that decide whether and for how long the cache keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub rcode: u8,
    pub truncated: bool,
    pub answers: u16,
    pub soa_in_authority: bool,
    pub ns_in_authority: bool,
    /// Smallest TTL over the answer and authority records (None without records).
    pub min_ttl: Option<u32>,
    /// Smallest min(TTL, MINIMUM) over the authority SOA records.
    pub soa_min_ttl: Option<u32>,
}

fn skip_name(w: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *w.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
}

impl WireEntry {
    /// Indexes an encoded reply (one question, no OPT); None if it does not parse.
    pub fn new(wire: Vec<u8>) -> Option<WireEntry> {
        if wire.len() < 12 || wire.len() > u16::MAX as usize {
            return None;
        }
        let count = |i: usize| u16::from_be_bytes([wire[i], wire[i + 1]]) as usize;
        let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
        if qd != 1 {
            return None;
        }
        let qend = skip_name(&wire, 12)?;
        let qname_len = (qend - 12) as u16;
        let mut i = qend + 4;
        let mut ttl_offsets = Vec::with_capacity(an + ns + ar);
        let mut addr: Vec<(u16, u16)> = Vec::new();
        let mut meta = Meta {
            rcode: wire[3] & 0x0f,
            truncated: wire[2] & 0x02 != 0,
            answers: an as u16,
            soa_in_authority: false,
            ns_in_authority: false,
            min_ttl: None,
            soa_min_ttl: None,
        };
        let min = |a: Option<u32>, b: u32| Some(a.map_or(b, |a| a.min(b)));
        for n in 0..an + ns + ar {
            let start = i;
            i = skip_name(&wire, i)?;
            if i + 10 > wire.len() {
                return None;
            }
            let rtype = u16::from_be_bytes([wire[i], wire[i + 1]]);
            let ttl = u32::from_be_bytes([wire[i + 4], wire[i + 5], wire[i + 6], wire[i + 7]]);
            ttl_offsets.push((i + 4) as u16);
            let rdlen = u16::from_be_bytes([wire[i + 8], wire[i + 9]]) as usize;
            i += 10 + rdlen;
            if i > wire.len() {
                return None;
            }
            if n < an && (rtype == 1 || rtype == 28) {
                addr.push((start as u16, (i - start) as u16));
            }
            if n < an + ns {
                meta.min_ttl = min(meta.min_ttl, ttl);
            }
            if n >= an && n < an + ns {
                match rtype {
                    // SOA: MINIMUM is the last field of its data.
                    6 if rdlen >= 20 => {
                        let m = u32::from_be_bytes([
                            wire[i - 4],
                            wire[i - 3],
                            wire[i - 2],
                            wire[i - 1],
                        ]);
                        meta.soa_in_authority = true;
                        meta.soa_min_ttl = min(meta.soa_min_ttl, ttl.min(m));
                    }
                    6 => meta.soa_in_authority = true,
                    2 => meta.ns_in_authority = true,
                    _ => {}
                }
            }
        }
        // Permuting is only safe for records of one size, back to back.
        let same = addr
            .windows(2)
            .all(|w| w[0].1 == w[1].1 && w[0].0 + w[0].1 == w[1].0);
        if !same || addr.len() < 2 {
            addr.clear();
        }
        Some(WireEntry {
            wire: wire.into_boxed_slice(),
            ttl_offsets: ttl_offsets.into_boxed_slice(),
            addr_rrs: addr.into_boxed_slice(),
            qname_len,
            meta,
        })
    }

    /// A copy for one asker: its id and RD/CD bits, AA set, TTLs at most `ttl`, the question
    /// (and every answer name compressed to it) spelled like the asker's `qname_wire`, and the
    /// address records shuffled when `balance`.
    /// `aa` sets AA (cache hits do, as CoreDNS; the first, stored reply keeps its own flag).
    #[allow(clippy::too_many_arguments)]
    pub fn reply(
        &self,
        id: u16,
        rd: bool,
        cd: bool,
        aa: bool,
        qname_wire: &[u8],
        ttl: u32,
        balance: bool,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len() + 11);
        out.extend_from_slice(&self.wire);
        out[0..2].copy_from_slice(&id.to_be_bytes());
        // QR (+ AA), keep opcode; RD from the asker.
        out[2] = (out[2] & !0x01) | 0x80 | if aa { 0x04 } else { 0 } | u8::from(rd);
        out[3] = (out[3] & !0x10) | if cd { 0x10 } else { 0 };
        if qname_wire.len() == self.qname_len as usize {
            out[12..12 + qname_wire.len()].copy_from_slice(qname_wire);
        }
        for &off in self.ttl_offsets.iter() {
            let o = off as usize;
            let old = u32::from_be_bytes([out[o], out[o + 1], out[o + 2], out[o + 3]]);
            out[o..o + 4].copy_from_slice(&old.min(ttl).to_be_bytes());
        }
        if balance && self.addr_rrs.len() > 1 {
            let mut order: Vec<usize> = (0..self.addr_rrs.len()).collect();
            order.shuffle(&mut rand::rng());
            let base = self.addr_rrs[0].0 as usize;
            let len = self.addr_rrs[0].1 as usize;
            for (slot, &from) in order.iter().enumerate() {
                let src = self.addr_rrs[from].0 as usize;
                out[base + slot * len..base + (slot + 1) * len]
                    .copy_from_slice(&self.wire[src..src + len]);
            }
            // Shuffled records keep their own (patched) TTLs: patch again over the copies.
            for &off in self.ttl_offsets.iter() {
                let o = off as usize;
                let old = u32::from_be_bytes([out[o], out[o + 1], out[o + 2], out[o + 3]]);
                out[o..o + 4].copy_from_slice(&old.min(ttl).to_be_bytes());
            }
        }
        out
    }

    pub fn rcode(&self) -> u8 {
        self.meta.rcode
    }
}

/// The wire form of a name's labels as the asker wrote them.
pub fn name_wire(name: &hickory_proto::rr::Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    #[test]
    fn patches_id_ttl_and_spelling() {
        let n = Name::from_ascii("web.example.org.").unwrap();
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(Query::query(n.clone(), RecordType::A));
        for i in 1..=3 {
            m.add_answer(Record::from_rdata(
                n.clone(),
                30,
                RData::A(A::new(10, 0, 0, i)),
            ));
        }
        let e = WireEntry::new(m.to_vec().unwrap()).unwrap();
        let mut q = Vec::new();
        name_wire(&Name::from_ascii("WEB.example.org.").unwrap(), &mut q);
        let out = e.reply(0xbeef, true, false, true, &q, 7, true);
        let back = Message::from_vec(&out).unwrap();
        assert_eq!(back.metadata.id, 0xbeef);
        assert!(back.metadata.authoritative && back.metadata.recursion_desired);
        assert_eq!(back.queries[0].name.to_ascii(), "WEB.example.org.");
        assert_eq!(back.answers.len(), 3);
        assert!(
            back.answers
                .iter()
                .all(|r| r.ttl == 7 && r.name.to_ascii() == "WEB.example.org.")
        );
        let mut ips: Vec<String> = back.answers.iter().map(|r| r.data.to_string()).collect();
        ips.sort();
        assert_eq!(ips, vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert!(WireEntry::new(vec![0; 5]).is_none());
    }
}

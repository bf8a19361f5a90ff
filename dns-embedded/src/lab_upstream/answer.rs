//! Answers from a [`Zone`]: exact matches, CNAME chains inside the zone, wildcards, NODATA and
//! NXDOMAIN with the SOA. The lab upstream stands in for the host's recursive resolver in a
//! world where only its zone exists: answers from the zone are authoritative (as a resolver's
//! local zone is, e.g. unbound's `local-data`), every reply offers recursion (RA), and a name
//! outside the zone is NXDOMAIN with the root's SOA — what a real resolver answers for
//! `abc.` or `abc.123.`, so the seeds' query logs read the same here.

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::zone::Zone;
use crate::wire::error_reply;

/// Longest CNAME chain followed inside the zone before giving up (loops end here too).
const MAX_CNAME_CHAIN: usize = 8;
/// The EDNS payload size the server advertises.
const SERVER_UDP_PAYLOAD: u16 = 1232;

/// Builds the reply to `request` from `zone`.
pub fn answer(zone: &Zone, request: &Message) -> Message {
    if request.metadata.op_code != OpCode::Query {
        return finish(request, error_reply(request, ResponseCode::NotImp, true));
    }
    let [query] = request.queries.as_slice() else {
        return finish(request, error_reply(request, ResponseCode::FormErr, true));
    };
    if query.query_class() != DNSClass::IN {
        return finish(request, error_reply(request, ResponseCode::Refused, true));
    }
    if !zone.contains(query.name()) {
        // The root exists (NODATA for it); anything else under it does not.
        let rcode = if query.name().is_root() {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        let mut reply = error_reply(request, rcode, true);
        reply.add_authority(zone.root_soa());
        return finish(request, reply);
    }
    let mut reply = error_reply(request, ResponseCode::NoError, true);
    reply.metadata.authoritative = true;
    resolve(zone, query.name(), query.query_type(), &mut reply);
    finish(request, reply)
}

/// Echoes EDNS when the client sent it (RFC 6891).
fn finish(request: &Message, mut reply: Message) -> Message {
    if let Some(req_edns) = &request.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(SERVER_UDP_PAYLOAD);
        edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
        reply.set_edns(edns);
    }
    reply
}

fn resolve(zone: &Zone, qname: &Name, qtype: RecordType, reply: &mut Message) {
    let mut current = qname.clone();
    for _ in 0..MAX_CNAME_CHAIN {
        let Some(records) = lookup(zone, &current) else {
            if zone.exists(&current) {
                reply.add_authority(zone.negative_soa());
            } else {
                // Also after a CNAME: the rcode describes the last name in the chain (RFC 6604).
                reply.metadata.response_code = ResponseCode::NXDomain;
                reply.add_authority(zone.negative_soa());
            }
            return;
        };
        let matching: Vec<Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .cloned()
            .collect();
        if !matching.is_empty() {
            add_glue(zone, &matching, reply);
            reply.add_answers(matching);
            return;
        }
        let cname = records.iter().find_map(|r| match &r.data {
            RData::CNAME(target) => Some((r.clone(), target.0.clone())),
            _ => None,
        });
        match cname {
            Some((record, target)) => {
                reply.add_answer(record);
                if !zone.contains(&target) {
                    // Out-of-zone target: the client's resolver chases it, not us.
                    return;
                }
                current = target;
            }
            None => {
                reply.add_authority(zone.negative_soa());
                return;
            }
        }
    }
    tracing::warn!("CNAME chain from {qname} is longer than {MAX_CNAME_CHAIN}");
}

/// The records at `name`, owner set to `name`; wildcard records are synthesised when the name
/// itself does not exist but `*.<closest encloser>` does (RFC 4592).
fn lookup(zone: &Zone, name: &Name) -> Option<Vec<Record>> {
    if let Some(records) = zone.records(name) {
        return Some(rename(records, name));
    }
    if zone.exists(name) {
        return None;
    }
    let mut encloser = name.base_name();
    while zone.contains(&encloser) {
        if zone.exists(&encloser) {
            let wildcard = encloser.prepend_label("*").ok()?;
            return zone.records(&wildcard).map(|records| rename(records, name));
        }
        encloser = encloser.base_name();
    }
    None
}

/// Answers carry the name as the client spelled it.
fn rename(records: &[Record], name: &Name) -> Vec<Record> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.name = name.clone();
            r
        })
        .collect()
}

/// Addresses of in-zone NS, MX and SRV targets go into the additional section.
fn add_glue(zone: &Zone, answers: &[Record], reply: &mut Message) {
    for record in answers {
        let target = match &record.data {
            RData::NS(ns) => &ns.0,
            RData::MX(mx) => &mx.exchange,
            RData::SRV(srv) => &srv.target,
            _ => continue,
        };
        if let Some(records) = zone.records(target) {
            let glue = records
                .iter()
                .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
                .filter(|r| !reply.additionals.contains(r))
                .cloned()
                .collect::<Vec<_>>();
            reply.add_additionals(glue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        answer(&Zone::default_zone(), &m)
    }

    fn types(records: &[Record]) -> Vec<RecordType> {
        records.iter().map(Record::record_type).collect()
    }

    #[test]
    fn positive_answers_are_authoritative_and_offer_recursion() {
        let r = ask("www.example.test.", RecordType::AAAA);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative);
        assert!(r.metadata.recursion_available);
        assert!(r.metadata.recursion_desired);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.answers[0].data.ip_addr().unwrap().to_string(),
            "2001:db8::10"
        );
    }

    #[test]
    fn names_are_case_insensitive_and_keep_the_query_spelling() {
        let r = ask("WwW.Example.TEST.", RecordType::A);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].name.to_ascii(), "WwW.Example.TEST.");
    }

    #[test]
    fn cname_chain_is_followed_inside_the_zone() {
        let r = ask("chain.example.test.", RecordType::A);
        assert_eq!(
            types(&r.answers),
            vec![RecordType::CNAME, RecordType::CNAME, RecordType::A]
        );
        let r = ask("alias.example.test.", RecordType::CNAME);
        assert_eq!(types(&r.answers), vec![RecordType::CNAME]);
    }

    #[test]
    fn nxdomain_and_nodata_carry_the_soa() {
        let r = ask("nope.example.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
        assert_eq!(r.authorities[0].ttl, 60);

        let r = ask("v6only.example.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);

        // Empty non-terminal: NODATA, not NXDOMAIN.
        let r = ask("_tcp.example.test.", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn outside_the_zone_is_nxdomain_with_the_root_soa() {
        for name in ["www.example.com.", "abc.", "abc.123.def."] {
            let r = ask(name, RecordType::A);
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(!r.metadata.authoritative && r.metadata.recursion_available);
            assert!(r.answers.is_empty());
            assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
            assert!(r.authorities[0].name.is_root());
        }
        let r = ask(".", RecordType::NS);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(types(&r.authorities), vec![RecordType::SOA]);
    }

    #[test]
    fn wildcards_are_synthesised() {
        let r = ask("anything.wild.example.test.", RecordType::A);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].name.to_ascii(), "anything.wild.example.test.");
        let r = ask("anything.wild.example.test.", RecordType::AAAA);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
    }

    #[test]
    fn mx_srv_and_ns_come_with_glue() {
        let r = ask("example.test.", RecordType::MX);
        assert_eq!(types(&r.answers), vec![RecordType::MX]);
        assert_eq!(types(&r.additionals), vec![RecordType::A]);
        let r = ask("_http._tcp.example.test.", RecordType::SRV);
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.additionals.len(), 3, "www A + AAAA, mail A");
        let r = ask("example.test.", RecordType::NS);
        assert_eq!(types(&r.additionals), vec![RecordType::A]);
        let r = ask("txt.example.test.", RecordType::TXT);
        assert_eq!(types(&r.answers), vec![RecordType::TXT]);
    }

    #[test]
    fn other_opcodes_and_classes() {
        let mut m = Message::query();
        m.metadata.op_code = OpCode::Status;
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::A,
        ));
        let r = answer(&Zone::default_zone(), &m);
        assert_eq!(r.metadata.response_code, ResponseCode::NotImp);

        let mut q = Query::query(Name::from_ascii("example.test.").unwrap(), RecordType::A);
        q.set_query_class(DNSClass::CH);
        let mut m = Message::query();
        m.add_query(q);
        let r = answer(&Zone::default_zone(), &m);
        assert_eq!(r.metadata.response_code, ResponseCode::Refused);

        let mut m = Message::query();
        let r = answer(&Zone::default_zone(), &m);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        let mut e = Edns::new();
        e.set_max_payload(4096);
        m.set_edns(e);
        m.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::A,
        ));
        let r = answer(&Zone::default_zone(), &m);
        assert_eq!(r.edns.as_ref().map(Edns::max_payload), Some(1232));
    }
}

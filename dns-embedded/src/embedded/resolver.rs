//! How one query is answered: local names first (A, AAAA, MX, PTR from the names table, TTL
//! 600, shuffled, RA set, AA not set), everything else forwarded.

use std::net::IpAddr;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use minikind_dns_log::Proto;
use rand::seq::SliceRandom;

use super::forward::{Forwarded, Forwarder};
use super::names::{NameLookup, NamesHandle};
use crate::transport::{Handler, Request};
use crate::wire::{Names, encode_within, error_reply, reply_limit};

/// TTL of every local answer.
pub const LOCAL_TTL: u32 = 600;

pub struct ResolverHandler {
    pub names: NamesHandle,
    pub forwarder: Forwarder,
    /// Docker's ndots guard: when the container set `ndots` itself, a single-label A/AAAA
    /// name that isn't local is answered empty instead of forwarded, so the client moves on
    /// to its search domains.
    pub ndots_guard: bool,
}

impl Handler for ResolverHandler {
    async fn handle(&self, request: &Request) -> Option<Vec<u8>> {
        let message = &request.message;
        // Docker drops a query without a question.
        let query = message.queries.first()?;
        let mut reply = match self.local_answer(message, query) {
            Some(reply) => reply,
            None => match self.forwarder.forward(&request.raw, request.proto).await {
                Forwarded::Reply(bytes) => return Some(bytes),
                Forwarded::Overloaded => error_reply(message, ResponseCode::Refused, true),
                Forwarded::NoAnswer => error_reply(message, ResponseCode::ServFail, true),
            },
        };
        let limit = reply_limit(message, request.proto);
        // Uncompressed, like Docker's own answers: the same number of records fit in 512 bytes.
        match encode_within(
            &mut reply,
            limit,
            request.proto == Proto::Udp,
            Names::Uncompressed,
        ) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::error!("embedded resolver: {e}");
                None
            }
        }
    }
}

impl ResolverHandler {
    /// The reply when the name is Docker's to answer, `None` when it must be forwarded.
    pub fn local_answer(&self, message: &Message, query: &Query) -> Option<Message> {
        let index = self.names.current();
        let qname = query.name();
        let ascii = qname.to_ascii();
        match query.query_type() {
            RecordType::A | RecordType::AAAA => match index.lookup(&ascii) {
                NameLookup::Found { mut v4, mut v6 } => {
                    let mut reply = error_reply(message, ResponseCode::NoError, true);
                    let mut rng = rand::rng();
                    let records: Vec<Record> = if query.query_type() == RecordType::A {
                        v4.shuffle(&mut rng);
                        v4.into_iter()
                            .map(|ip| record(qname, RData::A(A(ip))))
                            .collect()
                    } else {
                        v6.shuffle(&mut rng);
                        v6.into_iter()
                            .map(|ip| record(qname, RData::AAAA(AAAA(ip))))
                            .collect()
                    };
                    // An empty list is NODATA: the name is ours, so it is not forwarded.
                    reply.add_answers(records);
                    Some(reply)
                }
                NameLookup::Unknown => {
                    let single_label = !ascii.trim_end_matches('.').contains('.');
                    (self.ndots_guard && single_label)
                        .then(|| error_reply(message, ResponseCode::NoError, true))
                }
            },
            // A local name has no MX: an empty NOERROR lets mail clients fall back to A/AAAA.
            RecordType::MX => match index.lookup(&ascii) {
                NameLookup::Found { .. } => Some(error_reply(message, ResponseCode::NoError, true)),
                NameLookup::Unknown => None,
            },
            RecordType::PTR => {
                let ip = arpa_to_ip(qname)?;
                let target = index.reverse(ip)?;
                let target = Name::from_ascii(target).ok()?;
                let mut reply = error_reply(message, ResponseCode::NoError, true);
                reply.add_answer(record(qname, RData::PTR(PTR(target))));
                Some(reply)
            }
            _ => None,
        }
    }
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), LOCAL_TTL, data)
}

/// The address a full-length `in-addr.arpa.`/`ip6.arpa.` name stands for.
fn arpa_to_ip(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::forward::{FORWARD_TIMEOUT, MAX_IN_FLIGHT};
    use crate::embedded::names::{ContainerNames, NamesTable, NetworkNames};

    fn handler(ndots_guard: bool) -> ResolverHandler {
        let table = NamesTable {
            networks: vec![NetworkNames {
                network: "minikind-lab".into(),
                containers: vec![ContainerNames {
                    name: "lab-worker".into(),
                    ipv4: Some("172.18.0.3".parse().unwrap()),
                    ipv6: Some("fc00::3".parse().unwrap()),
                    ..Default::default()
                }],
            }],
        };
        ResolverHandler {
            names: NamesHandle::new(&table),
            forwarder: Forwarder::new(&[], FORWARD_TIMEOUT, MAX_IN_FLIGHT),
            ndots_guard,
        }
    }

    fn ask(h: &ResolverHandler, name: &str, qtype: RecordType) -> Option<Message> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let q = m.queries[0].clone();
        h.local_answer(&m, &q)
    }

    #[test]
    fn ptr_for_v4_and_v6_container_addresses() {
        let h = handler(false);
        let r = ask(&h, "3.0.18.172.in-addr.arpa.", RecordType::PTR).unwrap();
        assert_eq!(r.answers[0].data.to_string(), "lab-worker.minikind-lab.");
        assert_eq!(r.answers[0].ttl, 600);
        let v6 = "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.f.ip6.arpa.";
        let r = ask(&h, v6, RecordType::PTR).unwrap();
        assert_eq!(r.answers[0].data.to_string(), "lab-worker.minikind-lab.");
        assert!(
            ask(&h, "9.0.18.172.in-addr.arpa.", RecordType::PTR).is_none(),
            "unknown PTR is forwarded"
        );
        assert!(
            ask(&h, "18.172.in-addr.arpa.", RecordType::PTR).is_none(),
            "partial arpa name is forwarded"
        );
    }

    #[test]
    fn mx_of_a_local_name_is_empty_noerror() {
        let h = handler(false);
        let r = ask(&h, "lab-worker.", RecordType::MX).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert!(ask(&h, "example.test.", RecordType::MX).is_none());
        assert!(
            ask(&h, "lab-worker.", RecordType::TXT).is_none(),
            "other types are forwarded"
        );
    }

    #[test]
    fn ndots_guard_answers_single_labels_empty() {
        assert!(ask(&handler(false), "unknown.", RecordType::A).is_none());
        let r = ask(&handler(true), "unknown.", RecordType::A).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert!(
            ask(&handler(true), "unknown.test.", RecordType::A).is_none(),
            "dotted names are forwarded"
        );
    }
}

//! The general path of one query: decode the packet, the checks before any plugin runs
//! (FORMERR, NOTIMP, BADVERS, REFUSED for no zone or a class other than IN), the block's chain,
//! and the reply readied for the wire with the errors, log and prometheus plugins' side effects.
//! What needs the network comes back as a [`Later`] to finish on the runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use minikind_dns_log::Proto;

use crate::chain::{Block, Pending};
use crate::dnsmsg::{Reply, Request, encode, finalize, finalize_wire, formerr_for};
use crate::plugins::prometheus::{Asked, record_metrics};
use crate::zones::ZoneTable;

/// What serving a packet without waiting gave.
pub enum Step {
    /// Nothing to send.
    Drop,
    /// The reply, ready for the wire.
    Done(Vec<u8>),
    /// Needs the network (forward, CNAME chase): finish with [`Later::run`].
    Later(Box<Later>),
}

/// A query whose answer needs an await.
pub struct Later {
    req: Request,
    block: Arc<Block>,
    zone: String,
    listener: String,
    pending: Pending,
    started: Instant,
}

impl Later {
    pub async fn run(self) -> Vec<u8> {
        let reply = self
            .block
            .finish(&self.req, &self.listener, self.pending)
            .await;
        complete(&self.block, &self.zone, &self.req, reply, self.started)
    }
}

/// The general path: decodes the packet, checks it, and runs the chain from its start (or,
/// with `with_cache` false, from the plugin after the cache, whose miss the caller counted).
pub fn prepare_decoded(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
    with_cache: bool,
) -> Step {
    let started = Instant::now();
    let msg = match Message::from_vec(buf) {
        Ok(m) => m,
        Err(_) => return formerr_for(buf).map_or(Step::Drop, Step::Done),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Step::Drop;
    }
    if msg.metadata.op_code != OpCode::Query {
        let mut m = Message::response(msg.metadata.id, msg.metadata.op_code);
        m.metadata.response_code = ResponseCode::NotImp;
        m.queries = msg.queries.clone();
        return Step::Done(encode(&m));
    }
    let edns_version = msg.edns.as_ref().map(|e| e.version()).unwrap_or(0);
    let Some(req) = Request::new(msg, client, local, proto, buf.len()) else {
        return formerr_for(buf).map_or(Step::Drop, Step::Done);
    };
    if edns_version > 0 {
        let m = req.reply_rcode(ResponseCode::BADVERS);
        return Step::Done(finalize(&req, m));
    }
    let selected = table.select(&req.qname_lc);
    let Some((zone, block)) = selected.filter(|_| req.qclass == DNSClass::IN) else {
        let m = req.reply_rcode(ResponseCode::Refused);
        return Step::Done(finalize(&req, m));
    };
    let served = if with_cache {
        block.serve_sync(&req, &table.display)
    } else {
        block.serve_uncached(&req)
    };
    match served {
        Ok(reply) => Step::Done(complete(block, zone, &req, reply, started)),
        Err(pending) => Step::Later(Box::new(Later {
            req,
            block: block.clone(),
            zone: zone.to_string(),
            listener: table.display.clone(),
            pending,
            started,
        })),
    }
}

/// Finalizes a reply for the wire, with the errors, log and prometheus plugins' side effects.
fn complete(block: &Block, zone: &str, req: &Request, reply: Reply, started: Instant) -> Vec<u8> {
    let rcode = reply.msg.metadata.response_code;
    if let (Some(e), Some(err)) = (&block.errors, &reply.error) {
        e.report(
            u16::from(rcode),
            &req.qname.to_ascii(),
            &req.qtype.to_string(),
            err,
        );
    }
    let log_copy = block.log.as_ref().map(|_| reply.message());
    let out = match reply.wire {
        Some(w) => finalize_wire(req, w),
        None => finalize(req, reply.msg),
    };
    let took = started.elapsed();
    if let (Some(l), Some(m)) = (&block.log, log_copy) {
        l.log(req, &m, out.len(), took);
    }
    if block.prometheus.is_some() {
        let asked = Asked {
            client: req.client,
            proto: req.proto,
            qtype: req.qtype,
            size: req.size,
        };
        record_metrics(
            &block.server,
            zone,
            &asked,
            rcode,
            reply.plugin,
            out.len(),
            took,
        );
    }
    out
}

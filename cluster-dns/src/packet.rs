//! One packet in, one reply out: the wire fast path when it can answer, else the general path
//! ([`crate::query`]). The UDP workers and the TCP connections both serve through here.

use std::net::SocketAddr;

use minikind_dns_log::Proto;

use crate::query::{Step, prepare_decoded};
use crate::zones::ZoneTable;

/// Parses and checks a packet and runs the synchronous part of the chain.
pub fn prepare(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Step {
    if buf.len() < 12 || buf[2] & 0x80 != 0 {
        return Step::Drop;
    }
    if let Some(step) = crate::fastpath::serve(table, buf, client, local, proto) {
        return step;
    }
    prepare_decoded(table, buf, client, local, proto, true)
}

/// Serves one packet; None means drop it.
pub async fn handle_packet(
    table: &ZoneTable,
    buf: &[u8],
    client: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Option<Vec<u8>> {
    match prepare(table, buf, client, local, proto) {
        Step::Drop => None,
        Step::Done(v) => Some(v),
        Step::Later(l) => Some(l.run().await),
    }
}

//! Forwarding as Docker's resolver does it: at most three external servers, tried in order,
//! over the transport the client used, each with its own 4-second timeout. SERVFAIL, REFUSED
//! or any other error code moves on to the next server; NOERROR and NXDOMAIN are returned as
//! they came (a truncated UDP reply too: the client retries over TCP). At most 1024 forwarded
//! queries are in flight; beyond that the query is refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use minikind_dns_log::Proto;
use tokio::sync::Semaphore;

use crate::exchange::exchange_raw;
use crate::wire::ResponseHeader;

/// Docker's limits.
pub const MAX_EXTERNAL_SERVERS: usize = 3;
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(4);
pub const MAX_IN_FLIGHT: usize = 1024;

/// What forwarding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// A server's reply, byte for byte.
    Reply(Vec<u8>),
    /// Too many queries in flight.
    Overloaded,
    /// No server gave a usable answer (or none is configured).
    NoAnswer,
}

#[derive(Debug)]
pub struct Forwarder {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    in_flight: Arc<Semaphore>,
}

impl Forwarder {
    /// Only the first [`MAX_EXTERNAL_SERVERS`] servers are used, as in Docker.
    pub fn new(servers: &[SocketAddr], timeout: Duration, max_in_flight: usize) -> Self {
        Self {
            servers: servers.iter().take(MAX_EXTERNAL_SERVERS).copied().collect(),
            timeout,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
        }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// Forwards the client's query bytes unchanged.
    pub async fn forward(&self, query: &[u8], proto: Proto) -> Forwarded {
        if self.servers.is_empty() {
            return Forwarded::NoAnswer;
        }
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return Forwarded::Overloaded;
        };
        for server in &self.servers {
            let reply = match exchange_raw(*server, proto, query, self.timeout).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::debug!("embedded resolver: {e}");
                    continue;
                }
            };
            let Some(header) = ResponseHeader::parse(&reply) else {
                continue;
            };
            match header.rcode() {
                // NOERROR and NXDOMAIN are answers.
                0 | 3 => return Forwarded::Reply(reply),
                _ => {
                    tracing::debug!(
                        "embedded resolver: {server} answered {}, trying the next server",
                        header.rcode_name()
                    );
                }
            }
        }
        Forwarded::NoAnswer
    }
}

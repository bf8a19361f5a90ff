//! The client side: send one query to a server over UDP or TCP and wait for its reply. Used by
//! the embedded resolver's forwarder and by tests and benchmarks.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use minikind_dns_log::Proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::ResponseHeader;

/// Why an exchange with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("no reply from {server} over {proto} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        proto: &'static str,
        timeout: Duration,
    },
    #[error("{proto} exchange with {server}: {source}")]
    Io {
        server: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("query to {server} is {len} bytes, too long for a DNS message")]
    TooLong { server: SocketAddr, len: usize },
    #[error("encoding the query failed: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
    #[error("reply from {server} is not a DNS message: {reason}")]
    Decode { server: SocketAddr, reason: String },
}

/// Sends `query` (wire bytes) to `server` and returns the raw reply with the same id.
/// The whole exchange, connecting included, is bounded by `timeout`.
pub async fn exchange_raw(
    server: SocketAddr,
    proto: Proto,
    query: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ExchangeError> {
    let fut = async {
        match proto {
            Proto::Udp => udp(server, query).await,
            Proto::Tcp => tcp(server, query).await,
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(|source| match source {
            IoOr::Io(source) => ExchangeError::Io {
                server,
                proto: proto.as_str(),
                source,
            },
            IoOr::TooLong(len) => ExchangeError::TooLong { server, len },
        }),
        Err(_) => Err(ExchangeError::Timeout {
            server,
            proto: proto.as_str(),
            timeout,
        }),
    }
}

/// Encodes `query`, exchanges it and decodes the reply.
pub async fn exchange(
    server: SocketAddr,
    proto: Proto,
    query: &Message,
    timeout: Duration,
) -> Result<Message, ExchangeError> {
    let bytes = query.to_vec()?;
    let reply = exchange_raw(server, proto, &bytes, timeout).await?;
    Message::from_vec(&reply).map_err(|e| ExchangeError::Decode {
        server,
        reason: e.to_string(),
    })
}

enum IoOr {
    Io(std::io::Error),
    TooLong(usize),
}

impl From<std::io::Error> for IoOr {
    fn from(e: std::io::Error) -> Self {
        IoOr::Io(e)
    }
}

async fn udp(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, IoOr> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let want_id = ResponseHeader::parse(query).map(|h| h.id);
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A datagram with another id is not our answer (late reply, or spoofing): keep waiting.
        if ResponseHeader::parse(&buf[..n]).map(|h| h.id) == want_id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8]) -> Result<Vec<u8>, IoOr> {
    let len = u16::try_from(query.len()).map_err(|_| IoOr::TooLong(query.len()))?;
    let mut stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

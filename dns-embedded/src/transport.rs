//! The UDP and TCP server loops both servers share: receive, decode, hand the query to a
//! [`Handler`], send the reply, write the query log line.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType};
use minikind_dns_log::Proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::querylog::{QueryLog, QueryRecord, format_line};
use crate::wire::{ResponseHeader, formerr_from_raw};

/// How long an idle TCP connection is kept open waiting for its next query.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Tasks receiving on the UDP socket: one per worker thread of the servers' runtimes.
const UDP_RECEIVERS: usize = 2;

/// One decoded query.
pub struct Request {
    /// The bytes as received (the embedded resolver forwards them unchanged).
    pub raw: Vec<u8>,
    pub message: Message,
    pub client: SocketAddr,
    pub proto: Proto,
}

/// Answers queries. `None` means no reply is sent (the client will time out).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request) -> impl Future<Output = Option<Vec<u8>>> + Send;
}

/// Running server tasks; dropping this stops them (and every connection they opened).
pub struct ServerTasks {
    tasks: JoinSet<()>,
}

impl ServerTasks {
    /// Stops serving.
    pub fn shutdown(mut self) {
        self.tasks.abort_all();
    }

    /// Waits until a server loop ends (they only end on a fatal socket error).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}

/// Starts serving `udp` and `tcp` with `handler`.
pub fn spawn<H: Handler>(
    handler: Arc<H>,
    udp: UdpSocket,
    tcp: TcpListener,
    log: QueryLog,
) -> ServerTasks {
    let mut tasks = JoinSet::new();
    // Several receivers on the one socket, so that queries answered in the receiving task
    // (see `udp_loop`) are answered on every worker thread at once.
    let udp = Arc::new(udp);
    for _ in 0..UDP_RECEIVERS {
        tasks.spawn(udp_loop(handler.clone(), udp.clone(), log.clone()));
    }
    tasks.spawn(tcp_loop(handler, tcp, log));
    ServerTasks { tasks }
}

async fn udp_loop<H: Handler>(handler: Arc<H>, socket: Arc<UdpSocket>, log: QueryLog) {
    let mut inflight = JoinSet::new();
    let mut buf = vec![0u8; 65535];
    loop {
        // Reap finished query tasks so the set doesn't grow without bound.
        while inflight.try_join_next().is_some() {}
        let (len, client) = match socket.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                // ICMP errors from earlier replies surface here on Linux; they are not fatal.
                tracing::debug!("udp receive on {:?}: {e}", socket.local_addr());
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let raw = buf[..len].to_vec();
        let mut answer = Box::pin({
            let (handler, log) = (handler.clone(), log.clone());
            async move { process(&*handler, raw, client, Proto::Udp, &log).await }
        });
        // A query answered from what the server holds (a local name, an error) is ready at the
        // first poll: it is answered here, without a task of its own. One that waits (a forward
        // to an upstream) goes on in a task; the task's first poll registers its real waker.
        let first = answer
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        match first {
            Poll::Ready(reply) => {
                if let Some(reply) = reply {
                    send(&socket, &reply, client).await;
                }
            }
            Poll::Pending => {
                let socket = socket.clone();
                inflight.spawn(async move {
                    if let Some(reply) = answer.await {
                        send(&socket, &reply, client).await;
                    }
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, reply: &[u8], client: SocketAddr) {
    if let Err(e) = socket.send_to(reply, client).await {
        tracing::debug!("udp send to {client}: {e}");
    }
}

async fn tcp_loop<H: Handler>(handler: Arc<H>, listener: TcpListener, log: QueryLog) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, client)) => {
                conns.spawn(tcp_conn(handler.clone(), stream, client, log.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn tcp_conn<H: Handler>(
    handler: Arc<H>,
    mut stream: TcpStream,
    client: SocketAddr,
    log: QueryLog,
) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut raw = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut raw)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(reply) = process(&*handler, raw, client, Proto::Tcp, &log).await else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            tracing::warn!(
                "reply to {client} over tcp is {} bytes, too long",
                reply.len()
            );
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Decodes one query, lets the handler answer it and logs the pair.
async fn process<H: Handler>(
    handler: &H,
    raw: Vec<u8>,
    client: SocketAddr,
    proto: Proto,
    log: &QueryLog,
) -> Option<Vec<u8>> {
    let start = Instant::now();
    let message = match Message::from_vec(&raw) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!("undecodable query from {client}: {e}");
            return formerr_from_raw(&raw);
        }
    };
    if message.metadata.message_type == MessageType::Response {
        return None;
    }
    let request = Request {
        raw,
        message,
        client,
        proto,
    };
    let reply = handler.handle(&request).await;
    if !log.is_discard() {
        let response = reply.as_deref().and_then(ResponseHeader::parse);
        log.emit(format_line(&QueryRecord {
            client,
            proto,
            request: &request.message,
            request_size: request.raw.len(),
            response,
            response_size: reply.as_ref().map_or(0, Vec::len),
            duration: start.elapsed(),
        }));
    }
    reply
}

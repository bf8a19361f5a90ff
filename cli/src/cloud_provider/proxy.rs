//! `minikind lb-proxy`: the program a LoadBalancer's container runs (cloud-provider-kind runs
//! envoy there). It listens on each Service port on every address of the container and
//! forwards each TCP connection, or each UDP client's datagrams, to one of the nodes'
//! NodePorts picked at random (envoy's `lb_policy: RANDOM`), trying the next node when one
//! refuses.
//!
//! Arguments: one forward per Service port, `PROTOCOL:PORT=NODE:NODEPORT[,NODE:NODEPORT…]`
//! (e.g. `TCP:80=172.18.0.2:31234,172.18.0.3:31234`); [`Forward`] writes and reads them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rand::seq::SliceRandom;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;

/// How long a backend may take to accept before the next is tried (envoy's `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A UDP client's flow is forgotten after this long without a datagram either way.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// The L4 protocols the proxy forwards (cloud-provider-kind skips SCTP ports too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// One Service port: where the proxy listens and the nodes it forwards to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Forward {
    pub protocol: Protocol,
    pub port: u16,
    pub backends: Vec<SocketAddr>,
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backends: Vec<String> = self.backends.iter().map(ToString::to_string).collect();
        write!(
            f,
            "{}:{}={}",
            self.protocol.as_str(),
            self.port,
            backends.join(",")
        )
    }
}

impl std::str::FromStr for Forward {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || anyhow!("forward {s:?} is not PROTOCOL:PORT=NODE:NODEPORT[,…]");
        let (listen, backends) = s.split_once('=').ok_or_else(bad)?;
        let (protocol, port) = listen.split_once(':').ok_or_else(bad)?;
        let protocol = match protocol {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => bail!("forward {s:?}: protocol {other:?} is not TCP or UDP"),
        };
        let port = port
            .parse()
            .map_err(|_| anyhow!("forward {s:?}: {port:?} is not a port"))?;
        let backends = backends
            .split(',')
            .filter(|b| !b.is_empty())
            .map(|b| {
                b.parse()
                    .map_err(|_| anyhow!("forward {s:?}: {b:?} is not NODE:NODEPORT"))
            })
            .collect::<Result<Vec<SocketAddr>>>()?;
        Ok(Forward {
            protocol,
            port,
            backends,
        })
    }
}

/// The backends in a random order: the first one that answers takes the connection.
fn shuffled(backends: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut order = backends.to_vec();
    order.shuffle(&mut rand::rng());
    order
}

async fn connect_any(backends: &[SocketAddr]) -> Result<TcpStream> {
    let mut last = anyhow!("no node to forward to");
    for b in shuffled(backends) {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(b)).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = anyhow!("{b}: {e}"),
            Err(_) => last = anyhow!("{b}: no answer in {CONNECT_TIMEOUT:?}"),
        }
    }
    Err(last)
}

async fn serve_tcp(listener: TcpListener, backends: Arc<Vec<SocketAddr>>) -> Result<()> {
    loop {
        let (mut client, from) = listener.accept().await.context("accepting")?;
        let backends = backends.clone();
        tokio::spawn(async move {
            match connect_any(&backends).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => eprintln!("lb-proxy: connection from {from}: {e:#}"),
            }
        });
    }
}

async fn serve_udp(socket: UdpSocket, backends: Arc<Vec<SocketAddr>>) -> Result<()> {
    let socket = Arc::new(socket);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Default::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = socket.recv_from(&mut buf).await.context("receiving")?;
        let upstream = {
            let mut map = flows.lock().await;
            match map.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let Some(backend) = shuffled(&backends).first().copied() else {
                        continue;
                    };
                    let u = Arc::new(UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await?);
                    u.connect(backend).await?;
                    map.insert(client, u.clone());
                    // Replies go back to the client from the Service port.
                    let (u2, socket, flows) = (u.clone(), socket.clone(), flows.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(Ok(n)) =
                            tokio::time::timeout(UDP_IDLE, u2.recv(&mut buf)).await
                        {
                            let _ = socket.send_to(&buf[..n], client).await;
                        }
                        flows.lock().await.remove(&client);
                    });
                    u
                }
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Binds every forward, then serves them all until one fails.
pub async fn run(forwards: Vec<Forward>) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for f in forwards {
        let at = SocketAddr::from((Ipv4Addr::UNSPECIFIED, f.port));
        let backends = Arc::new(f.backends);
        match f.protocol {
            Protocol::Tcp => {
                let l = TcpListener::bind(at)
                    .await
                    .with_context(|| format!("listening on TCP {at}"))?;
                tasks.spawn(serve_tcp(l, backends));
            }
            Protocol::Udp => {
                let s = UdpSocket::bind(at)
                    .await
                    .with_context(|| format!("listening on UDP {at}"))?;
                tasks.spawn(serve_udp(s, backends));
            }
        }
    }
    match tasks.join_next().await {
        Some(r) => r.context("a forward task")?,
        None => bail!("no Service port to forward"),
    }
}

/// `minikind lb-proxy FORWARD…`.
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let forwards: Result<Vec<Forward>> = args
        .iter()
        .skip(1)
        .map(|a| {
            a.to_str()
                .ok_or_else(|| anyhow!("argument {a:?} is not UTF-8"))?
                .parse()
        })
        .collect();
    let result = forwards.and_then(|f| {
        tokio::runtime::Runtime::new()
            .context("starting the runtime")?
            .block_on(run(f))
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lb-proxy: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn forwards_round_trip_and_bad_ones_are_named() {
        let f: Forward = "TCP:80=172.18.0.2:31234,172.18.0.3:31234".parse().unwrap();
        assert_eq!(f.protocol, Protocol::Tcp);
        assert_eq!(f.port, 80);
        assert_eq!(f.backends.len(), 2);
        assert_eq!(f.to_string(), "TCP:80=172.18.0.2:31234,172.18.0.3:31234");
        let e = "SCTP:80=1.2.3.4:5"
            .parse::<Forward>()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "forward \"SCTP:80=1.2.3.4:5\": protocol \"SCTP\" is not TCP or UDP"
        );
        let e = "TCP:80=node:5".parse::<Forward>().unwrap_err().to_string();
        assert_eq!(
            e,
            "forward \"TCP:80=node:5\": \"node:5\" is not NODE:NODEPORT"
        );
        assert!("TCP80".parse::<Forward>().is_err());
    }

    /// A port free on loopback now.
    fn free(udp: bool) -> u16 {
        if udp {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        }
    }

    /// TCP: a connection reaches the backend that listens, past one that refuses; UDP: a
    /// datagram reaches the backend and its reply comes back from the Service port.
    #[tokio::test]
    async fn tcp_and_udp_reach_a_live_backend() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead: SocketAddr = format!("127.0.0.1:{}", free(false)).parse().unwrap();
        let echo_udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (tcp_port, udp_port) = (free(false), free(true));
        let forwards = vec![
            Forward {
                protocol: Protocol::Tcp,
                port: tcp_port,
                backends: vec![dead, live.local_addr().unwrap()],
            },
            Forward {
                protocol: Protocol::Udp,
                port: udp_port,
                backends: vec![echo_udp.local_addr().unwrap()],
            },
        ];
        tokio::spawn(run(forwards));
        tokio::spawn(async move {
            let (mut s, _) = live.accept().await.unwrap();
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(b"pong").await.unwrap();
        });
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            let (n, from) = echo_udp.recv_from(&mut b).await.unwrap();
            echo_udp.send_to(&b[..n], from).await.unwrap();
        });
        let mut c = None;
        for _ in 0..50 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", tcp_port)).await {
                c = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut c = c.expect("the proxy listens");
        c.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"pong");

        let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        u.send_to(b"hello", ("127.0.0.1", udp_port)).await.unwrap();
        let mut b = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), u.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..n], b"hello");
        assert_eq!(from.port(), udp_port);
    }
}

//! DNS listeners: UDP (one SO_REUSEPORT socket per worker, see [`crate::udp`]) and TCP on each
//! address, each packet served through [`crate::packet`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use minikind_dns_log::Proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::packet::handle_packet;
use crate::zones::SharedTable;

/// A bound address with its UDP worker threads and TCP task.
pub struct Listener {
    pub addr: SocketAddr,
    pub table: SharedTable,
    tasks: Vec<JoinHandle<()>>,
    _udp: crate::udp::UdpWorkers,
}

impl Drop for Listener {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_port(true)?;
    s.set_recv_buffer_size(4 << 20).ok();
    // Blocking: the worker threads wait in recvmmsg itself (see udp.rs).
    s.bind(&addr.into())?;
    Ok(s)
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

impl Listener {
    /// Binds UDP and TCP on `addr` and starts serving with `table`.
    pub fn bind(
        addr: SocketAddr,
        table: SharedTable,
        udp_workers: usize,
    ) -> std::io::Result<Listener> {
        let tcp = TcpListener::from_std(tcp_listener(addr)?)?;
        let mut socks = Vec::new();
        for _ in 0..udp_workers.max(1) {
            socks.push(udp_socket(addr)?);
        }
        let udp = crate::udp::UdpWorkers::start(socks, table.clone())?;
        let tasks = vec![tokio::spawn(tcp_loop(tcp, table.clone()))];
        Ok(Listener {
            addr,
            table,
            tasks,
            _udp: udp,
        })
    }
}

async fn tcp_loop(listener: TcpListener, table: SharedTable) {
    loop {
        let (stream, client) = match listener.accept().await {
            Ok((s, c)) => (s, unmap(c)),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let table = table.clone();
        tokio::spawn(async move {
            let (mut rd, wr) = stream.into_split();
            let wr = Arc::new(tokio::sync::Mutex::new(wr));
            loop {
                // Idle connections are closed after 10 s, as CoreDNS does.
                let len = match tokio::time::timeout(Duration::from_secs(10), rd.read_u16()).await {
                    Ok(Ok(l)) => l as usize,
                    _ => return,
                };
                let mut buf = vec![0u8; len];
                if tokio::time::timeout(Duration::from_secs(10), rd.read_exact(&mut buf))
                    .await
                    .is_err()
                {
                    return;
                }
                let t = match table.read() {
                    Ok(g) => g.clone(),
                    Err(_) => return,
                };
                let wr = wr.clone();
                // Pipelined queries are answered as each is ready.
                tokio::spawn(async move {
                    if let Some(out) = handle_packet(&t, &buf, client, local, Proto::Tcp).await {
                        let mut framed = Vec::with_capacity(out.len() + 2);
                        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
                        framed.extend_from_slice(&out);
                        let _ = wr.lock().await.write_all(&framed).await;
                    }
                });
            }
        });
    }
}

/// IPv4 clients of a dual-stack socket appear as `::ffff:a.b.c.d`; report them as IPv4.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        a => a,
    }
}

/// The text shown for a listening address: `:53` for a wildcard, else `ip:port`.
pub fn display_addr(ip: Option<IpAddr>, port: u16) -> String {
    match ip {
        None => format!(":{port}"),
        Some(ip) if ip.is_unspecified() => format!(":{port}"),
        Some(IpAddr::V6(v)) => format!("[{v}]:{port}"),
        Some(ip) => format!("{ip}:{port}"),
    }
}

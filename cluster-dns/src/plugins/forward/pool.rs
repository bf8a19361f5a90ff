//! Connections to one upstream kept for reuse, as CoreDNS's proxy transport keeps them
//! (coredns plugin/pkg/proxy/persistent.go): one stack per transport, the connection returned
//! last is taken first, a stack whose newest connection has been idle for `expire` is closed as
//! a whole, and a sweep every `expire` closes the idle ones. A connection is in the pool only
//! between queries: one query at a time uses it, so the pool grows to the number of queries in
//! flight and no further.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use minikind_dns_log::Proto;
use tokio::net::{TcpStream, UdpSocket};

/// An open connection to the upstream: a connected UDP socket or a TCP stream.
pub enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    pub fn proto(&self) -> Proto {
        match self {
            Conn::Udp(_) => Proto::Udp,
            Conn::Tcp(_) => Proto::Tcp,
        }
    }
}

fn slot(proto: Proto) -> usize {
    match proto {
        Proto::Udp => 0,
        Proto::Tcp => 1,
    }
}

/// Idle connections, per transport, oldest first (each entry: the connection and when it was
/// last returned).
pub struct Pool {
    expire: Duration,
    stacks: Mutex<[Vec<(Conn, Instant)>; 2]>,
}

impl Pool {
    pub fn new(expire: Duration) -> Self {
        Pool {
            expire,
            stacks: Mutex::new([Vec::new(), Vec::new()]),
        }
    }

    pub fn expire(&self) -> Duration {
        self.expire
    }

    /// The most recently returned connection for `proto`, if it is younger than `expire`.
    /// When the newest one is expired, all of that transport's are (they are older): the
    /// stack is closed as CoreDNS's connManager does.
    pub fn take(&self, proto: Proto) -> Option<Conn> {
        let closed;
        {
            let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
            let stack = &mut stacks[slot(proto)];
            match stack.last() {
                None => return None,
                Some((_, used)) if used.elapsed() < self.expire => {
                    return stack.pop().map(|(c, _)| c);
                }
                Some(_) => closed = std::mem::take(stack),
            }
        }
        // Closed outside the lock.
        drop(closed);
        None
    }

    /// Gives a connection back after a complete exchange.
    pub fn put(&self, conn: Conn) {
        let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        stacks[slot(conn.proto())].push((conn, Instant::now()));
    }

    /// Closes the connections idle for `expire` or longer; returns how many are left.
    pub fn sweep(&self) -> usize {
        let mut closed = Vec::new();
        let left = {
            let mut stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
            for stack in stacks.iter_mut() {
                // Oldest first: the expired ones are a prefix.
                let n = stack
                    .iter()
                    .take_while(|(_, used)| used.elapsed() >= self.expire)
                    .count();
                closed.extend(stack.drain(..n));
            }
            stacks.iter().map(Vec::len).sum()
        };
        drop(closed);
        left
    }

    /// Idle connections of a transport.
    pub fn idle(&self, proto: Proto) -> usize {
        let stacks = self.stacks.lock().unwrap_or_else(|e| e.into_inner());
        stacks[slot(proto)].len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn udp() -> Conn {
        Conn::Udp(UdpSocket::bind("127.0.0.1:0").await.unwrap())
    }

    #[tokio::test]
    async fn newest_first_and_per_transport() {
        let pool = Pool::new(Duration::from_secs(10));
        assert!(pool.take(Proto::Udp).is_none());
        let a = udp().await;
        let b = udp().await;
        let (Conn::Udp(sa), Conn::Udp(sb)) = (&a, &b) else {
            unreachable!()
        };
        let (pa, pb) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());
        pool.put(a);
        pool.put(b);
        assert!(
            pool.take(Proto::Tcp).is_none(),
            "UDP sockets are not TCP ones"
        );
        let Some(Conn::Udp(first)) = pool.take(Proto::Udp) else {
            panic!("a UDP socket is pooled")
        };
        assert_eq!(
            first.local_addr().unwrap(),
            pb,
            "the last returned comes first"
        );
        let Some(Conn::Udp(second)) = pool.take(Proto::Udp) else {
            panic!("a second UDP socket is pooled")
        };
        assert_eq!(second.local_addr().unwrap(), pa);
        assert!(pool.take(Proto::Udp).is_none());
    }

    #[tokio::test]
    async fn expired_connections_are_closed_not_reused() {
        let pool = Pool::new(Duration::from_millis(50));
        pool.put(udp().await);
        pool.put(udp().await);
        tokio::time::sleep(Duration::from_millis(80)).await;
        pool.put(udp().await);
        assert_eq!(pool.idle(Proto::Udp), 3);
        assert_eq!(pool.sweep(), 1, "the two older ones expired");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(pool.take(Proto::Udp).is_none(), "expired: dial anew");
        assert_eq!(pool.idle(Proto::Udp), 0, "the expired stack is closed");
    }
}

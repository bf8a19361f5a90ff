//! The UDP receive loop. Each worker is an OS thread with its own SO_REUSEPORT socket (as CoreDNS
//! runs one per GOMAXPROCS): a blocking `recvmmsg` takes up to a batch of queries and one
//! `sendmmsg` returns the answers that could be made from memory. The sockets are not registered
//! with the async runtime's epoll: there, every reply sent re-arms write readiness and wakes a
//! parked runtime thread, which on this machine cost more than the answers themselves. Queries
//! that need the network (forward, CNAME chase) continue as tasks on the runtime.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use minikind_dns_log::Proto;
use socket2::{SockAddr, Socket};

use crate::packet::prepare;
use crate::query::{Later, Step};
use crate::zones::SharedTable;

const BATCH: usize = 32;
/// Queries larger than this are not DNS queries anyone sends; they are dropped.
const MAX_QUERY: usize = 4096;

struct RecvBatch {
    bufs: Vec<[u8; MAX_QUERY]>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// The raw pointers inside only point into the batch's own vectors.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    fn new() -> Box<Self> {
        let mut b = Box::new(RecvBatch {
            bufs: vec![[0u8; MAX_QUERY]; BATCH],
            // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
            addrs: vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH],
            iovs: Vec::with_capacity(BATCH),
            hdrs: Vec::with_capacity(BATCH),
        });
        for i in 0..BATCH {
            let iov = libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_QUERY,
            };
            b.iovs.push(iov);
        }
        for i in 0..BATCH {
            // SAFETY: msghdr is plain data; zero is its empty value.
            let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            h.msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut b.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            b.hdrs.push(h);
        }
        b
    }

    /// One recvmmsg: waits for the first datagram (up to the socket's receive timeout), then takes
    /// whatever else is already queued; returns how many arrived.
    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        Some((
            &self.bufs[i][..h.msg_len as usize],
            to_socket_addr(&self.addrs[i])?,
        ))
    }
}

/// Reads the address the kernel wrote (IPv4 or IPv6).
fn to_socket_addr(st: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match st.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(st as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(st as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            // A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d; log them as IPv4.
            if let Some(v4) = ip.to_ipv4_mapped() {
                return Some(SocketAddr::from((v4, u16::from_be(a.sin6_port))));
            }
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends many datagrams with one sendmmsg (waiting for room in the send buffer); returns how
/// many went out.
fn send_many(fd: i32, out: &[(Vec<u8>, SockAddr)]) -> io::Result<usize> {
    let mut iovs: Vec<libc::iovec> = out
        .iter()
        .map(|(b, _)| libc::iovec {
            iov_base: b.as_ptr() as *mut _,
            iov_len: b.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(out.len());
    for (i, (_, a)) in out.iter().enumerate() {
        // SAFETY: plain data, zero is empty.
        let mut h: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        h.msg_hdr.msg_name = a.as_ptr() as *mut _;
        h.msg_hdr.msg_namelen = a.len();
        h.msg_hdr.msg_iov = &mut iovs[i];
        h.msg_hdr.msg_iovlen = 1;
        hdrs.push(h);
    }
    // SAFETY: headers point into `out` and `iovs`, alive for the call.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The worker threads of one listening address; dropping it stops them and closes the sockets.
pub struct UdpWorkers {
    stop: Arc<AtomicBool>,
    sockets: Vec<Arc<Socket>>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    /// Starts one thread per socket. Must be called inside the runtime that runs the queries
    /// needing the network.
    pub fn start(sockets: Vec<Socket>, table: SharedTable) -> io::Result<UdpWorkers> {
        let rt = tokio::runtime::Handle::current();
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = UdpWorkers {
            stop: stop.clone(),
            sockets: Vec::new(),
            threads: Vec::new(),
        };
        for (i, s) in sockets.into_iter().enumerate() {
            // A bounded wait, so a worker notices `stop` even if the wake-up below is missed.
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            let s = Arc::new(s);
            w.sockets.push(s.clone());
            let (table, stop, rt) = (table.clone(), stop.clone(), rt.clone());
            let t = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || serve(s, table, stop, rt))?;
            w.threads.push(t);
        }
        Ok(w)
    }
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for s in &self.sockets {
            // Wakes a worker blocked in recvmmsg/sendmmsg at once.
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        // The port is free again (for a rebind) only once every worker has let go of its socket.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Serves one UDP socket until `stop` is set.
fn serve(sock: Arc<Socket>, table: SharedTable, stop: Arc<AtomicBool>, rt: tokio::runtime::Handle) {
    // Plugins spawn background work (cache prefetch) from the synchronous path.
    let _enter = rt.enter();
    let local = sock
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new();
    let mut out: Vec<(Vec<u8>, SockAddr)> = Vec::with_capacity(BATCH);
    let mut later: Vec<(Box<Later>, SocketAddr)> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let n = match batch.recv(fd) {
            Ok(0) => {
                // Only a shut-down socket reads nothing; do not spin on it.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => {
                // e.g. an ICMP error queued on the socket: it is consumed by the failed call.
                continue;
            }
        };
        let t = match table.read() {
            Ok(g) => g.clone(),
            Err(_) => continue,
        };
        for i in 0..n {
            let Some((packet, client)) = batch.datagram(i) else {
                continue;
            };
            // A bug in one answer must not take the socket's only reader down with it: as
            // CoreDNS recovers a plugin's panic, count it and answer SERVFAIL.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                prepare(&t, packet, client, local, Proto::Udp)
            }))
            .unwrap_or_else(|_| {
                crate::metrics::registry().panics.with(&[]).inc();
                crate::dnsmsg::servfail_for(packet).map_or(Step::Drop, Step::Done)
            });
            match step {
                Step::Drop => {}
                Step::Done(bytes) => out.push((bytes, SockAddr::from(client))),
                Step::Later(l) => later.push((l, client)),
            }
        }
        if !later.is_empty() {
            // One hand-over to the runtime per batch (waking a runtime thread is the costly
            // part); from there each query is a task of its own.
            let batch = std::mem::take(&mut later);
            let sock = sock.clone();
            rt.spawn(async move {
                for (l, client) in batch {
                    let sock = sock.clone();
                    tokio::spawn(async move {
                        let bytes = l.run().await;
                        // Never blocks the runtime: a full send buffer drops the reply, as the
                        // network could.
                        let _ = sock.send_to_with_flags(
                            &bytes,
                            &SockAddr::from(client),
                            libc::MSG_DONTWAIT,
                        );
                    });
                }
            });
        }
        let mut sent = 0;
        while sent < out.len() && !stop.load(Ordering::Acquire) {
            match send_many(fd, &out[sent..]) {
                Ok(k) => sent += k.max(1),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A failed datagram (e.g. unreachable client) is skipped.
                Err(_) => sent += 1,
            }
        }
        out.clear();
    }
}

//! The UDP receive loop. Under load one `recvmmsg` takes up to a batch of queries and one
//! `sendmmsg` returns the answers that could be made from memory, so the per-query cost is
//! mostly the answer itself rather than system calls and task wake-ups; queries that need the
//! network (forward) continue in their own task.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use socket2::SockAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::dnsmsg::Proto;
use crate::server::{SharedTable, Step, prepare};

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

    /// One non-blocking recvmmsg; returns how many datagrams arrived.
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
                libc::MSG_DONTWAIT,
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

/// Sends many datagrams with one sendmmsg; returns how many went out.
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
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Serves one UDP socket until the task is aborted.
pub async fn serve(sock: Arc<UdpSocket>, table: SharedTable) {
    let local = sock
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new();
    let mut out: Vec<(Vec<u8>, SockAddr)> = Vec::with_capacity(BATCH);
    loop {
        if sock.readable().await.is_err() {
            continue;
        }
        let n = match sock.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => continue,
        };
        let t = match table.read() {
            Ok(g) => g.clone(),
            Err(_) => continue,
        };
        for i in 0..n {
            let Some((packet, client)) = batch.datagram(i) else {
                continue;
            };
            match prepare(&t, packet, client, local, Proto::Udp) {
                Step::Drop => {}
                Step::Done(bytes) => out.push((bytes, SockAddr::from(client))),
                Step::Later(later) => {
                    let sock = sock.clone();
                    tokio::spawn(async move {
                        let bytes = later.run().await;
                        let _ = sock.send_to(&bytes, client).await;
                    });
                }
            }
        }
        let mut sent = 0;
        while sent < out.len() {
            match sock.try_io(Interest::WRITABLE, || send_many(fd, &out[sent..])) {
                Ok(k) => sent += k.max(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The send buffer is full: wait for room, then go on.
                    if sock.writable().await.is_err() {
                        break;
                    }
                }
                // A failed datagram (e.g. unreachable client) is skipped.
                Err(_) => sent += 1,
            }
        }
        out.clear();
    }
}

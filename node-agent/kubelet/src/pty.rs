//! Pseudo-terminals for `exec` with `tty=true` (`kubectl exec -it`): the command gets the
//! terminal's slave side as its standard streams and controlling terminal, the kubelet
//! copies the master side to and from the websocket, and resize messages set its size.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Result, bail};
use nix::libc;

/// A terminal pair.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

fn check(what: &str, r: libc::c_int) -> Result<libc::c_int> {
    if r < 0 {
        bail!("{what}: {}", std::io::Error::last_os_error());
    }
    Ok(r)
}

/// Opens a new pseudo-terminal of the devpts instance of the root filesystem `root` (a
/// container's, as `/proc/<pid>/root`), so the command sees its terminal among its own
/// `/dev/pts` (`tty` names it), as runc allocates it inside the container. The slave side is
/// opened from the master (`TIOCGPTPEER`), without looking its name up on the node.
pub fn open_in(root: &std::path::Path) -> Result<Pty> {
    use std::os::unix::ffi::OsStrExt;
    let ptmx = std::ffi::CString::new(root.join("dev/ptmx").as_os_str().as_bytes())?;
    // SAFETY: plain libc calls on descriptors we own and a NUL-terminated path.
    unsafe {
        let m = check(
            "opening the container's /dev/ptmx",
            libc::open(
                ptmx.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ),
        )?;
        let master = OwnedFd::from_raw_fd(m);
        check("unlockpt", libc::unlockpt(m))?;
        let s = check(
            "opening the terminal's slave side",
            libc::ioctl(
                m,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ),
        )?;
        Ok(Pty {
            master,
            slave: OwnedFd::from_raw_fd(s),
        })
    }
}

/// Sets the terminal size (a `channel 4` resize message).
pub fn resize(master: &OwnedFd, width: u16, height: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    check("setting the terminal size", r)?;
    Ok(())
}

/// In the forked child: a new session whose controlling terminal is standard input.
/// Only system calls, so it is safe between fork and exec.
pub fn make_controlling_terminal() -> std::io::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_a_terminal_and_sets_its_size() {
        let pty = open_in(std::path::Path::new("/")).unwrap();
        resize(&pty.master, 120, 40).unwrap();
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(r, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));
    }
}

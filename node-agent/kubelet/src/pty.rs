//! Pseudo-terminals for `exec` with `tty=true` (`kubectl exec -it`): the command gets the
//! terminal's slave side as its standard streams and controlling terminal, the kubelet
//! copies the master side to and from the websocket, and resize messages set its size.

use std::ffi::CStr;
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

/// Opens a new pseudo-terminal.
pub fn open() -> Result<Pty> {
    // SAFETY: plain libc calls on descriptors we own; the name buffer is NUL-terminated by
    // ptsname_r on success.
    unsafe {
        let m = check(
            "posix_openpt",
            libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC),
        )?;
        let master = OwnedFd::from_raw_fd(m);
        check("grantpt", libc::grantpt(m))?;
        check("unlockpt", libc::unlockpt(m))?;
        let mut name = [0 as libc::c_char; 128];
        let r = libc::ptsname_r(m, name.as_mut_ptr(), name.len());
        if r != 0 {
            bail!("ptsname_r: {}", std::io::Error::from_raw_os_error(r));
        }
        let path = CStr::from_ptr(name.as_ptr());
        let s = check(
            "opening the terminal's slave side",
            libc::open(
                path.as_ptr(),
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
        let pty = open().unwrap();
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

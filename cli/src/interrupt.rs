//! The signals that stop a long command as Ctrl-C does — SIGINT, SIGTERM (`kill`, a service
//! manager, a CI runner cancelling a job) and SIGHUP (the terminal went away) — and the typed
//! error a command returns when one did, which the process turns into the conventional exit
//! code 128 + the signal's number.

use std::future::poll_fn;
use std::task::Poll;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// A signal that stops a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Int,
    Term,
    Hup,
}

impl StopSignal {
    pub const ALL: [StopSignal; 3] = [StopSignal::Int, StopSignal::Term, StopSignal::Hup];

    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Int => "SIGINT",
            StopSignal::Term => "SIGTERM",
            StopSignal::Hup => "SIGHUP",
        }
    }

    fn kind(self) -> SignalKind {
        match self {
            StopSignal::Int => SignalKind::interrupt(),
            StopSignal::Term => SignalKind::terminate(),
            StopSignal::Hup => SignalKind::hangup(),
        }
    }

    /// The shell's convention for a command a signal ended: 128 + the signal's number.
    pub fn exit_code(self) -> u8 {
        // 1, 2 and 15: well inside a byte.
        128 + self.kind().as_raw_value() as u8
    }
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A command stopped by a signal (after cleaning up what it had made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {signal}")]
pub struct Interrupted {
    pub signal: StopSignal,
}

impl Interrupted {
    pub fn exit_code(&self) -> u8 {
        self.signal.exit_code()
    }
}

/// The exit code for a command's error: 128 + the signal's number when a signal stopped it
/// (also under added context), else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    e.downcast_ref::<Interrupted>()
        .map_or(1, Interrupted::exit_code)
}

/// Handlers for all of [`StopSignal::ALL`]. From [`StopSignals::install`] on, none of these
/// signals ends the process by itself any more (tokio keeps its handler for the rest of the
/// process's life): each is delivered to [`StopSignals::recv`] instead.
pub struct StopSignals {
    streams: Vec<(StopSignal, Signal)>,
}

impl StopSignals {
    pub fn install() -> std::io::Result<StopSignals> {
        let streams = StopSignal::ALL
            .into_iter()
            .map(|s| Ok((s, signal(s.kind())?)))
            .collect::<std::io::Result<_>>()?;
        Ok(StopSignals { streams })
    }

    /// The next of the signals to arrive (one delivered before this call counts).
    pub async fn recv(&mut self) -> StopSignal {
        poll_fn(|cx| {
            for (which, stream) in &mut self.streams {
                // `None` only once the runtime shuts down: then nothing will arrive.
                if let Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return Poll::Ready(*which);
                }
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal_number() {
        assert_eq!(StopSignal::Int.exit_code(), 130);
        assert_eq!(StopSignal::Term.exit_code(), 143);
        assert_eq!(StopSignal::Hup.exit_code(), 129);
    }

    #[test]
    fn the_error_names_the_signal_and_keeps_its_code_under_context() {
        let e = anyhow::Error::new(Interrupted {
            signal: StopSignal::Term,
        });
        assert_eq!(e.to_string(), "interrupted by SIGTERM");
        let e = e
            .context("creating cluster \"lab\" failed")
            .context("and cleaning up failed too: boom");
        assert_eq!(exit_code(&e), 143);
        assert_eq!(
            format!("{e:#}"),
            "and cleaning up failed too: boom: creating cluster \"lab\" failed: interrupted by \
             SIGTERM"
        );
        assert_eq!(exit_code(&anyhow::anyhow!("interrupted by SIGTERM")), 1);
    }

    #[tokio::test]
    async fn a_signal_sent_to_the_process_is_received_and_named() {
        let mut signals = StopSignals::install().unwrap();
        // SIGHUP: the test runner never sends it, and from here on the handler holds it.
        nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGHUP).unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), signals.recv())
            .await
            .expect("SIGHUP delivered");
        assert_eq!(got, StopSignal::Hup);
    }
}

//! `reload [INTERVAL] [JITTER]`: the Corefile is checked every INTERVAL ± JITTER (30s, 15s);
//! a changed file is parsed and swapped in, a bad one is logged and the running config kept
//! (coredns plugin/reload/reload.go). The restart itself is the running instance's (its
//! `check_reload`): this plugin times the checks, tells whether the file changed, and reports
//! how the restart went.

use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha512};
use tokio::task::JoinHandle;

use crate::corefile::{CorefileError, Directive};
use crate::metrics::registry;
use crate::util::log;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    pub interval: Duration,
    pub jitter: Duration,
}

impl Reload {
    pub fn parse(d: &Directive) -> Result<Self, CorefileError> {
        let a = d.arg_strs();
        if a.len() > 2 || !d.block.is_empty() {
            return Err(d.err("expects [INTERVAL] [JITTER]"));
        }
        let interval = match a.first() {
            Some(s) => crate::util::parse_duration(s).map_err(|e| d.err(e))?,
            None => Duration::from_secs(30),
        };
        let jitter = match a.get(1) {
            Some(s) => crate::util::parse_duration(s).map_err(|e| d.err(e))?,
            None => Duration::from_secs(15),
        };
        if interval < Duration::from_secs(2) {
            return Err(d.err("interval value must be greater or equal to 2s"));
        }
        if jitter > interval / 2 {
            return Err(d.err("jitter value must be smaller than half of interval"));
        }
        Ok(Reload { interval, jitter })
    }

    /// The next wait: interval plus a random amount in [-jitter, +jitter].
    pub fn next_wait(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.interval;
        }
        let j = self.jitter.as_millis() as i64;
        let delta: i64 = rand::random_range(-j..=j);
        Duration::from_millis((self.interval.as_millis() as i64 + delta).max(100) as u64)
    }
}

impl Reload {
    /// Runs `check` after every [`Reload::next_wait`]; stops when it gives None (the server is
    /// gone).
    pub fn spawn<F, Fut>(self, mut check: F) -> JoinHandle<()>
    where
        F: FnMut() -> Option<Fut> + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(self.next_wait()).await;
                let Some(run) = check() else { return };
                run.await;
            }
        })
    }
}

/// The Corefile at `path` when it differs from the `running` text and from the last one tried
/// (`attempted`, so a bad file is reported once); logs `Reloading` then.
pub fn changed(path: &Path, running: &str, attempted: &Mutex<String>) -> Option<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        log("ERROR", "reload", format!("cannot read {}", path.display()));
        return None;
    };
    if text == running {
        return None;
    }
    {
        let mut a = attempted.lock().ok()?;
        if *a == text {
            return None;
        }
        *a = text.clone();
    }
    log("INFO", "", "Reloading");
    Some(text)
}

/// Logs how the restart with `text` went, as CoreDNS does (and counts a failure).
pub fn report(text: &str, result: anyhow::Result<()>) {
    match result {
        Ok(()) => {
            log(
                "INFO",
                "reload",
                format!("Running configuration SHA512 = {}", sha512_hex(text)),
            );
            log("INFO", "", "Reloading complete");
        }
        Err(e) => {
            registry().reload_failed.with(&[]).inc();
            log("ERROR", "", format!("Restart failed: {e:#}"));
        }
    }
}

fn sha512_hex(text: &str) -> String {
    hex::encode(Sha512::digest(text.as_bytes()))
}

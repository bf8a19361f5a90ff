//! `reload [INTERVAL] [JITTER]`: the Corefile is checked every INTERVAL ± JITTER (30s, 15s);
//! a changed file is parsed and swapped in, a bad one is logged and the running config kept.
//! The loop itself lives with the running instance (`crate::run`).

use std::time::Duration;

use crate::corefile::{CorefileError, Directive};

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

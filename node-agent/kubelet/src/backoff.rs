//! The kubelet's container restart back-off (its `flowcontrol.Backoff` as used by
//! `doBackOff`): the first restart after a crash is immediate, later ones wait 10 s, 20 s,
//! 40 s … up to 5 min; a container that ran for more than twice the cap (10 min) since its
//! last restart starts over at 10 s.

use std::time::{Duration, Instant};

/// Back-off settings (the kubelet's are fixed; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

/// One container's back-off entry.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    /// (current back-off, when it was last raised), None before the first restart.
    entry: Option<(Duration, Instant)>,
}

impl Backoff {
    pub fn new(cfg: BackoffConfig) -> Self {
        Backoff { cfg, entry: None }
    }

    /// The entry is forgotten once the container ran stably: more than twice the cap between
    /// the last restart and `finished`.
    fn expired(&self, finished: Instant, last_update: Instant) -> bool {
        finished.saturating_duration_since(last_update) > self.cfg.max * 2
    }

    /// How long after `finished` (the container's exit) the restart must wait; zero means
    /// restart now. Like `IsInBackOffSince`.
    pub fn delay(&self, finished: Instant) -> Duration {
        match self.entry {
            Some((backoff, last)) if !self.expired(finished, last) => backoff,
            _ => Duration::ZERO,
        }
    }

    /// Records a restart made at `now` for a container that exited at `finished`, raising the
    /// back-off for the next one. Like `Next`.
    pub fn restarted(&mut self, finished: Instant, now: Instant) {
        let next = match self.entry {
            Some((backoff, last)) if !self.expired(finished, last) => {
                (backoff * 2).min(self.cfg.max)
            }
            _ => self.cfg.initial,
        };
        self.entry = Some((next, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_then_doubling_to_the_cap() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut t = Instant::now();
        let mut delays = vec![];
        for _ in 0..8 {
            // The container crashes one second after each start.
            t += Duration::from_secs(1);
            let d = b.delay(t);
            delays.push(d.as_secs());
            t += d;
            b.restarted(t - d, t);
        }
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn resets_after_running_ten_minutes() {
        let mut b = Backoff::new(BackoffConfig::default());
        let t0 = Instant::now();
        b.restarted(t0, t0);
        b.restarted(t0, t0 + Duration::from_secs(10));
        assert_eq!(
            b.delay(t0 + Duration::from_secs(11)),
            Duration::from_secs(20)
        );
        let late = t0 + Duration::from_secs(10 + 601);
        assert_eq!(b.delay(late), Duration::ZERO);
        b.restarted(late, late);
        assert_eq!(
            b.delay(late + Duration::from_secs(1)),
            Duration::from_secs(10)
        );
    }
}

//! KIND-style step status: a spinner per step that turns into ✓ or ✗ with its duration on a
//! terminal, plain ` • step …` / ` ✓ step` lines otherwise, nothing with `-q`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Spinner,
    Plain,
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() {
            Mode::Spinner
        } else {
            Mode::Plain
        }
    }
}

/// Prints the status of a multi-step command.
#[derive(Debug, Clone)]
pub struct Status {
    mode: Mode,
}

/// One running step; finish it with [`Step::done`] or [`Step::fail`]. Dropping it unfinished
/// (say, on Ctrl-C) marks it failed so the screen never shows a spinner that stopped turning.
pub struct Step {
    title: String,
    started: Instant,
    mode: Mode,
    bar: Option<ProgressBar>,
    finished: bool,
}

impl Status {
    pub fn new(mode: Mode) -> Status {
        Status { mode }
    }

    /// A line that is not a step (a heading or a final hint).
    pub fn line(&self, text: &str) {
        if self.mode != Mode::Quiet {
            println!("{text}");
        }
    }

    pub fn step(&self, title: impl Into<String>) -> Step {
        let title = title.into();
        let bar = match self.mode {
            Mode::Spinner => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(" {spinner} {msg}")
                        .expect("constant template")
                        .tick_strings(&["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏", " "]),
                );
                bar.set_message(format!("{title} …"));
                bar.enable_steady_tick(Duration::from_millis(80));
                Some(bar)
            }
            Mode::Plain => {
                println!(" • {title} …");
                let _ = std::io::stdout().flush();
                None
            }
            Mode::Quiet => None,
        };
        Step {
            title,
            started: Instant::now(),
            mode: self.mode,
            bar,
            finished: false,
        }
    }
}

impl Step {
    pub fn done(mut self) {
        self.finish(true);
    }

    pub fn fail(mut self) {
        self.finish(false);
    }

    fn finish(&mut self, ok: bool) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.mode == Mode::Quiet {
            return;
        }
        let mark = if ok { "✓" } else { "✗" };
        let took = format_duration(self.started.elapsed());
        println!(" {mark} {} ({took})", self.title);
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// `850ms`, `1.2s`, `1m3s`: short and stable enough to read in logs.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kinds() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(63)), "1m3s");
    }
}

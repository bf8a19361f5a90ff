//! KIND-style step status: a spinner per step that turns into ✓ or ✗ with its duration on a
//! terminal, plain ` • step …` / ` ✓ step` lines otherwise, nothing with `-q`.
//!
//! Step lines go to standard output. The `-v` log goes to standard error through [`LogWriter`],
//! which lifts a turning spinner (also drawn on standard error) out of the way while a log line
//! is written, so neither garbles the other.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
        Mode::choose(quiet, std::io::stdout().is_terminal())
    }

    /// `-q` wins; otherwise a spinner only where a person watches standard output.
    pub fn choose(quiet: bool, stdout_is_terminal: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if stdout_is_terminal {
            Mode::Spinner
        } else {
            Mode::Plain
        }
    }
}

/// Where step and status lines are written: standard output, or (in tests) a buffer.
type Sink = Arc<Mutex<dyn Write + Send>>;

/// Prints the status of a multi-step command.
#[derive(Clone)]
pub struct Status {
    mode: Mode,
    out: Sink,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status").field("mode", &self.mode).finish()
    }
}

/// One running step; finish it with [`Step::done`] or [`Step::fail`]. Dropping it unfinished
/// (say, on Ctrl-C) marks it failed so the screen never shows a spinner that stopped turning.
pub struct Step {
    title: String,
    started: Instant,
    mode: Mode,
    out: Sink,
    /// The spinner and its number in [`ACTIVE_SPINNER`].
    bar: Option<(u64, ProgressBar)>,
    finished: bool,
}

/// The spinner turning right now, if any: [`LogWriter`] suspends it around each log line.
static ACTIVE_SPINNER: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);
static SPINNER_IDS: AtomicU64 = AtomicU64::new(0);

impl Status {
    pub fn new(mode: Mode) -> Status {
        Status::with_sink(mode, Arc::new(Mutex::new(std::io::stdout())))
    }

    fn with_sink(mode: Mode, out: Sink) -> Status {
        Status { mode, out }
    }

    /// A line that is not a step (a heading or a final hint).
    pub fn line(&self, text: &str) {
        if self.mode != Mode::Quiet {
            write_line(&self.out, text);
        }
    }

    /// `WARNING: <text>` on standard error (around a turning spinner), unless `-q`.
    pub fn warning(&self, text: &str) {
        if self.mode != Mode::Quiet {
            error_line(&format!("WARNING: {text}"));
        }
    }

    pub fn step(&self, title: impl Into<String>) -> Step {
        let title = title.into();
        tracing::debug!(step = %title, "step started");
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
                let id = SPINNER_IDS.fetch_add(1, Ordering::Relaxed);
                *lock(&ACTIVE_SPINNER) = Some((id, bar.clone()));
                Some((id, bar))
            }
            Mode::Plain => {
                write_line(&self.out, &plain_started(&title));
                None
            }
            Mode::Quiet => None,
        };
        Step {
            title,
            started: Instant::now(),
            mode: self.mode,
            out: self.out.clone(),
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
        let took = self.started.elapsed();
        if let Some((id, bar)) = &self.bar {
            let mut active = lock(&ACTIVE_SPINNER);
            if active.as_ref().is_some_and(|(a, _)| a == id) {
                *active = None;
            }
            drop(active);
            bar.finish_and_clear();
        }
        // Logged after the spinner is gone (and with no lock held: the log writer takes it).
        tracing::debug!(
            step = %self.title,
            ok,
            took_ms = took.as_millis() as u64,
            "step finished"
        );
        if self.mode != Mode::Quiet {
            write_line(&self.out, &plain_finished(&self.title, ok, took));
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// ` • <title> …`: a step begins (plain mode).
fn plain_started(title: &str) -> String {
    format!(" • {title} …")
}

/// ` ✓ <title> (<took>)` or ` ✗ <title> (<took>)`: a step ended.
fn plain_finished(title: &str, ok: bool, took: Duration) -> String {
    let mark = if ok { "✓" } else { "✗" };
    format!(" {mark} {title} ({})", format_duration(took))
}

/// Clears the turning spinner, if any, at once: a signal stopped the command, and the line it
/// turned on must not linger (the step itself still ends with its ✗ when dropped).
pub fn clear_spinner() {
    let bar = lock(&ACTIVE_SPINNER).take();
    if let Some((_, bar)) = bar {
        bar.finish_and_clear();
    }
}

/// One line on standard error, written around a turning spinner as [`LogWriter`] writes.
pub fn error_line(text: &str) {
    let _ = LogWriter.write_all(format!("{text}\n").as_bytes());
}

/// One whole line, flushed at once, so a line never waits half-written in a buffer.
fn write_line(out: &Sink, text: &str) {
    let mut out = lock(out);
    // A closed standard output (`minikind create … | head -1`) must not stop the command.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while printing leaves nothing half-done that matters here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Standard error for the `-v` log: each formatted event is written in one piece, with the
/// turning spinner (if any) cleared first and redrawn after, so log lines and the spinner never
/// share a screen line. Step lines stay on standard output, untouched.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = lock(&ACTIVE_SPINNER).as_ref().map(|(_, b)| b.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
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

    /// A status whose lines land in a buffer, and a way to read them back.
    fn buffered(mode: Mode) -> (Status, impl Fn() -> String) {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let status = Status::with_sink(mode, buf.clone());
        (status, move || {
            String::from_utf8(buf.lock().unwrap().clone()).unwrap()
        })
    }

    /// The printed lines with every `(<duration>)` replaced by `(T)`.
    fn without_durations(text: &str) -> Vec<String> {
        let re = regex::Regex::new(r"\((\d+ms|\d+\.\ds|\d+m\d+s)\)$").unwrap();
        text.lines()
            .map(|l| re.replace(l, "(T)").into_owned())
            .collect()
    }

    #[test]
    fn durations_read_like_kinds() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(63)), "1m3s");
    }

    #[test]
    fn plain_mode_prints_a_bullet_then_a_mark_with_the_duration() {
        let (status, printed) = buffered(Mode::Plain);
        status.line("Creating cluster \"lab\" ...");
        let step = status.step("Ensuring node image");
        // The bullet is out before the step ends: a log reader sees what is in progress.
        assert_eq!(
            printed(),
            "Creating cluster \"lab\" ...\n • Ensuring node image …\n"
        );
        step.done();
        status.step("Preparing nodes 📦").fail();
        drop(status.step("Interrupted"));
        assert_eq!(
            without_durations(&printed()),
            [
                "Creating cluster \"lab\" ...",
                " • Ensuring node image …",
                " ✓ Ensuring node image (T)",
                " • Preparing nodes 📦 …",
                " ✗ Preparing nodes 📦 (T)",
                " • Interrupted …",
                " ✗ Interrupted (T)",
            ]
        );
        assert_eq!(
            plain_finished("Starting control-plane", true, Duration::from_millis(1234)),
            " ✓ Starting control-plane (1.2s)"
        );
    }

    #[test]
    fn a_step_finishes_once() {
        let (status, printed) = buffered(Mode::Plain);
        let mut step = status.step("Once");
        step.finish(true);
        drop(step);
        let text = printed();
        assert_eq!(text.matches("Once").count(), 2, "{text}");
        assert!(!text.contains('✗'), "{text}");
    }

    #[test]
    fn quiet_prints_nothing_at_all() {
        let (status, printed) = buffered(Mode::Quiet);
        status.line("Creating cluster \"lab\" ...");
        status.step("Ensuring node image").done();
        status.step("Preparing nodes").fail();
        drop(status.step("Interrupted"));
        assert_eq!(printed(), "");
    }

    #[test]
    fn quiet_wins_and_a_terminal_gets_the_spinner() {
        assert_eq!(Mode::choose(true, true), Mode::Quiet);
        assert_eq!(Mode::choose(true, false), Mode::Quiet);
        assert_eq!(Mode::choose(false, true), Mode::Spinner);
        assert_eq!(Mode::choose(false, false), Mode::Plain);
    }

    /// The spinner tests share [`ACTIVE_SPINNER`]: one at a time.
    static SPINNER_TESTS: Mutex<()> = Mutex::new(());

    #[test]
    fn a_spinner_step_is_registered_for_the_log_writer_until_it_ends() {
        let _one = lock(&SPINNER_TESTS);
        let (status, printed) = buffered(Mode::Spinner);
        let step = status.step("Turning");
        assert!(lock(&ACTIVE_SPINNER).is_some());
        // A log line while it turns goes around it (to standard error), not into the steps.
        LogWriter.write_all(b"").unwrap();
        step.done();
        assert!(lock(&ACTIVE_SPINNER).is_none());
        assert_eq!(without_durations(&printed()), [" ✓ Turning (T)"]);
    }

    #[test]
    fn clearing_the_spinner_unregisters_it_and_the_step_still_ends_marked() {
        let _one = lock(&SPINNER_TESTS);
        let (status, printed) = buffered(Mode::Spinner);
        let step = status.step("Interrupted");
        clear_spinner();
        assert!(lock(&ACTIVE_SPINNER).is_none());
        clear_spinner(); // nothing turning: nothing to do
        drop(step);
        assert_eq!(without_durations(&printed()), [" ✗ Interrupted (T)"]);
    }
}

//! Container logs in the CRI format the kubelet reads (`<RFC3339Nano time> <stream> <P|F>
//! <text>`), one file per container run under
//! `<root>/logs/<namespace>_<pod>_<uid>/<container>/<restartCount>.log`; the current run and
//! the previous one are kept, as the kubelet keeps the last dead container.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

/// Lines longer than this are split into partial (`P`) records, as containerd does.
const MAX_RECORD: usize = 16 * 1024;

/// The log directory of one container.
pub fn container_dir(
    root: &Path,
    namespace: &str,
    pod: &str,
    uid: &str,
    container: &str,
) -> PathBuf {
    root.join("logs")
        .join(format!("{namespace}_{pod}_{uid}"))
        .join(container)
}

/// The file of run `restart` of a container.
pub fn run_file(dir: &Path, restart: i32) -> PathBuf {
    dir.join(format!("{restart}.log"))
}

fn now_rfc3339_nano() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string()
}

/// The log file of a running container; stdout and stderr copy into it line by line.
#[derive(Clone)]
pub struct LogWriter {
    file: Arc<Mutex<tokio::fs::File>>,
}

impl LogWriter {
    /// Opens run `restart`'s file (appending: a kubelet restart re-opens it) and removes the
    /// runs older than the previous one.
    pub async fn create(dir: &Path, restart: i32) -> Result<LogWriter> {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating the log directory {}", dir.display()))?;
        let path = run_file(dir, restart);
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .with_context(|| format!("opening the container log {}", path.display()))?;
        for old in 0..restart.saturating_sub(1) {
            let _ = tokio::fs::remove_file(run_file(dir, old)).await;
        }
        Ok(LogWriter {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Copies `stream` (the container's `stdout` or `stderr`) into the file until it closes.
    pub async fn copy(self, stream_name: &'static str, mut stream: impl AsyncRead + Unpin) {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                self.record(stream_name, &line[..line.len() - 1], true)
                    .await;
            }
            while pending.len() >= MAX_RECORD {
                let part: Vec<u8> = pending.drain(..MAX_RECORD).collect();
                self.record(stream_name, &part, false).await;
            }
        }
        if !pending.is_empty() {
            // The stream ended without a newline: the rest is a record of its own (as
            // containerd writes it), so the next stream's text does not run into it.
            self.record(stream_name, &pending, true).await;
        }
    }

    async fn record(&self, stream_name: &str, text: &[u8], full: bool) {
        let mut line = format!(
            "{} {stream_name} {} ",
            now_rfc3339_nano(),
            if full { "F" } else { "P" }
        )
        .into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        let mut f = self.file.lock().await;
        // tokio's File finishes writes in the background: flush so readers see the record.
        if let Err(e) = f.write_all(&line).await.and(f.flush().await) {
            tracing::warn!("writing a container log: {e}");
        }
    }
}

/// One parsed CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub full: bool,
    pub text: &'a [u8],
}

/// Parses one line (without its newline); None if it is not a CRI record.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(&[]);
    Some(Record {
        time,
        stream,
        full: !tag.starts_with(b"P"),
        text,
    })
}

/// What `kubectl logs` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// The last N lines only.
    pub tail_lines: Option<usize>,
    /// At most this many bytes of output.
    pub limit_bytes: Option<usize>,
    /// Only records newer than this many seconds.
    pub since_seconds: Option<i64>,
}

/// Renders records as `kubectl logs` prints them: the text (with its time first when asked),
/// partial records joined to the next one.
pub fn render(data: &[u8], opts: &LogOptions) -> Vec<u8> {
    let since = opts.since_seconds.map(|s| {
        jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(s))
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    });
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut open = false;
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(rec) = parse_record(raw) else {
            continue;
        };
        if let Some(since) = since
            && rec.time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since)
        {
            continue;
        }
        if !open {
            let mut l = Vec::new();
            if opts.timestamps {
                l.extend_from_slice(rec.time.as_bytes());
                l.push(b' ');
            }
            lines.push(l);
        }
        if let Some(l) = lines.last_mut() {
            l.extend_from_slice(rec.text);
            if rec.full {
                l.push(b'\n');
            }
        }
        open = !rec.full;
    }
    if let Some(n) = opts.tail_lines {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let mut out: Vec<u8> = lines.concat();
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit);
    }
    out
}

/// Sends new records of `path` to `out` as they are written, from byte `offset` on, until
/// `done` says the run ended and everything written has been sent, or the receiver goes away.
pub async fn follow(
    path: PathBuf,
    mut offset: u64,
    timestamps: bool,
    mut done: tokio::sync::watch::Receiver<bool>,
    out: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    use tokio::io::AsyncSeekExt;
    let opts = LogOptions {
        timestamps,
        ..LogOptions::default()
    };
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let finished = *done.borrow();
        if let Ok(mut f) = tokio::fs::File::open(&path).await
            && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
        {
            let mut chunk = Vec::new();
            if let Ok(n) = f.read_to_end(&mut chunk).await {
                offset += n as u64;
                carry.extend_from_slice(&chunk);
                // Only whole lines are rendered; a half-written one waits.
                if let Some(end) = carry.iter().rposition(|b| *b == b'\n') {
                    let whole: Vec<u8> = carry.drain(..=end).collect();
                    let text = render(&whole, &opts);
                    if !text.is_empty() && out.send(text).await.is_err() {
                        return;
                    }
                }
            }
        }
        if finished {
            return;
        }
        tokio::select! {
            _ = done.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = out.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"2026-01-01T00:00:00.000000001Z stdout F hello\n\
2026-01-01T00:00:01.000000000Z stderr P par\n\
2026-01-01T00:00:01.000000001Z stderr F tial\n\
2026-01-01T00:00:02.000000000Z stdout F \n\
2026-01-01T00:00:03.000000000Z stdout F last\n";

    #[test]
    fn renders_text_joins_partials_and_tails() {
        let all = render(SAMPLE, &LogOptions::default());
        assert_eq!(all, b"hello\npartial\n\nlast\n");
        let tail = render(
            SAMPLE,
            &LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(tail, b"\nlast\n");
        let ts = render(
            SAMPLE,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(ts, b"2026-01-01T00:00:03.000000000Z last\n");
        let limited = render(
            SAMPLE,
            &LogOptions {
                limit_bytes: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(limited, b"hel");
        // Everything in the sample is older than a minute.
        let since = render(
            SAMPLE,
            &LogOptions {
                since_seconds: Some(60),
                ..Default::default()
            },
        );
        assert!(since.is_empty());
    }

    #[tokio::test]
    async fn writer_records_lines_per_stream_and_keeps_two_runs() {
        let dir = tempfile::tempdir().unwrap();
        for run in 0..3 {
            let w = LogWriter::create(dir.path(), run).await.unwrap();
            let out: &[u8] = b"one\ntwo";
            let err: &[u8] = b"oops\n";
            w.clone().copy("stdout", out).await;
            w.copy("stderr", err).await;
        }
        assert!(!run_file(dir.path(), 0).exists());
        let text = std::fs::read(run_file(dir.path(), 2)).unwrap();
        let recs: Vec<Record> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap())
            .collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            (recs[0].stream, recs[0].full, recs[0].text),
            ("stdout", true, &b"one"[..])
        );
        assert_eq!((recs[1].full, recs[1].text), (true, &b"two"[..]));
        assert_eq!((recs[2].stream, recs[2].text), ("stderr", &b"oops"[..]));
        assert_eq!(
            render(
                &std::fs::read(run_file(dir.path(), 1)).unwrap(),
                &LogOptions::default()
            ),
            b"one\ntwo\noops\n"
        );
    }
}

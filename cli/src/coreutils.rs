//! The two coreutils pods need most (`sleep` to stay alive, `cat` to show a file), so that
//! the seeds' manifests run whatever the host has. Busybox, when the host has one, is only an
//! extra.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

/// `sleep N[smhd]…`, or `sleep infinity`.
pub fn sleep_main(args: Vec<OsString>) -> i32 {
    let mut total = Duration::ZERO;
    let operands: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if operands.is_empty() {
        eprintln!("sleep: missing operand");
        return 1;
    }
    for op in &operands {
        match parse_sleep(op) {
            Some(None) => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Some(Some(d)) => total += d,
            None => {
                eprintln!("sleep: invalid time interval '{op}'");
                return 1;
            }
        }
    }
    std::thread::sleep(total);
    0
}

/// `Some(None)` is `infinity`.
fn parse_sleep(s: &str) -> Option<Option<Duration>> {
    if s == "infinity" || s == "inf" {
        return Some(None);
    }
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1.0),
        (i, 'm') => (&s[..i], 60.0),
        (i, 'h') => (&s[..i], 3600.0),
        (i, 'd') => (&s[..i], 86400.0),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    Some(Some(Duration::from_secs_f64(v * mult)))
}

/// `cat [FILE…]` (`-` or nothing: standard input).
pub fn cat_main(args: Vec<OsString>) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut files: Vec<OsString> = args.into_iter().skip(1).collect();
    if files.is_empty() {
        files.push("-".into());
    }
    let mut code = 0;
    for f in files {
        let r = if f == "-" {
            std::io::copy(&mut std::io::stdin().lock(), &mut out).map(|_| ())
        } else {
            std::fs::File::open(&f)
                .and_then(|mut file| std::io::copy(&mut file, &mut out).map(|_| ()))
        };
        if let Err(e) = r {
            eprintln!("cat: {}: {e}", f.to_string_lossy());
            code = 1;
        }
    }
    let _ = out.flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_intervals() {
        assert_eq!(parse_sleep("3"), Some(Some(Duration::from_secs(3))));
        assert_eq!(parse_sleep("1.5s"), Some(Some(Duration::from_millis(1500))));
        assert_eq!(parse_sleep("2m"), Some(Some(Duration::from_secs(120))));
        assert_eq!(parse_sleep("1h"), Some(Some(Duration::from_secs(3600))));
        assert_eq!(parse_sleep("infinity"), Some(None));
        assert_eq!(parse_sleep("x"), None);
        assert_eq!(parse_sleep("-1"), None);
    }
}

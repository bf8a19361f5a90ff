//! A reader that goes away (`minikind completion bash | head -1`) ends a printing command
//! quietly by SIGPIPE, as `cat` and kubectl end, never with a panic and its backtrace.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_ends_a_printing_command_by_sigpipe_without_a_panic() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // nobody will read: every write fails
    let out = Command::new(env!("CARGO_BIN_EXE_minikind"))
        .args(["completion", "zsh"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(13), "{:?}: {stderr}", out.status);
}

//! Running a command inside a node container through the engine's exec API.

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;

/// What a command run in a node printed and how it ended.
#[derive(Debug)]
pub struct Exec {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Exec {
    pub fn ok(&self) -> bool {
        self.exit_code == 0
    }
}

pub async fn exec_in(docker: &Docker, container: &str, argv: &[&str]) -> Result<Exec> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("preparing `{}` in {container}", argv.join(" ")))?;
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("running `{}` in {container}", argv.join(" ")))?
    {
        while let Some(chunk) = output.next().await {
            match chunk.context("reading the command's output")? {
                LogOutput::StdOut { message } => {
                    stdout.push_str(&String::from_utf8_lossy(&message))
                }
                LogOutput::StdErr { message } => {
                    stderr.push_str(&String::from_utf8_lossy(&message))
                }
                _ => {}
            }
        }
    }
    let exit_code = docker
        .inspect_exec(&created.id)
        .await
        .context("reading the command's exit code")?
        .exit_code
        .unwrap_or(-1);
    Ok(Exec {
        exit_code,
        stdout,
        stderr,
    })
}

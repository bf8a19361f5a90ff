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
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let StartExecResults::Attached { output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("running `{}` in {container}", argv.join(" ")))?
    {
        (stdout, stderr) = collect(output).await?;
    }
    let exit_code = exit_code(docker, &created.id).await?;
    Ok(Exec {
        exit_code,
        stdout,
        stderr,
    })
}

/// Runs a command in a node with its standard input fed from `input` (chunks until the
/// channel closes, then end-of-file), as `docker exec -i` does: the stream the CLI pipes an
/// image archive through into `minikind node images import`.
pub async fn exec_with_input(
    docker: &Docker,
    container: &str,
    argv: &[&str],
    mut input: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> Result<Exec> {
    use tokio::io::AsyncWriteExt;
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("preparing `{}` in {container}", argv.join(" ")))?;
    let StartExecResults::Attached {
        output,
        input: mut stdin,
    } = docker
        .start_exec(&created.id, None)
        .await
        .with_context(|| format!("running `{}` in {container}", argv.join(" ")))?
    else {
        anyhow::bail!(
            "`{}` in {container}: the engine did not attach",
            argv.join(" ")
        );
    };
    let feed = async move {
        while let Some(chunk) = input.recv().await {
            stdin.write_all(&chunk).await?;
        }
        // End-of-file for the command: the write half closes, the output keeps coming.
        stdin.shutdown().await
    };
    let (fed, collected) = tokio::join!(feed, collect(output));
    let (stdout, stderr) = collected?;
    let exit_code = exit_code(docker, &created.id).await?;
    // A command that stopped reading (it failed) breaks the pipe: its own error says more.
    if let Err(e) = fed
        && exit_code == 0
    {
        return Err(e).with_context(|| format!("sending standard input to {container}"));
    }
    Ok(Exec {
        exit_code,
        stdout,
        stderr,
    })
}

/// The command's standard output and error, read until it ends.
async fn collect(
    mut output: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Unpin,
) -> Result<(String, String)> {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    while let Some(chunk) = output.next().await {
        match chunk.context("reading the command's output")? {
            LogOutput::StdOut { message } => stdout.push_str(&String::from_utf8_lossy(&message)),
            LogOutput::StdErr { message } => stderr.push_str(&String::from_utf8_lossy(&message)),
            _ => {}
        }
    }
    Ok((stdout, stderr))
}

/// How the exec ended (-1 when the engine does not say).
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64> {
    Ok(docker
        .inspect_exec(exec_id)
        .await
        .context("reading the command's exit code")?
        .exit_code
        .unwrap_or(-1))
}

//! `minikind exec` and `minikind logs`: kubectl's two pod commands, through the API server (which
//! proxies to the node's kubelet) with kube-rs.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{AttachParams, LogParams};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Runs `command` in a pod's container, copying its output here; returns its exit code.
pub async fn exec(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: &[String],
) -> Result<i32> {
    if command.is_empty() {
        bail!("no command given: `minikind exec POD -- COMMAND [ARGS…]`");
    }
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    exec_to(&api, pod, container, command, &mut stdout, &mut stderr)
        .await
        .with_context(|| format!("exec in pod {namespace}/{pod}"))
}

/// Runs `command` in a pod's container through the API server (which proxies to the node's
/// kubelet), copying its output and errors to `out` and `err` as they come; returns its exit
/// code.
pub async fn exec_to<O, E>(
    api: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    command: &[String],
    out: &mut O,
    err: &mut E,
) -> Result<i32>
where
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    if let Some(c) = container {
        params = params.container(c);
    }
    let mut proc = api
        .exec(pod, command.to_vec(), &params)
        .await
        .map_err(crate::objects::api::api_error)?;
    let mut proc_out = proc.stdout().context("no stdout stream")?;
    let mut proc_err = proc.stderr().context("no stderr stream")?;
    let status = proc.take_status().context("no status channel")?;
    let copy_out = async {
        tokio::io::copy(&mut proc_out, out).await?;
        out.flush().await
    };
    let copy_err = async {
        tokio::io::copy(&mut proc_err, err).await?;
        err.flush().await
    };
    let (a, b) = tokio::join!(copy_out, copy_err);
    a.context("copying the command's output")?;
    b.context("copying the command's errors")?;
    let status = status.await;
    proc.join().await.context("closing the exec session")?;
    Ok(exit_code(status.as_ref()))
}

/// The exit code in the exec session's final Status: Success → 0; `NonZeroExitCode` carries
/// it in `details.causes[ExitCode]`.
fn exit_code(status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> i32 {
    let Some(s) = status else { return 1 };
    if s.status.as_deref() == Some("Success") {
        return 0;
    }
    s.details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref()?.parse().ok())
        .unwrap_or(1)
}

/// Prints (or follows) a container's log.
pub async fn logs(
    client: kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    follow: bool,
    previous: bool,
    tail: Option<i64>,
) -> Result<()> {
    use futures::{AsyncBufReadExt, TryStreamExt};
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let params = LogParams {
        container: container.map(str::to_string),
        follow,
        previous,
        tail_lines: tail,
        ..Default::default()
    };
    if follow {
        let mut lines = api
            .log_stream(pod, &params)
            .await
            .map_err(crate::objects::api::api_error)
            .with_context(|| format!("logs of pod {namespace}/{pod}"))?
            .lines();
        while let Some(line) = lines.try_next().await.context("reading the log")? {
            println!("{line}");
        }
    } else {
        let text = api
            .logs(pod, &params)
            .await
            .map_err(crate::objects::api::api_error)
            .with_context(|| format!("logs of pod {namespace}/{pod}"))?;
        print!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

    #[test]
    fn exit_codes_come_from_the_status() {
        let ok = Status {
            status: Some("Success".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(&ok)), 0);
        let failed = Status {
            status: Some("Failure".into()),
            reason: Some("NonZeroExitCode".into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(Some(&failed)), 3);
        assert_eq!(exit_code(None), 1);
    }
}

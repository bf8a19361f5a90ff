//! Waiting for a node's agent to say it has booted, by following the container's log as KIND
//! follows its nodes' logs.

use std::time::Duration;

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use futures::StreamExt;

/// Waits until `marker` appears in the container's log (counting only lines logged at or after
/// `since`, a Unix time in seconds), or fails with the log's tail when the container stops or
/// the time runs out.
pub async fn log_line(
    docker: &Docker,
    container: &str,
    marker: &str,
    since: i64,
    limit: Duration,
) -> Result<()> {
    let opts = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .since(since as i32)
        .build();
    let mut stream = docker.logs(container, Some(opts));
    let mut tail: Vec<String> = Vec::new();
    let mut partial = String::new();
    let found = tokio::time::timeout(limit, async {
        while let Some(item) = stream.next().await {
            let Ok(chunk) = item else { break };
            partial.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            while let Some(nl) = partial.find('\n') {
                let line: String = partial.drain(..=nl).collect();
                let line = line.trim_end().to_string();
                if line.contains(marker) {
                    return true;
                }
                tail.push(line);
                if tail.len() > 15 {
                    tail.remove(0);
                }
            }
        }
        false
    })
    .await;
    match found {
        Ok(true) => Ok(()),
        Ok(false) => {
            let state = docker
                .inspect_container(container, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|i| i.state)
                .map(|s| format!("{:?} (exit code {})", s.status, s.exit_code.unwrap_or(-1)))
                .unwrap_or_else(|| "gone".to_string());
            bail!(
                "node {container} stopped before it booted: {state}; its log ends:\n{}",
                tail.join("\n")
            )
        }
        Err(_) => bail!(
            "node {container} did not boot within {}; its log ends:\n{}",
            humantime::format_duration(limit),
            tail.join("\n")
        ),
    }
}

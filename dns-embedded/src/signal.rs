//! Clean exit on SIGTERM/SIGINT. As PID 1 of a container a process gets no default action for
//! SIGTERM, so without this `docker stop` would wait its full timeout and then SIGKILL.

/// Resolves when the process is asked to stop.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

//! Running a piece of work inside another network namespace. `setns` changes only the calling
//! thread, so the work runs on a short-lived thread of its own: sockets it binds stay in that
//! namespace for their whole life, and programs it starts inherit the namespace.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

/// Why entering a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("entering network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("the thread working in network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

/// Runs `work` in the network namespace at `path` (e.g. `/proc/<pid>/ns/net` or
/// `/run/netns/<name>`), or right here when `path` is `None`.
pub fn in_netns<T, F>(path: Option<&Path>, work: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let Some(path) = path else {
        return Ok(work());
    };
    let path = path.to_path_buf();
    let file = File::open(&path).map_err(|source| NetnsError::Open {
        path: path.clone(),
        source,
    })?;
    let thread_path = path.clone();
    let handle = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                path: thread_path,
                source,
            })?;
            Ok(work())
        })
        .map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
    handle.join().map_err(|_| NetnsError::Panicked { path })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_path_work_runs_here() {
        assert_eq!(in_netns(None, || 7).unwrap(), 7);
    }

    #[test]
    fn a_missing_namespace_is_named_in_the_error() {
        let err = in_netns(Some(Path::new("/nonexistent/netns")), || ()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = in_netns(Some(file.path()), || ()).unwrap_err();
        assert!(matches!(err, NetnsError::Enter { .. }), "{err}");
    }
}

//! One minikind process at a time imports or prunes node images on this host.
//!
//! The engine imports an image and tags it in two steps; between them the new image is
//! untagged and unused, which is exactly what pruning removes. Holding this lock around
//! "import and tag" and around "list and remove" keeps one minikind's prune from taking
//! another's image in that moment.

use nix::fcntl::{Flock, FlockArg};

/// Held while importing or pruning; released when dropped.
pub struct ImagesLock(#[allow(dead_code)] Flock<std::fs::File>);

/// `$XDG_CACHE_HOME/minikind/node-images.lock` (else `~/.cache/minikind/…`), taken exclusively.
/// `None` where no such file can be made (no home directory): the import or prune goes on
/// unlocked, as before, and says so in the debug log.
pub async fn lock() -> Option<ImagesLock> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    let path = base.join("minikind").join("node-images.lock");
    let taken = tokio::task::spawn_blocking(move || -> std::io::Result<ImagesLock> {
        std::fs::create_dir_all(path.parent().unwrap_or(&path))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(ImagesLock)
            .map_err(|(_, e)| std::io::Error::from(e))
    })
    .await;
    match taken {
        Ok(Ok(lock)) => Some(lock),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "node images: no lock file; going on unlocked");
            None
        }
        Err(e) => {
            tracing::debug!(error = %e, "node images: taking the lock failed; going on unlocked");
            None
        }
    }
}

//! One minikind process at a time imports or prunes node images on this host.
//!
//! The engine imports an image and tags it in two steps; between them the new image is
//! untagged and unused, which is exactly what pruning removes. Holding this lock around
//! "import and tag" and around "list and remove" keeps one minikind's prune from taking
//! another's image in that moment.

use nix::fcntl::{Flock, FlockArg};

/// Held while importing or pruning; released when dropped.
pub struct ImagesLock(#[allow(dead_code)] Flock<std::fs::File>);

/// minikind's cache folder on this host: `$XDG_CACHE_HOME/minikind`, else `~/.cache/minikind`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("minikind"))
}

/// `<cache>/node-images.lock`, taken exclusively. `None` where no such file can be made (no
/// home directory): the import or prune goes on unlocked and says so in the debug log.
pub async fn lock() -> Option<ImagesLock> {
    let path = cache_dir()?.join("node-images.lock");
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

/// Node image tags a create or build used lately, one empty file a tag under
/// `<cache>/node-images/` whose modification time is the last use. Another executable's
/// image in use by a create right now (between its look-up and its containers) must not be
/// pruned by this one, and the engine does not say when an image was last used.
pub mod recent {
    use std::time::{Duration, SystemTime};

    /// An image used within this time is kept even when no container uses it.
    pub const KEEP_FOR: Duration = Duration::from_secs(3600);

    fn path(tag: &str) -> Option<std::path::PathBuf> {
        // Only the hex tags minikind makes name files.
        tag.bytes()
            .all(|b| b.is_ascii_hexdigit())
            .then(|| super::cache_dir().map(|d| d.join("node-images").join(tag)))?
    }

    /// Marks `tag` used now.
    pub fn touch(tag: &str) {
        let Some(p) = path(tag) else { return };
        let made = std::fs::create_dir_all(p.parent().unwrap_or(&p))
            .and_then(|_| std::fs::File::create(&p).map(drop));
        if let Err(e) = made {
            tracing::debug!(path = %p.display(), error = %e, "node image: could not note its use");
        }
    }

    /// Whether `tag` was used within [`KEEP_FOR`].
    pub fn used_lately(tag: &str) -> bool {
        path(tag)
            .and_then(|p| std::fs::metadata(p).ok()?.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < KEEP_FOR)
    }
}

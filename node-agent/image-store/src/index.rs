//! The image index (`index.json` in the store): every image by ID with its tags, layers and
//! sizes. Replaced as a whole (written beside, renamed over): the rename is an import's commit.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    /// The config's digest (`sha256:…`), as Docker and containerd call an image's ID.
    pub id: String,
    /// Normalised references (`docker.io/library/busybox:latest`).
    pub repo_tags: Vec<String>,
    /// The OCI manifest's digest when the archive had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Layer diffIDs, bottom first.
    pub diff_ids: Vec<String>,
    /// Chain IDs, bottom first; the last one names the image's unpacked tree.
    pub chain_ids: Vec<String>,
    /// The uncompressed layers' total size in bytes.
    pub size: u64,
    /// Unix seconds: when imported, when a container last used it (for an image GC).
    pub imported_at: u64,
    pub last_used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Index {
    pub images: Vec<ImageRecord>,
}

impl Index {
    pub fn load(path: &Path) -> Result<Index> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("the image index {} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes beside and renames over, after an fsync: a crash leaves the old or the new one.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)?;
        {
            use std::io::Write;
            let mut f =
                fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    }

    pub fn by_id(&self, id: &str) -> Option<&ImageRecord> {
        self.images.iter().find(|i| i.id == id)
    }
}

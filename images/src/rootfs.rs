//! A deterministic rootfs tar: the same inputs give the same bytes, so the image tag (a hash of
//! the bytes) changes exactly when the content does.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("reading {path} from the host: {source}")]
    Host { path: PathBuf, source: io::Error },
    #[error("{path}: not an absolute path")]
    Relative { path: PathBuf },
    #[error("{path}: symlinks loop or nest too deeply")]
    SymlinkLoop { path: PathBuf },
    #[error("{path} is added twice with different content")]
    Conflict { path: PathBuf },
    #[error("{path} lies under the symlink {link}; add it at the link's target instead")]
    UnderSymlink { path: PathBuf, link: PathBuf },
    #[error("writing the tar: {0}")]
    Tar(#[from] io::Error),
}

/// Files, directories and symlinks keyed by their absolute path inside the image.
#[derive(Debug, Default)]
pub struct Rootfs {
    entries: BTreeMap<PathBuf, Entry>,
}

/// The finished archive with the hash that names it.
#[derive(Debug)]
pub struct RootfsTar {
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Rootfs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, path: impl AsRef<Path>) -> bool {
        self.entries.contains_key(path.as_ref())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn dir(&mut self, path: impl AsRef<Path>, mode: u32) -> Result<(), RootfsError> {
        let path = checked(path.as_ref())?;
        self.parents(&path)?;
        self.put(path, Entry::Dir { mode })
    }

    pub fn file(
        &mut self,
        path: impl AsRef<Path>,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<(), RootfsError> {
        let path = checked(path.as_ref())?;
        self.parents(&path)?;
        self.put(
            path,
            Entry::File {
                data: data.into(),
                mode,
            },
        )
    }

    pub fn symlink(
        &mut self,
        path: impl AsRef<Path>,
        target: impl AsRef<Path>,
    ) -> Result<(), RootfsError> {
        let path = checked(path.as_ref())?;
        self.parents(&path)?;
        self.put(
            path,
            Entry::Symlink {
                target: target.as_ref().to_owned(),
            },
        )
    }

    /// Copies a host file to the same path in the image, mirroring every symlink met on the way
    /// (`/lib64 -> usr/lib64`, `libc.so.6 -> libc-2.36.so`), so the loader finds files exactly
    /// where it would on the host.
    pub fn copy_host_path(&mut self, path: impl AsRef<Path>) -> Result<PathBuf, RootfsError> {
        self.copy_host_path_as(path.as_ref(), None)
    }

    /// Like [`Rootfs::copy_host_path`] but stores the final file at `dest` instead.
    pub fn copy_host_file_to(
        &mut self,
        path: impl AsRef<Path>,
        dest: impl AsRef<Path>,
    ) -> Result<(), RootfsError> {
        self.copy_host_path_as(path.as_ref(), Some(dest.as_ref()))
            .map(|_| ())
    }

    fn copy_host_path_as(
        &mut self,
        path: &Path,
        dest: Option<&Path>,
    ) -> Result<PathBuf, RootfsError> {
        let path = checked(path)?;
        let mut resolved = PathBuf::from("/");
        let mut pending: Vec<PathBuf> = path
            .components()
            .skip(1)
            .map(|c| PathBuf::from(c.as_os_str()))
            .collect();
        pending.reverse();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            let candidate = resolved.join(&part);
            let meta = fs::symlink_metadata(&candidate).map_err(|source| RootfsError::Host {
                path: candidate.clone(),
                source,
            })?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return Err(RootfsError::SymlinkLoop { path });
                }
                let target = fs::read_link(&candidate).map_err(|source| RootfsError::Host {
                    path: candidate.clone(),
                    source,
                })?;
                if dest.is_none() {
                    self.symlink(&candidate, &target)?;
                }
                // Continue resolution from the link's target.
                let mut rest = std::mem::take(&mut pending);
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let mut parts: Vec<PathBuf> = target
                    .components()
                    .filter(|c| !matches!(c, Component::RootDir))
                    .map(|c| PathBuf::from(c.as_os_str()))
                    .collect();
                parts.reverse();
                rest.extend(parts);
                pending = rest;
            } else if part.as_os_str() == ".." {
                resolved.pop();
            } else if part.as_os_str() == "." {
            } else {
                resolved = candidate;
            }
        }
        let meta = fs::metadata(&resolved).map_err(|source| RootfsError::Host {
            path: resolved.clone(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            self.dir(dest.unwrap_or(&resolved), mode)?;
        } else {
            let data = fs::read(&resolved).map_err(|source| RootfsError::Host {
                path: resolved.clone(),
                source,
            })?;
            self.file(dest.unwrap_or(&resolved), data, mode)?;
        }
        Ok(resolved)
    }

    fn parents(&mut self, path: &Path) -> Result<(), RootfsError> {
        for parent in path.ancestors().skip(1) {
            if parent == Path::new("/") {
                break;
            }
            match self.entries.get(parent) {
                // A symlinked parent (`/lib -> usr/lib`) is fine: tar extracts through it only if
                // we never write a real directory there, which `put` prevents.
                Some(_) => {}
                None => {
                    self.entries
                        .insert(parent.to_owned(), Entry::Dir { mode: 0o755 });
                }
            }
        }
        Ok(())
    }

    fn put(&mut self, path: PathBuf, entry: Entry) -> Result<(), RootfsError> {
        match self.entries.get(&path) {
            None => {
                self.entries.insert(path, entry);
                Ok(())
            }
            Some(old) if *old == entry => Ok(()),
            // Parents are added as plain directories on demand; a later explicit directory
            // or symlink for the same path replaces that placeholder.
            Some(Entry::Dir { .. })
                if matches!(entry, Entry::Dir { .. } | Entry::Symlink { .. }) =>
            {
                self.entries.insert(path, entry);
                Ok(())
            }
            Some(_) => Err(RootfsError::Conflict { path }),
        }
    }

    /// Writes the archive in path order with fixed owners and times, and hashes it.
    pub fn to_tar(&self) -> Result<RootfsTar, RootfsError> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in &self.entries {
            // Extraction would not write through a symlinked directory, so refuse to build such
            // an archive rather than produce an image with files missing.
            if let Some(link) = path
                .ancestors()
                .skip(1)
                .find(|a| matches!(self.entries.get(*a), Some(Entry::Symlink { .. })))
            {
                return Err(RootfsError::UnderSymlink {
                    path: path.clone(),
                    link: link.to_owned(),
                });
            }
            let name = path.strip_prefix("/").unwrap_or(path);
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, name, io::empty())?;
                }
                Entry::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, name, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, name, target)?;
                }
            }
        }
        let bytes = builder.into_inner()?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(RootfsTar { bytes, sha256 })
    }
}

fn checked(path: &Path) -> Result<PathBuf, RootfsError> {
    if !path.is_absolute() {
        return Err(RootfsError::Relative {
            path: path.to_owned(),
        });
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn same_content_gives_the_same_bytes_and_hash() {
        let build = |extra: &str| {
            let mut r = Rootfs::new();
            r.file("/etc/hostname", "node\n", 0o644).unwrap();
            r.symlink("/usr/local/bin/dig", "minikind").unwrap();
            r.file("/usr/local/bin/minikind", extra.as_bytes(), 0o755)
                .unwrap();
            r.to_tar().unwrap()
        };
        let a = build("v1");
        let b = build("v1");
        let c = build("v2");
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.sha256, b.sha256);
        assert_ne!(a.sha256, c.sha256);
    }

    #[test]
    fn parents_come_before_children() {
        let mut r = Rootfs::new();
        r.file("/a/b/c", "x", 0o644).unwrap();
        let t = r.to_tar().unwrap();
        let n: Vec<String> = names(&t.bytes).into_iter().map(|(n, _)| n).collect();
        assert_eq!(n, vec!["a", "a/b", "a/b/c"]);
    }

    #[test]
    fn host_symlinks_on_the_way_are_mirrored() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path();
        fs::create_dir_all(base.join("usr/lib")).unwrap();
        fs::write(base.join("usr/lib/libx.so.1.2"), b"ELF?").unwrap();
        symlink("usr/lib", base.join("lib")).unwrap();
        symlink("libx.so.1.2", base.join("usr/lib/libx.so.1")).unwrap();

        let mut r = Rootfs::new();
        let real = r.copy_host_path(base.join("lib/libx.so.1")).unwrap();
        assert_eq!(real, base.join("usr/lib/libx.so.1.2"));
        let t = r.to_tar().unwrap();
        let entries = names(&t.bytes);
        let lib = base
            .join("lib")
            .strip_prefix("/")
            .unwrap()
            .display()
            .to_string();
        let link = base
            .join("usr/lib/libx.so.1")
            .strip_prefix("/")
            .unwrap()
            .display()
            .to_string();
        let file = base
            .join("usr/lib/libx.so.1.2")
            .strip_prefix("/")
            .unwrap()
            .display()
            .to_string();
        assert!(
            entries.contains(&(lib, tar::EntryType::Symlink)),
            "{entries:?}"
        );
        assert!(
            entries.contains(&(link, tar::EntryType::Symlink)),
            "{entries:?}"
        );
        assert!(
            entries.contains(&(file, tar::EntryType::Regular)),
            "{entries:?}"
        );
    }

    #[test]
    fn conflicting_content_is_an_error_naming_the_path() {
        let mut r = Rootfs::new();
        r.file("/etc/x", "a", 0o644).unwrap();
        let err = r.file("/etc/x", "b", 0o644).unwrap_err();
        assert!(err.to_string().contains("/etc/x"));
    }

    #[test]
    fn a_file_under_a_symlinked_directory_is_refused() {
        let mut r = Rootfs::new();
        r.symlink("/lib", "usr/lib").unwrap();
        r.file("/lib/x", "a", 0o644).unwrap();
        let err = r.to_tar().unwrap_err().to_string();
        assert!(
            err.contains("/lib/x") && err.contains("symlink /lib"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_are_refused() {
        let mut r = Rootfs::new();
        assert!(r.file("etc/x", "a", 0o644).is_err());
    }
}

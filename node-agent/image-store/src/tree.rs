//! Whole-tree operations: cloning a chain's tree with hard links (the next layer is applied on
//! the clone) and a full copy (a container's root where overlayfs cannot be mounted).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use anyhow::{Context, Result};

/// Makes `dst` a tree with the directories of `src` (new directories, same owner, mode and
/// times) and every other entry hard-linked to `src`'s. Cheap: no file data is copied.
pub fn clone_linked(src: &Path, dst: &Path) -> Result<()> {
    walk(src, dst, &mut |from, to, _| {
        fs::hard_link(from, to)
            .with_context(|| format!("hard-linking {} to {}", to.display(), from.display()))
    })
}

/// Makes `dst` a full copy of `src`: file data, symlinks, device files and FIFOs, owners, modes,
/// times; files hard-linked to each other in `src` are hard-linked in `dst` too.
pub fn copy_full(src: &Path, dst: &Path) -> Result<()> {
    let mut inodes: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    walk(src, dst, &mut |from, to, meta| {
        let ft = meta.file_type();
        if meta.nlink() > 1 && !ft.is_dir() {
            if let Some(first) = inodes.get(&(meta.dev(), meta.ino())) {
                return fs::hard_link(first, to)
                    .with_context(|| format!("hard-linking {}", to.display()));
            }
            inodes.insert((meta.dev(), meta.ino()), to.to_path_buf());
        }
        if ft.is_symlink() {
            let target = fs::read_link(from)?;
            symlink(&target, to).with_context(|| format!("copying symlink {}", to.display()))?;
        } else if ft.is_file() {
            fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
        } else {
            use nix::sys::stat::{Mode, SFlag, mknod};
            let kind = SFlag::from_bits_truncate(meta.mode() & SFlag::S_IFMT.bits());
            mknod(
                to,
                kind,
                Mode::from_bits_truncate(meta.mode() & 0o777),
                meta.rdev(),
            )
            .with_context(|| format!("copying device file {}", from.display()))?;
        }
        set_meta(to, meta)
    })
}

/// Walks `src`, making its directories in `dst` and calling `other` for everything else.
fn walk(
    src: &Path,
    dst: &Path,
    other: &mut dyn FnMut(&Path, &Path, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    let meta = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if !dst.exists() {
        fs::create_dir(dst).with_context(|| format!("making {}", dst.display()))?;
    }
    for child in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let child = child?;
        let from = child.path();
        let to = dst.join(child.file_name());
        let m = fs::symlink_metadata(&from)?;
        if m.is_dir() {
            walk(&from, &to, other)?;
        } else {
            other(&from, &to, &m)?;
        }
    }
    // After the children: making them changed the directory's times.
    set_meta(dst, &meta)
}

fn set_meta(path: &Path, meta: &fs::Metadata) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("setting the owner of {}", path.display()))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    let t = filetime::FileTime::from_last_modification_time(meta);
    filetime::set_symlink_file_times(path, t, t)
        .with_context(|| format!("setting the times of {}", path.display()))
}

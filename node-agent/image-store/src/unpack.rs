//! Applying one layer (an uncompressed tar) onto a directory holding the layers below it: OCI
//! whiteouts, hard links, symlinks, modes, owners, times and device files, and no entry may
//! leave the directory.
//!
//! The directory is the parent chain's tree cloned with hard links (see `tree::clone_linked`),
//! so an entry never writes into an existing file: it unlinks what is there and makes a new one.
//! Directories are not shared between chains and are updated in place.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use tar::EntryType;

/// Whiteout prefix: `.wh.NAME` deletes NAME of the layers below (OCI image spec, "Whiteouts").
const WHITEOUT_PREFIX: &str = ".wh.";
/// `.wh..wh..opq` in a directory hides everything the layers below had in it.
const OPAQUE: &str = ".wh..wh..opq";
/// How many symlinks one path may go through before it is called a loop (Linux's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

/// What applying a layer noticed but did not fail on.
#[derive(Debug, Default)]
pub struct Applied {
    /// Device files the node may not create (see [`make_device`]).
    pub skipped_devices: Vec<String>,
}

/// Applies the tar read from `layer` onto `root`.
pub fn apply_layer(root: &Path, layer: impl Read) -> Result<Applied> {
    let mut archive = tar::Archive::new(layer);
    let mut applied = Applied::default();
    // Paths this layer made: whiteouts and opaque markers hide only the layers below.
    let mut made: HashSet<PathBuf> = HashSet::new();
    // Directory times are set last: making their entries changes them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries().context("reading the layer's tar")? {
        let mut entry = entry.context("reading the layer's next tar entry")?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_entry_path(&entry.path().with_context(|| format!("entry {shown:?}"))?)
            .with_context(|| format!("layer entry {shown:?}"))?;
        let Some(name) = rel.file_name().map(OsStr::to_owned) else {
            // The root itself (`./`): its mode and owner.
            if entry.header().entry_type() == EntryType::Directory {
                set_owner_mode(root, &entry, false).with_context(|| format!("entry {shown:?}"))?;
            }
            continue;
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent =
            resolve_in_root(root, parent_rel).with_context(|| format!("layer entry {shown:?}"))?;
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE {
            clear_lower(root, &parent, &made)
                .with_context(|| format!("opaque directory marker {shown:?}"))?;
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            let victim = parent.join(hidden);
            if !made.contains(&victim) {
                remove_any(&victim).with_context(|| format!("whiteout {shown:?}"))?;
            }
            continue;
        }
        let dest = parent.join(&name);
        let kind = entry.header().entry_type();
        if kind == EntryType::Directory {
            match fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&dest)?;
                    fs::create_dir(&dest).with_context(|| format!("making {shown:?}"))?;
                }
                Err(_) => fs::create_dir(&dest).with_context(|| format!("making {shown:?}"))?,
            }
            set_owner_mode(&dest, &entry, false).with_context(|| format!("entry {shown:?}"))?;
            dir_times.push((dest.clone(), entry.header().mtime().unwrap_or(0) as i64));
            made.insert(dest);
            continue;
        }
        // Anything else replaces what is there (a file of a lower layer is a hard link shared
        // with the parent chain: it must not be written through).
        remove_any(&dest)?;
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .with_context(|| format!("making {shown:?}"))?;
                io::copy(&mut entry, &mut out).with_context(|| format!("writing {shown:?}"))?;
                set_owner_mode(&dest, &entry, false)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .with_context(|| format!("symlink {shown:?}"))?
                    .ok_or_else(|| anyhow!("symlink {shown:?} has no target"))?;
                symlink(&target, &dest).with_context(|| format!("making symlink {shown:?}"))?;
                set_owner_mode(&dest, &entry, true)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .with_context(|| format!("hard link {shown:?}"))?
                    .ok_or_else(|| anyhow!("hard link {shown:?} has no target"))?;
                let target_rel = clean_entry_path(&target)
                    .with_context(|| format!("hard link {shown:?} -> {}", target.display()))?;
                let target_parent =
                    resolve_in_root(root, target_rel.parent().unwrap_or(Path::new("")))
                        .with_context(|| format!("hard link {shown:?} -> {}", target.display()))?;
                let source = match target_rel.file_name() {
                    Some(n) => target_parent.join(n),
                    None => bail!("hard link {shown:?} points at the root"),
                };
                fs::hard_link(&source, &dest)
                    .with_context(|| format!("hard link {shown:?} -> {}", target.display()))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if make_device(&dest, &entry, kind).with_context(|| format!("entry {shown:?}"))? {
                    set_owner_mode(&dest, &entry, false)?;
                } else {
                    applied.skipped_devices.push(shown.clone());
                    continue;
                }
            }
            // Extended headers are folded into the next entry by the tar crate; these carry
            // no file.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            other => bail!("layer entry {shown:?} has a type minikind cannot unpack: {other:?}"),
        }
        made.insert(dest);
    }
    for (dir, mtime) in dir_times.into_iter().rev() {
        let t = filetime::FileTime::from_unix_time(mtime, 0);
        filetime::set_symlink_file_times(&dir, t, t)
            .with_context(|| format!("setting the times of {}", dir.display()))?;
    }
    Ok(applied)
}

/// The entry's path as plain components: `./a/b` is `a/b`; an absolute path or `..` is refused
/// (a layer describes a tree relative to its root, and these could only point elsewhere).
pub fn clean_entry_path(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                bail!(
                    "path {} climbs out of the layer's root with `..`",
                    path.display()
                )
            }
            Component::RootDir | Component::Prefix(_) => {
                bail!(
                    "path {} is absolute; layer paths are relative to the image's root",
                    path.display()
                )
            }
        }
    }
    Ok(out)
}

/// The real directory `rel` names inside `root`, following the symlinks on the way as the
/// container would see them: an absolute target starts again at `root` (the image's `/`), as
/// containerd resolves them when unpacking. A target that climbs above `root` with `..` is
/// refused: following it would write outside the image.
pub fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut done: Vec<OsString> = Vec::new();
    let mut todo: Vec<OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            if done.pop().is_none() {
                bail!(
                    "{} goes through a symlink that points above the image's root",
                    rel.display()
                );
            }
            continue;
        }
        if part == "." {
            continue;
        }
        let here: PathBuf = std::iter::once(root.as_os_str().to_owned())
            .chain(done.iter().cloned())
            .chain(std::iter::once(part.clone()))
            .collect();
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    bail!("{} goes through a loop of symlinks", rel.display());
                }
                let target = fs::read_link(&here)
                    .with_context(|| format!("reading symlink {}", here.display()))?;
                if target.is_absolute() {
                    done.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Ok(m) if !m.is_dir() => bail!(
                "{} goes through {}, which is not a directory",
                rel.display(),
                here.display()
            ),
            // A missing directory: the tar names its entries before its parents sometimes.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&here).with_context(|| format!("making {}", here.display()))?;
                done.push(part);
            }
            Err(e) => return Err(e).with_context(|| format!("inspecting {}", here.display())),
            Ok(_) => done.push(part),
        }
    }
    Ok(std::iter::once(root.as_os_str().to_owned())
        .chain(done)
        .collect())
}

/// An opaque directory: what the layers below put in `dir` goes; what this layer made stays.
fn clear_lower(root: &Path, dir: &Path, made: &HashSet<PathBuf>) -> Result<()> {
    if dir != root && !made.contains(dir) && fs::symlink_metadata(dir).is_err() {
        fs::create_dir(dir)?;
    }
    for child in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = child?.path();
        if !made.contains(&path) {
            remove_any(&path)?;
        }
    }
    Ok(())
}

/// Removes a file, symlink or directory tree; a missing one is fine.
pub fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
}

/// Owner, mode (after the owner: chown clears set-uid bits) and modification time.
fn set_owner_mode<R: Read>(path: &Path, entry: &tar::Entry<'_, R>, is_link: bool) -> Result<()> {
    let h = entry.header();
    let uid = numeric(&h.as_old().uid, h.uid()).context("the entry's uid")? as u32;
    let gid = numeric(&h.as_old().gid, h.gid()).context("the entry's gid")? as u32;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("setting the owner of {} to {uid}:{gid}", path.display()))?;
    if !is_link {
        let mode = h.mode().context("the entry's mode")? & 0o7777;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {} to {mode:o}", path.display()))?;
    }
    if h.entry_type() != EntryType::Directory {
        let t = filetime::FileTime::from_unix_time(h.mtime().unwrap_or(0) as i64, 0);
        filetime::set_symlink_file_times(path, t, t)
            .with_context(|| format!("setting the times of {}", path.display()))?;
    }
    Ok(())
}

/// A numeric header field: an empty one (all NULs or spaces, as some writers leave uid and gid
/// of `docker import`ed layers) is 0, as Go's `archive/tar` — which Docker reads layers with —
/// reads it; anything else must parse.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> Result<u64> {
    if raw.iter().all(|b| *b == 0 || *b == b' ') {
        return Ok(0);
    }
    Ok(parsed?)
}

/// Makes a device file or FIFO. Returns false when the node may not: a node without
/// CAP_MKNOD (a rootless or user-namespaced engine) gets EPERM for character and block devices,
/// and the entry is skipped and reported, as containerd and moby do when unpacking in a user
/// namespace; the container then sees no such node in its image (its `/dev` is made by the
/// runtime, not the image). FIFOs need no capability.
fn make_device<R: Read>(path: &Path, entry: &tar::Entry<'_, R>, kind: EntryType) -> Result<bool> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let h = entry.header();
    let (flag, dev) = match kind {
        EntryType::Char | EntryType::Block => {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let flag = if kind == EntryType::Char {
                SFlag::S_IFCHR
            } else {
                SFlag::S_IFBLK
            };
            (flag, makedev(major.into(), minor.into()))
        }
        _ => (SFlag::S_IFIFO, 0),
    };
    let mode = Mode::from_bits_truncate(h.mode().unwrap_or(0o600) & 0o777);
    match mknod(path, flag, mode, dev) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EPERM) if flag != SFlag::S_IFIFO => {
            tracing::warn!(path = %path.display(), "no CAP_MKNOD: device file of the image skipped");
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("making device file {}", path.display())),
    }
}

//! The node's image store, as containerd's content store, image service and snapshotter are in
//! a KIND node — small, in one directory (`minikind_contract::IMAGES_DIR` on a node):
//!
//! ```text
//! blobs/sha256/<hex>        image configs and OCI manifests, by digest
//! index.json                images: ID (the config digest) → tags, diffIDs, chainIDs, size
//! layers/<chainID hex>/     the image's tree up to that layer, unpacked once
//! containers/<id>/          a container's root: container.json, rootfs/, upper/, work/
//! tmp/                      an import's staging area (same filesystem: commits are renames)
//! lock                      flock'd while the store changes
//! ```
//!
//! **Layers.** `layers/<chainID>` is not the layer's diff but the whole tree up to it: the parent
//! chain's tree cloned with hard links (no data copied), then the layer applied on top — OCI
//! whiteouts (`.wh.NAME` deletes, `.wh..wh..opq` empties a directory of what lower layers put
//! there) are carried out, not stored. A container's root then needs one lower directory, and
//! a layer never writes through a file it shares with its parent: each entry unlinks what is
//! there first. Layer blobs are not kept once unpacked (nothing pushes images out of a node).
//!
//! **Safety.** No entry may leave the tree: absolute paths and `..` are refused; symlinks on an
//! entry's way are followed as the container would see them (an absolute target starts at the
//! image's root, as containerd resolves them) and one that climbs above the root is refused.
//!
//! **Imports are atomic.** The archive is staged under `tmp/`, every digest is checked (blobs
//! against their names, the config against the image ID, each layer's uncompressed stream
//! against the config's `rootfs.diff_ids`), new layer trees are built under `tmp/`, and only
//! then renamed into `layers/` and the index replaced. An error or a truncated stream leaves
//! the index and every committed tree as they were; a crash may leave unreferenced trees under
//! `layers/` (content-addressed, reused by the next import) and `tmp/` is swept when the store
//! is opened.
//!
//! **Container roots.** [`Store::prepare`] mounts overlayfs (lower: the image's top chain,
//! upper and work under `containers/<id>/`) — it works on the node's `/var` volume with this
//! engine. Where the mount fails (no overlay in the kernel, a filesystem overlay cannot use as
//! upper, no CAP_SYS_ADMIN) the image's tree is copied in full into `rootfs/` instead: slower
//! and bigger, same result; [`Prepared::mode`] says which one was used and a warning is
//! logged. [`Store::release`] unmounts and deletes it.
//!
//! **Image GC.** [`Store::gc`] removes unused images, least recently used first, when the disk
//! holding the store is used above a threshold, as the kubelet does ([`gc`]).
//!
//! Not done yet: extended attributes of layer entries (e.g. `security.capability`) are not
//! applied.

mod archive;
pub mod digest;
pub mod gc;
mod index;
mod tree;
pub mod unpack;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

pub use index::ImageRecord;
use index::Index;

/// An image store rooted at a directory.
pub struct Store {
    root: PathBuf,
}

/// What [`Store::import`] did for one image of the archive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Imported {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub size: u64,
    /// Layers unpacked by this import (0: the image was there, only its tags were added).
    pub layers_unpacked: usize,
    pub retagged_only: bool,
    /// Device files of the image the node may not create (no CAP_MKNOD), skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_devices: Vec<String>,
}

/// How a container's root was made.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    Overlay,
    Copy,
}

/// A container's root, ready for `pivot_root`.
#[derive(Debug)]
pub struct Prepared {
    pub rootfs: PathBuf,
    pub image_id: String,
    pub config: ImageConfiguration,
    pub mode: RootMode,
}

/// The reference record of a container (`containers/<id>/container.json`): which image it
/// uses, so the image is not removed under it, and how its root was made.
#[derive(Debug, Serialize, Deserialize)]
struct ContainerRecord {
    image_id: String,
    mode: RootMode,
}

/// `busybox` → `docker.io/library/busybox:latest`, as containerd names what it imports.
pub fn normalize_reference(reference: &str) -> Result<String> {
    let parsed: oci_spec::distribution::Reference = reference
        .parse()
        .map_err(|e| anyhow!("{reference:?} is not an image reference: {e}"))?;
    Ok(parsed.whole())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Holds the store's lock until dropped.
struct Locked {
    _flock: nix::fcntl::Flock<fs::File>,
}

impl Store {
    /// Opens (making it if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "containers", "tmp", "empty"] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("making the image store {}", root.display()))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<Locked> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow!("locking {}: {e}", path.display()))?;
        Ok(Locked { _flock: flock })
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn layer_dir(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(digest::hex_of(chain_id)?))
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest::hex_of(digest)?))
    }

    /// Removes what an interrupted import left under `tmp/`. Needs the lock.
    fn sweep_tmp(&self) -> Result<()> {
        for entry in fs::read_dir(self.root.join("tmp"))? {
            unpack::remove_any(&entry?.path())?;
        }
        Ok(())
    }

    /// Every image, by ID.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        Ok(Index::load(&self.index_path())?.images)
    }

    /// The image a reference names: a tag (normalised), a full ID (`sha256:…`) or an ID prefix
    /// of at least 12 hex digits, as `docker image inspect` accepts.
    pub fn find(&self, reference: &str) -> Result<Option<ImageRecord>> {
        Ok(find_in(&Index::load(&self.index_path())?, reference)?.cloned())
    }

    /// Imports every image of a `docker save` or OCI-layout tar read from `input`. Atomic: on
    /// any error the store is as it was.
    pub fn import(&self, input: impl Read) -> Result<Vec<Imported>> {
        let _lock = self.lock()?;
        self.sweep_tmp()?;
        let staging = tempdir_in(&self.root.join("tmp"))?;
        let result = self.import_staged(input, &staging);
        // Staged files and trees that were not renamed into the store go, success or not.
        let _ = unpack::remove_any(&staging);
        result
    }

    fn import_staged(&self, input: impl Read, staging: &Path) -> Result<Vec<Imported>> {
        let files_dir = staging.join("files");
        fs::create_dir(&files_dir)?;
        let staged = archive::stage(input, &files_dir)?;
        let sources = archive::images(&staged)?;
        let mut index = Index::load(&self.index_path())?;
        let mut report = Vec::new();
        // (staged tree, its final place) to rename once everything is checked.
        let mut trees: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut blobs: Vec<(Vec<u8>, PathBuf)> = Vec::new();
        for source in sources {
            let tags = source
                .tags
                .iter()
                .map(|t| normalize_reference(t))
                .collect::<Result<Vec<_>>>()?;
            // A tag names one image: moving it here takes it from any other.
            for other in index.images.iter_mut().filter(|i| i.id != source.id) {
                other.repo_tags.retain(|t| !tags.contains(t));
            }
            let config: ImageConfiguration =
                serde_json::from_slice(&source.config).with_context(|| {
                    format!("image {}: the config is not an image config", source.id)
                })?;
            let diff_ids: Vec<String> = config.rootfs().diff_ids().to_vec();
            if diff_ids.len() != source.layers.len() {
                bail!(
                    "image {}: the config lists {} layers (rootfs.diff_ids), the manifest {}",
                    source.id,
                    diff_ids.len(),
                    source.layers.len()
                );
            }
            if index.by_id(&source.id).is_some() {
                // The store has it; the archive must still be what it says it is.
                for (layer, diff_id) in source.layers.iter().zip(&diff_ids) {
                    verify_layer(&staged, layer, diff_id, &source.id)?;
                }
            }
            if let Some(existing) = index.images.iter_mut().find(|i| i.id == source.id) {
                for t in &tags {
                    if !existing.repo_tags.contains(t) {
                        existing.repo_tags.push(t.clone());
                    }
                }
                report.push(Imported {
                    id: source.id.clone(),
                    repo_tags: existing.repo_tags.clone(),
                    size: existing.size,
                    layers_unpacked: 0,
                    retagged_only: true,
                    skipped_devices: Vec::new(),
                });
                continue;
            }
            let chain_ids = digest::chain_ids(&diff_ids);
            let mut size = 0;
            let mut parent: Option<PathBuf> = None;
            let mut skipped_devices = Vec::new();
            let mut unpacked = 0;
            for (i, (layer, chain)) in source.layers.iter().zip(&chain_ids).enumerate() {
                let final_dir = self.layer_dir(chain)?;
                let staged_dir = staging.join(digest::hex_of(chain)?);
                let file = staged
                    .files
                    .get(layer)
                    .ok_or_else(|| anyhow!("layer {layer:?} is not in the archive"))?;
                if final_dir.exists() || staged_dir.exists() {
                    // Another image (or this archive) has it; the archive's copy is still checked
                    // and its size counts.
                    size += verify_layer(&staged, layer, &diff_ids[i], &source.id)?;
                    parent = Some(if final_dir.exists() {
                        final_dir
                    } else {
                        staged_dir
                    });
                    continue;
                }
                match &parent {
                    Some(p) => tree::clone_linked(p, &staged_dir)?,
                    None => fs::create_dir(&staged_dir)?,
                }
                let unpacking = || format!("image {}: unpacking layer {layer:?}", source.id);
                let layer_reader = archive::open_layer(&file.path)?;
                let (applied, diff_id, bytes) = if file.digest == diff_ids[i] {
                    // An uncompressed layer: staging hashed it, and that digest is its diffID
                    // (as `verify_layer` takes it). Hashing every byte again while unpacking
                    // would double the import's CPU time for nothing.
                    let mut reader = digest::CountingReader::new(layer_reader);
                    let applied =
                        unpack::apply_layer(&staged_dir, &mut reader).with_context(unpacking)?;
                    (applied, file.digest.clone(), reader.finish()?)
                } else {
                    let mut reader = digest::HashingReader::new(layer_reader);
                    let applied =
                        unpack::apply_layer(&staged_dir, &mut reader).with_context(unpacking)?;
                    let (diff_id, bytes) = reader.finish()?;
                    (applied, diff_id, bytes)
                };
                if diff_id != diff_ids[i] {
                    bail!(
                        "image {}: layer {layer:?} is corrupt: its content hashes to {diff_id}, \
                         the config says {}",
                        source.id,
                        diff_ids[i]
                    );
                }
                size += bytes;
                unpacked += 1;
                skipped_devices.extend(applied.skipped_devices);
                trees.push((staged_dir.clone(), final_dir));
                parent = Some(staged_dir);
            }
            blobs.push((source.config.clone(), self.blob_path(&source.id)?));
            let manifest = match &source.manifest {
                Some((d, bytes)) => {
                    blobs.push((bytes.clone(), self.blob_path(d)?));
                    Some(d.clone())
                }
                None => None,
            };
            index.images.push(ImageRecord {
                id: source.id.clone(),
                repo_tags: tags.clone(),
                manifest,
                diff_ids,
                chain_ids,
                size,
                imported_at: now(),
                last_used: 0,
            });
            report.push(Imported {
                id: source.id,
                repo_tags: tags,
                size,
                layers_unpacked: unpacked,
                retagged_only: false,
                skipped_devices,
            });
        }
        // Everything is checked: commit. Trees and blobs first (unreferenced until the index
        // names them), the index last.
        for (from, to) in trees {
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} into the store", to.display()))?;
        }
        for (bytes, path) in blobs {
            if !path.exists() {
                let tmp = staging.join("blob");
                fs::write(&tmp, &bytes)?;
                fs::rename(&tmp, &path)?;
            }
        }
        index.save(&self.index_path())?;
        Ok(report)
    }

    /// Adds tags to an image that is there (`minikind load` when the node has the ID).
    pub fn tag(&self, image: &str, tags: &[String]) -> Result<ImageRecord> {
        let _lock = self.lock()?;
        let mut index = Index::load(&self.index_path())?;
        let id = find_in(&index, image)?
            .ok_or_else(|| anyhow!("no image {image:?} in this node"))?
            .id
            .clone();
        let tags = tags
            .iter()
            .map(|t| normalize_reference(t))
            .collect::<Result<Vec<_>>>()?;
        for other in index.images.iter_mut() {
            other.repo_tags.retain(|t| !tags.contains(t));
        }
        let record = index
            .images
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| anyhow!("image {id} left the index while it was locked"))?;
        record.repo_tags.extend(tags);
        let record = record.clone();
        index.save(&self.index_path())?;
        Ok(record)
    }

    /// Removes a tag, or by ID the whole image. An image whose last tag goes is removed too
    /// (as `crictl rmi` does). Refused while a container uses the image.
    pub fn remove(&self, reference: &str) -> Result<Removed> {
        self.remove_or_check(reference, true)
    }

    /// What [`Store::remove`] would do, or its error, changing nothing: the CLI asks every
    /// node first so that a removal refused on one node happens on none.
    pub fn check_remove(&self, reference: &str) -> Result<Removed> {
        self.remove_or_check(reference, false)
    }

    fn remove_or_check(&self, reference: &str, commit: bool) -> Result<Removed> {
        let _lock = self.lock()?;
        let mut index = Index::load(&self.index_path())?;
        let record = find_in(&index, reference)?
            .ok_or_else(|| anyhow!("no image {reference:?} in this node"))?
            .clone();
        let by_tag = normalize_reference(reference)
            .ok()
            .filter(|t| record.repo_tags.contains(t));
        if let Some(tag) = &by_tag
            && record.repo_tags.len() > 1
        {
            if commit {
                if let Some(r) = index.images.iter_mut().find(|i| i.id == record.id) {
                    r.repo_tags.retain(|t| t != tag);
                }
                index.save(&self.index_path())?;
            }
            return Ok(Removed {
                id: record.id,
                untagged: vec![tag.clone()],
                deleted: false,
            });
        }
        let users = self.containers_using(&record.id)?;
        if !users.is_empty() {
            bail!(
                "image {reference} ({}) is used by container(s) {}: remove them first",
                record.id,
                users.join(", ")
            );
        }
        if commit {
            index.images.retain(|i| i.id != record.id);
            index.save(&self.index_path())?;
            self.collect_garbage(&index)?;
        }
        Ok(Removed {
            id: record.id,
            untagged: record.repo_tags,
            deleted: true,
        })
    }

    /// Removes layer trees and blobs no image names any more.
    fn collect_garbage(&self, index: &Index) -> Result<()> {
        let mut live = std::collections::HashSet::new();
        for i in &index.images {
            for c in &i.chain_ids {
                live.insert(digest::hex_of(c)?.to_string());
            }
            live.insert(digest::hex_of(&i.id)?.to_string());
            if let Some(m) = &i.manifest {
                live.insert(digest::hex_of(m)?.to_string());
            }
        }
        for dir in ["layers", "blobs/sha256"] {
            for entry in fs::read_dir(self.root.join(dir))? {
                let entry = entry?;
                if !live.contains(entry.file_name().to_string_lossy().as_ref()) {
                    // Out of sight first (one rename), then the slow delete.
                    let doomed = tempdir_in(&self.root.join("tmp"))?;
                    let moved = doomed.join("x");
                    fs::rename(entry.path(), &moved)?;
                    unpack::remove_any(&doomed)?;
                }
            }
        }
        Ok(())
    }

    /// One pass of the kubelet's image GC at `usage` (see [`gc`]); `now` in Unix seconds.
    pub fn gc(
        &self,
        policy: &gc::GcPolicy,
        usage: gc::DiskUsage,
        now: u64,
    ) -> Result<gc::GcReport> {
        policy.check()?;
        let mut report = gc::GcReport {
            used_percent: usage.used_percent(),
            to_free: gc::bytes_to_free(policy, usage),
            ..Default::default()
        };
        if report.to_free == 0 {
            return Ok(report);
        }
        let _lock = self.lock()?;
        let mut index = Index::load(&self.index_path())?;
        let mut candidates: Vec<ImageRecord> = Vec::new();
        for image in &index.images {
            if self.containers_using(&image.id)?.is_empty()
                && now.saturating_sub(image.imported_at) >= policy.min_age.as_secs()
            {
                candidates.push(image.clone());
            }
        }
        candidates.sort_by_key(|i| (i.last_used, i.imported_at));
        for image in candidates {
            if report.freed >= report.to_free {
                break;
            }
            index.images.retain(|i| i.id != image.id);
            report.freed += image.size;
            report.removed.push(image.id);
        }
        if !report.removed.is_empty() {
            index.save(&self.index_path())?;
            self.collect_garbage(&index)?;
        }
        if report.freed < report.to_free {
            bail!(
                "failed to garbage collect required amount of images: attempted to free {} \
                 bytes, but only found {} bytes eligible to free (removed {})",
                report.to_free,
                report.freed,
                if report.removed.is_empty() {
                    "none".to_string()
                } else {
                    report.removed.join(", ")
                }
            );
        }
        Ok(report)
    }

    fn containers_using(&self, image_id: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("containers"))? {
            let entry = entry?;
            if let Ok(bytes) = fs::read(entry.path().join("container.json"))
                && let Ok(rec) = serde_json::from_slice::<ContainerRecord>(&bytes)
                && rec.image_id == image_id
            {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Makes a container's root from an image (see the crate docs for overlay and the copy
    /// fallback) and records that the container uses the image.
    pub fn prepare(&self, container_id: &str, image: &str) -> Result<Prepared> {
        self.prepare_with(container_id, image, true)
    }

    /// [`Store::prepare`], with overlayfs tried or not (`false`: always a full copy).
    pub fn prepare_with(&self, container_id: &str, image: &str, overlay: bool) -> Result<Prepared> {
        check_container_id(container_id)?;
        let _lock = self.lock()?;
        let mut index = Index::load(&self.index_path())?;
        let record = find_in(&index, image)?
            .ok_or_else(|| anyhow!("no image {image:?} in this node"))?
            .clone();
        let config: ImageConfiguration = serde_json::from_slice(
            &fs::read(self.blob_path(&record.id)?)
                .with_context(|| format!("reading the config of image {}", record.id))?,
        )
        .with_context(|| format!("the config of image {} is corrupt", record.id))?;
        let dir = self.root.join("containers").join(container_id);
        if dir.exists() {
            bail!("container {container_id} already has a root; release it first");
        }
        let lower = match record.chain_ids.last() {
            Some(c) => self.layer_dir(c)?,
            None => self.root.join("empty"),
        };
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs)?;
        let result = (|| -> Result<RootMode> {
            if overlay {
                let (upper, work) = (dir.join("upper"), dir.join("work"));
                fs::create_dir(&upper)?;
                fs::create_dir(&work)?;
                let opts = format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                );
                match nix::mount::mount(
                    Some("overlay"),
                    &rootfs,
                    Some("overlay"),
                    nix::mount::MsFlags::empty(),
                    Some(opts.as_str()),
                ) {
                    Ok(()) => return Ok(RootMode::Overlay),
                    Err(e) => {
                        tracing::warn!(container = container_id, error = %e,
                            "overlayfs mount failed: copying the image's tree instead");
                        fs::remove_dir(&upper)?;
                        fs::remove_dir(&work)?;
                    }
                }
            }
            tree::copy_full(&lower, &rootfs)?;
            Ok(RootMode::Copy)
        })();
        let mode = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = unpack::remove_any(&dir);
                return Err(e.context(format!("making the root of container {container_id}")));
            }
        };
        let rec = ContainerRecord {
            image_id: record.id.clone(),
            mode,
        };
        fs::write(dir.join("container.json"), serde_json::to_vec(&rec)?)?;
        if let Some(r) = index.images.iter_mut().find(|i| i.id == record.id) {
            r.last_used = now();
        }
        index.save(&self.index_path())?;
        Ok(Prepared {
            rootfs,
            image_id: record.id,
            config,
            mode,
        })
    }

    /// Unmounts and deletes a container's root and its reference record. A container that has
    /// none is fine (released twice, or never prepared).
    pub fn release(&self, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let _lock = self.lock()?;
        let dir = self.root.join("containers").join(container_id);
        if !dir.exists() {
            return Ok(());
        }
        let rootfs = dir.join("rootfs");
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (a copy, or the node restarted since).
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => bail!("unmounting the root of container {container_id}: {e}"),
        }
        unpack::remove_any(&dir)
    }
}

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Removed {
    pub id: String,
    pub untagged: Vec<String>,
    pub deleted: bool,
}

fn find_in<'a>(index: &'a Index, reference: &str) -> Result<Option<&'a ImageRecord>> {
    let hexish = reference.strip_prefix("sha256:").unwrap_or(reference);
    if hexish.len() >= 12 && hexish.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hits: Vec<_> = index
            .images
            .iter()
            .filter(|i| i.id["sha256:".len()..].starts_with(hexish))
            .collect();
        match hits.len() {
            0 => {}
            1 => return Ok(Some(hits[0])),
            _ => bail!("{reference:?} names more than one image: give more of the ID"),
        }
    }
    let Ok(tag) = normalize_reference(reference) else {
        return Ok(None);
    };
    Ok(index.images.iter().find(|i| i.repo_tags.contains(&tag)))
}

/// A container ID becomes a directory name: letters, digits, `-`, `_`, `.` only.
fn check_container_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        bail!("{id:?} is not a container ID (letters, digits, '-', '_', '.')");
    }
    Ok(())
}

/// A new uniquely named directory in `parent`.
fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    for _ in 0..16 {
        let p = parent.join(format!("{:016x}", rand::random::<u64>()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("making a directory in {}", parent.display()));
            }
        }
    }
    bail!("cannot make a staging directory in {}", parent.display())
}

/// Checks a staged layer against its diffID without unpacking it (for layers the store has);
/// returns its uncompressed size. An uncompressed layer's staged digest is its diffID already.
fn verify_layer(staged: &archive::Staged, layer: &str, diff_id: &str, image: &str) -> Result<u64> {
    let file = staged
        .files
        .get(layer)
        .ok_or_else(|| anyhow!("layer {layer:?} is not in the archive"))?;
    let (digest, size) = if file.digest == diff_id {
        (file.digest.clone(), fs::metadata(&file.path)?.len())
    } else {
        digest::HashingReader::new(archive::open_layer(&file.path)?).finish()?
    };
    if digest != diff_id {
        bail!(
            "image {image}: layer {layer:?} is corrupt: its content hashes to {digest}, the \
             config says {diff_id}"
        );
    }
    Ok(size)
}

#[cfg(test)]
mod tests;

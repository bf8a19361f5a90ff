//! Reading an image archive: the outer tar is staged file by file (each hashed as it is
//! written), then its layout is read — the legacy `docker save` one (`manifest.json`) or the OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) — into what to import.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::{ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use crate::digest::{self, HashingReader};

/// One file of the archive, on disk in the staging directory.
#[derive(Debug)]
pub struct StagedFile {
    pub path: PathBuf,
    pub digest: String,
}

/// The archive's regular files by their (cleaned) names.
#[derive(Debug, Default)]
pub struct Staged {
    pub files: HashMap<String, StagedFile>,
}

impl Staged {
    fn get(&self, name: &str, what: &str) -> Result<&StagedFile> {
        self.files
            .get(name)
            .ok_or_else(|| anyhow!("{what} {name:?} is not in the archive (truncated archive?)"))
    }

    /// A blob by digest; its content must hash to it.
    fn blob(&self, digest: &str, what: &str) -> Result<&StagedFile> {
        let hex = digest::hex_of(digest).with_context(|| what.to_string())?;
        let file = self.get(&format!("blobs/sha256/{hex}"), what)?;
        if file.digest != digest {
            bail!(
                "{what} blobs/sha256/{hex} is corrupt: its content hashes to {}",
                file.digest
            );
        }
        Ok(file)
    }

    fn read(&self, name: &str, what: &str) -> Result<Vec<u8>> {
        let file = self.get(name, what)?;
        fs::read(&file.path).with_context(|| format!("reading the staged {what} {name:?}"))
    }
}

/// Writes every regular file of the archive into `dir` (named by number: the archive's names
/// never become paths) with its sha256. A truncated or malformed tar is an error here.
pub fn stage(input: impl Read, dir: &Path) -> Result<Staged> {
    let mut archive = tar::Archive::new(input);
    let mut staged = Staged::default();
    for (n, entry) in archive
        .entries()
        .context("reading the image archive (is it a tar?)")?
        .enumerate()
    {
        let entry = entry.context("reading the image archive: malformed or truncated tar")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .context("an archive entry's name")?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let path = dir.join(n.to_string());
        let mut out =
            fs::File::create(&path).with_context(|| format!("staging {}", path.display()))?;
        let mut reader = HashingReader::new(entry);
        io::copy(&mut reader, &mut out).with_context(|| {
            format!("reading {name:?} from the image archive: malformed or truncated tar")
        })?;
        let (digest, _) = reader.finish()?;
        staged.files.insert(name, StagedFile { path, digest });
    }
    if staged.files.is_empty() {
        bail!("the image archive is empty (no files in the tar)");
    }
    Ok(staged)
}

/// One image of the archive, checked against its own digests except for the layers' diffIDs,
/// which are checked as they are unpacked.
#[derive(Debug)]
pub struct ImageSource {
    pub tags: Vec<String>,
    /// The config's digest: the image ID.
    pub id: String,
    pub config: Vec<u8>,
    /// The OCI manifest (digest, bytes), when the archive has one.
    pub manifest: Option<(String, Vec<u8>)>,
    /// Staged layer files, bottom first.
    pub layers: Vec<String>,
}

/// docker save's `manifest.json` entry (moby `image/tarexport`: `manifestItem`).
#[derive(Debug, Deserialize)]
struct LegacyItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// The images in the staged archive. The OCI layout wins when both are there (Docker 25+
/// writes both; the OCI one has the digests of every blob).
pub fn images(staged: &Staged) -> Result<Vec<ImageSource>> {
    if staged.files.contains_key("oci-layout") && staged.files.contains_key("index.json") {
        oci_images(staged)
    } else if staged.files.contains_key("manifest.json") {
        legacy_images(staged)
    } else {
        bail!(
            "the archive has neither manifest.json (docker save) nor oci-layout and index.json \
             (an OCI image layout): not an image archive, or truncated"
        )
    }
}

fn legacy_images(staged: &Staged) -> Result<Vec<ImageSource>> {
    let items: Vec<LegacyItem> = serde_json::from_slice(&staged.read("manifest.json", "file")?)
        .context("manifest.json is not docker save's manifest")?;
    let mut out = Vec::new();
    for item in items {
        let file = staged.get(&item.config, "image config")?;
        // docker save names the config after its digest (`<hex>.json` or, Docker 25+,
        // `blobs/sha256/<hex>`): a different content is corruption.
        let named = item
            .config
            .trim_end_matches(".json")
            .rsplit('/')
            .next()
            .unwrap_or_default();
        if named.len() == 64 && format!("sha256:{named}") != file.digest {
            bail!(
                "image config {:?} is corrupt: its content hashes to {}",
                item.config,
                file.digest
            );
        }
        out.push(ImageSource {
            tags: item.repo_tags.unwrap_or_default(),
            id: file.digest.clone(),
            config: staged.read(&item.config, "image config")?,
            manifest: None,
            layers: item.layers,
        });
    }
    Ok(out)
}

fn oci_images(staged: &Staged) -> Result<Vec<ImageSource>> {
    let index: ImageIndex = serde_json::from_slice(&staged.read("index.json", "file")?)
        .context("index.json is not an OCI image index")?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        // containerd and Docker name the image in this annotation; the OCI one may be a full
        // reference (skopeo) or only a tag, which names no repository.
        let name = annotations
            .get("io.containerd.image.name")
            .or_else(|| {
                annotations
                    .get("org.opencontainers.image.ref.name")
                    .filter(|r| r.contains('/') || r.contains(':'))
            })
            .cloned();
        let manifest_desc = pick_manifest(staged, desc.digest().as_ref(), desc.media_type())?;
        let Some((digest, bytes)) = manifest_desc else {
            continue;
        };
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("manifest {digest} is not an OCI image manifest"))?;
        let config_digest = manifest.config().digest().to_string();
        let config = staged.blob(&config_digest, "image config")?;
        let mut layers = Vec::new();
        for layer in manifest.layers() {
            let d = layer.digest().to_string();
            staged.blob(&d, "layer")?;
            layers.push(format!("blobs/sha256/{}", digest::hex_of(&d)?));
        }
        out.push(ImageSource {
            tags: name.into_iter().collect(),
            id: config.digest.clone(),
            config: fs::read(&config.path).context("reading the staged image config")?,
            manifest: Some((digest, bytes)),
            layers,
        });
    }
    if out.is_empty() {
        bail!("index.json names no image manifest for this platform");
    }
    Ok(out)
}

/// The image manifest a descriptor leads to: itself, or for a nested index (a multi-platform
/// image), the manifest for this node's platform whose blob the archive holds.
fn pick_manifest(
    staged: &Staged,
    digest: &str,
    media_type: &MediaType,
) -> Result<Option<(String, Vec<u8>)>> {
    let file = staged.blob(digest, "manifest")?;
    let bytes = fs::read(&file.path).context("reading a staged manifest")?;
    if *media_type != MediaType::ImageIndex
        && media_type.to_string() != "application/vnd.docker.distribution.manifest.list.v2+json"
    {
        return Ok(Some((digest.to_string(), bytes)));
    }
    let nested: ImageIndex = serde_json::from_slice(&bytes)
        .with_context(|| format!("index {digest} is not an OCI image index"))?;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for d in nested.manifests() {
        let fits = d
            .platform()
            .as_ref()
            .is_none_or(|p| p.architecture().to_string() == arch && p.os().to_string() == "linux");
        let hex = digest::hex_of(d.digest().as_ref())?;
        if fits && staged.files.contains_key(&format!("blobs/sha256/{hex}")) {
            return pick_manifest(staged, d.digest().as_ref(), d.media_type());
        }
    }
    Ok(None)
}

/// What a layer file is compressed with, from its first bytes.
pub fn open_layer(path: &Path) -> Result<Box<dyn Read>> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic)?;
    let file = fs::File::open(path)?;
    let reader = io::BufReader::with_capacity(1 << 20, file);
    match &magic[..n] {
        [0x1f, 0x8b, ..] => Ok(Box::new(flate2::read::MultiGzDecoder::new(reader))),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            bail!("zstd-compressed layers are not supported (gzip or uncompressed only)")
        }
        _ => Ok(Box::new(reader)),
    }
}

//! Files in and out of a container through the engine's archive API. KIND reads a node's
//! `admin.conf` by running `cat` in it (`pkg/cluster/internal/kubeconfig/internal/kubeconfig/
//! read.go`); the archive API needs nothing inside the container.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt;

/// Reads one file out of a container (through the engine's archive API, so it works with any
/// image and needs nothing inside the container).
pub async fn read_node_file(docker: &Docker, container: &str, path: &str) -> Result<String> {
    let opts = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(container, Some(opts));
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar_bytes
            .extend_from_slice(&chunk.with_context(|| format!("reading {path} from {container}"))?);
    }
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entry = archive
        .entries()
        .context("reading the archive")?
        .next()
        .with_context(|| format!("{container}:{path} came back empty"))?
        .context("reading the archive entry")?;
    let mut text = String::new();
    entry
        .read_to_string(&mut text)
        .with_context(|| format!("{container}:{path} is not text"))?;
    Ok(text)
}

/// Writes one file into a container, creating nothing but the file (its directory must exist).
pub async fn write_node_file(
    docker: &Docker,
    container: &str,
    path: &str,
    text: &str,
    mode: u32,
) -> Result<()> {
    let p = Path::new(path);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        bail!("{path} is not a file path");
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    builder
        .append_data(&mut header, name, text.as_bytes())
        .context("packing the file")?;
    let tar_bytes = builder.into_inner().context("packing the file")?;
    let opts = UploadToContainerOptionsBuilder::default()
        .path(&dir.to_string_lossy())
        .build();
    docker
        .upload_to_container(container, Some(opts), bollard::body_full(tar_bytes.into()))
        .await
        .with_context(|| format!("writing {container}:{path}"))
}

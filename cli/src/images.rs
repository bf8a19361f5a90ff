//! `minikind load docker-image|image-archive`, `get images`, `delete image`: images into and
//! out of the nodes' stores, as KIND's `load` commands do (`pkg/cmd/kind/load`). The archive
//! goes from the engine (`GET /images/get`) or a file straight into every selected node's
//! `minikind node images import` through exec's standard input, to all nodes at once; nothing
//! is written on the host.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use minikind_contract::MINIKIND_PATH;
use minikind_image_store::ImageRecord;

use crate::progress::Status;
use crate::provider::docker::{OwnedContainer, exec, list};

/// The cluster's nodes, or those of them `--nodes` names (an unknown one is an error).
pub async fn select_nodes(
    docker: &Docker,
    cluster: &str,
    only: &[String],
) -> Result<Vec<OwnedContainer>> {
    let nodes = list::nodes(docker, Some(cluster)).await?;
    if nodes.is_empty() {
        bail!("no nodes found for cluster {cluster:?}");
    }
    if only.is_empty() {
        return Ok(nodes);
    }
    for n in only {
        if !nodes.iter().any(|c| &c.name == n) {
            bail!(
                "unknown node {n:?} in cluster {cluster:?} (nodes: {})",
                nodes
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(nodes
        .into_iter()
        .filter(|c| only.contains(&c.name))
        .collect())
}

/// Runs `minikind node images ARGS…` in a node; its standard output on success.
async fn node_images(docker: &Docker, node: &str, args: &[&str]) -> Result<String> {
    let argv: Vec<&str> = [MINIKIND_PATH, "node", "images"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let out = exec::exec_in(docker, node, &argv).await?;
    if !out.ok() {
        bail!("node {node}: {}", node_error(&out.stderr));
    }
    Ok(out.stdout)
}

/// The node command's own `ERROR: …` line, without the prefix.
fn node_error(stderr: &str) -> String {
    let s = stderr.trim();
    s.strip_prefix("ERROR: ").unwrap_or(s).to_string()
}

/// A node's images.
pub async fn node_list(docker: &Docker, node: &str) -> Result<Vec<ImageRecord>> {
    let json = node_images(docker, node, &["list", "-o", "json"]).await?;
    serde_json::from_str(&json).with_context(|| format!("node {node}: reading its image list"))
}

/// Streams one archive into `minikind node images import` on every node at once. Each chunk
/// goes to every node before the next is read (the slowest node paces the stream).
async fn import_everywhere<S>(
    docker: &Docker,
    nodes: &[String],
    mut source: S,
    what: &str,
) -> Result<BTreeMap<String, Vec<minikind_image_store::Imported>>>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    let mut senders = Vec::new();
    let mut runs = Vec::new();
    for node in nodes {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        senders.push(tx);
        let argv = [MINIKIND_PATH, "node", "images", "import"];
        let docker = docker.clone();
        let node = node.clone();
        runs.push(tokio::spawn(async move {
            let out = exec::exec_with_input(&docker, &node, &argv, rx).await;
            (node, out)
        }));
    }
    let mut source_error = None;
    while let Some(chunk) = source.next().await {
        match chunk {
            Ok(bytes) => {
                let sends = senders.iter().map(|tx| tx.send(bytes.clone()));
                // A node whose import ended early drops its receiver; its result says why.
                let _ = futures::future::join_all(sends).await;
            }
            Err(e) => {
                source_error = Some(e);
                break;
            }
        }
    }
    // The end of the stream: each import sees end-of-file. (After a source error too: the
    // nodes then see a truncated archive and refuse it, their stores unchanged.)
    drop(senders);
    let mut results = BTreeMap::new();
    let mut failures = Vec::new();
    for run in runs {
        let (node, out) = run.await.context("an import task")?;
        match out {
            Ok(o) if o.ok() => {
                let imported = serde_json::from_str(o.stdout.trim())
                    .with_context(|| format!("node {node}: reading what it imported"))?;
                results.insert(node, imported);
            }
            Ok(o) => failures.push(format!("node {node}: {}", node_error(&o.stderr))),
            Err(e) => failures.push(format!("node {node}: {e:#}")),
        }
    }
    if let Some(e) = source_error {
        return Err(e.context(format!("reading {what}")));
    }
    if !failures.is_empty() {
        bail!("loading {what} failed: {}", failures.join("; "));
    }
    Ok(results)
}

/// `minikind load docker-image IMAGE…`.
pub async fn load_docker_images(
    docker: &Docker,
    status: &Status,
    cluster: &str,
    images: &[String],
    only: &[String],
) -> Result<()> {
    let nodes = select_nodes(docker, cluster, only).await?;
    // The host's IDs first (KIND: "image: X not present locally").
    let mut ids = Vec::new();
    for image in images {
        let inspect = docker.inspect_image(image).await.with_context(|| {
            format!("image {image:?} is not present in the local Docker engine")
        })?;
        ids.push(
            inspect
                .id
                .ok_or_else(|| anyhow!("image {image:?} has no ID"))?,
        );
    }
    // What each node has.
    let lists = futures::future::join_all(nodes.iter().map(|n| node_list(docker, &n.name))).await;
    let mut needed: Vec<&str> = Vec::new();
    let mut receivers: Vec<String> = Vec::new();
    for (node, list) in nodes.iter().zip(lists) {
        let list = list?;
        let mut node_needs = false;
        for (image, id) in images.iter().zip(&ids) {
            match list.iter().find(|r| &r.id == id) {
                Some(have) => {
                    let tag = minikind_image_store::normalize_reference(image).ok();
                    if let Some(tag) = tag.filter(|t| !have.repo_tags.contains(t)) {
                        node_images(docker, &node.name, &["tag", id, &tag])
                            .await
                            .with_context(|| format!("tagging image {image:?}"))?;
                        status.line(&format!(
                            "Image: \"{image}\" with ID \"{id}\" found on node \"{}\": tagged",
                            node.name
                        ));
                    } else {
                        status.line(&format!(
                            "Image: \"{image}\" with ID \"{id}\" found to be already present on \
                             node \"{}\"",
                            node.name
                        ));
                    }
                }
                None => {
                    status.line(&format!(
                        "Image: \"{image}\" with ID \"{id}\" not yet present on node \"{}\", \
                         loading...",
                        node.name
                    ));
                    node_needs = true;
                    if !needed.contains(&image.as_str()) {
                        needed.push(image);
                    }
                }
            }
        }
        if node_needs {
            receivers.push(node.name.clone());
        }
    }
    if receivers.is_empty() {
        return Ok(());
    }
    let export = docker
        .export_images(&needed)
        .map(|r| r.context("exporting from the Docker engine (GET /images/get)"));
    let what = format!("image(s) {}", needed.join(", "));
    import_everywhere(docker, &receivers, Box::pin(export), &what).await?;
    Ok(())
}

/// `minikind load image-archive FILE|-`.
pub async fn load_archive(
    docker: &Docker,
    status: &Status,
    cluster: &str,
    path: &str,
    only: &[String],
) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let nodes = select_nodes(docker, cluster, only).await?;
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if path == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening image archive {path}"))?,
        )
    };
    let source = Box::pin(futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; 1 << 20];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((Err(anyhow::Error::from(e)), None)),
        }
    }));
    let what = if path == "-" {
        "the image archive on standard input".to_string()
    } else {
        format!("image archive {path}")
    };
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let results = import_everywhere(docker, &names, source, &what).await?;
    for (node, imported) in results {
        for i in imported {
            let tags = if i.repo_tags.is_empty() {
                "<none>".to_string()
            } else {
                i.repo_tags.join(", ")
            };
            let how = if i.retagged_only {
                "already present, tagged"
            } else {
                "loaded"
            };
            status.line(&format!("Image {tags} ({}) {how} on node \"{node}\"", i.id));
        }
    }
    Ok(())
}

/// `minikind get images`: each node's images.
pub async fn get_images(docker: &Docker, cluster: &str, node: Option<&str>) -> Result<()> {
    let only: Vec<String> = node.into_iter().map(String::from).collect();
    let nodes = select_nodes(docker, cluster, &only).await?;
    let lists = futures::future::join_all(nodes.iter().map(|n| node_list(docker, &n.name))).await;
    let mut rows = vec![[
        "NODE".to_string(),
        "IMAGE".into(),
        "IMAGE ID".into(),
        "SIZE".into(),
    ]];
    for (n, list) in nodes.iter().zip(lists) {
        for i in list? {
            let tags = if i.repo_tags.is_empty() {
                vec!["<none>".to_string()]
            } else {
                i.repo_tags.clone()
            };
            for t in tags {
                rows.push([
                    n.name.clone(),
                    t,
                    crate::node_images::short_id(&i.id).to_string(),
                    crate::node_images::human_size(i.size),
                ]);
            }
        }
    }
    let widths: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        println!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}

/// `minikind delete image REF`: from every node that has it, or — when any node refuses (a
/// container uses it there) — from none.
pub async fn delete_image(
    docker: &Docker,
    status: &Status,
    cluster: &str,
    reference: &str,
) -> Result<()> {
    let nodes = select_nodes(docker, cluster, &[]).await?;
    let lists = futures::future::join_all(nodes.iter().map(|n| node_list(docker, &n.name))).await;
    let tag = minikind_image_store::normalize_reference(reference).ok();
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let mut holders = Vec::new();
    for (n, list) in nodes.iter().zip(lists) {
        let has = list?.iter().any(|r| {
            tag.as_ref().is_some_and(|t| r.repo_tags.contains(t))
                || (hex.len() >= 12 && r.id["sha256:".len()..].starts_with(hex))
        });
        if has {
            holders.push(n.name.clone());
        }
    }
    if holders.is_empty() {
        bail!("no node of cluster {cluster:?} has image {reference:?}");
    }
    let checks =
        futures::future::join_all(holders.iter().map(|n| async move {
            node_images(docker, n, &["remove", "--check", reference]).await
        }))
        .await;
    let refusals: Vec<String> = checks
        .into_iter()
        .filter_map(|c| c.err().map(|e| format!("{e:#}")))
        .collect();
    if !refusals.is_empty() {
        bail!(
            "not deleting image {reference} from any node: {}",
            refusals.join("; ")
        );
    }
    for n in &holders {
        node_images(docker, n, &["remove", reference])
            .await
            .with_context(|| format!("deleting image {reference}"))?;
        status.line(&format!("Deleted image {reference} from node \"{n}\""));
    }
    Ok(())
}

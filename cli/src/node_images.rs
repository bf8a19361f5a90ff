//! `minikind node images …`: the node side of `minikind load` and `get images`, run by the CLI
//! inside a node through the engine's exec API (as KIND runs `ctr --namespace=k8s.io images
//! import -` there). Output for the CLI is JSON; `list` also prints a table for people.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use minikind_image_store::Store;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// The node's image store.
    #[command(subcommand)]
    Images(ImagesCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import a `docker save` or OCI-layout tar from standard input; prints what was imported
    /// (JSON).
    Import {
        #[command(flatten)]
        store: StoreArg,
    },
    /// List the images.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// `json` or `table`.
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Add tags to an image the node has (by tag or ID).
    Tag {
        #[command(flatten)]
        store: StoreArg,
        image: String,
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Make a container's root from an image (overlayfs, else a full copy); prints JSON with
    /// the root's path, the image ID, how it was made and the image's config.
    Prepare {
        #[command(flatten)]
        store: StoreArg,
        container_id: String,
        image: String,
    },
    /// Unmount and delete a container's root.
    Release {
        #[command(flatten)]
        store: StoreArg,
        container_id: String,
    },
    /// Remove a tag, or an image by ID (refused while a container uses it); prints JSON.
    Remove {
        #[command(flatten)]
        store: StoreArg,
        /// Only say what would be removed, or why it cannot be.
        #[arg(long)]
        check: bool,
        reference: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct StoreArg {
    /// The store's directory (tests use their own).
    #[arg(long, hide = true, default_value = minikind_contract::IMAGES_DIR)]
    root: PathBuf,
}

impl StoreArg {
    fn open(&self) -> Result<Store> {
        Store::open(&self.root)
    }
}

pub fn run(cmd: NodeCommand) -> Result<()> {
    let NodeCommand::Images(cmd) = cmd;
    let mut out = std::io::stdout().lock();
    match cmd {
        ImagesCommand::Import { store } => {
            let stdin = std::io::stdin().lock();
            let imported = store
                .open()?
                .import(std::io::BufReader::with_capacity(1 << 20, stdin))
                .context("importing the image archive from standard input")?;
            serde_json::to_writer(&mut out, &imported)?;
        }
        ImagesCommand::List { store, output } => {
            let images = store.open()?.list()?;
            match output.as_str() {
                "json" => serde_json::to_writer(&mut out, &images)?,
                "table" => out.write_all(table(&images).as_bytes())?,
                other => anyhow::bail!("unknown output format {other:?} (json or table)"),
            }
        }
        ImagesCommand::Tag { store, image, tags } => {
            let record = store.open()?.tag(&image, &tags)?;
            serde_json::to_writer(&mut out, &record)?;
        }
        ImagesCommand::Prepare {
            store,
            container_id,
            image,
        } => {
            let p = store.open()?.prepare(&container_id, &image)?;
            let json = serde_json::json!({
                "rootfs": p.rootfs,
                "image_id": p.image_id,
                "mode": p.mode,
                "config": p.config,
            });
            serde_json::to_writer(&mut out, &json)?;
        }
        ImagesCommand::Release {
            store,
            container_id,
        } => {
            store.open()?.release(&container_id)?;
            write!(out, "{{}}")?;
        }
        ImagesCommand::Remove {
            store,
            check,
            reference,
        } => {
            let store = store.open()?;
            let removed = if check {
                store.check_remove(&reference)?
            } else {
                store.remove(&reference)?
            };
            serde_json::to_writer(&mut out, &removed)?;
        }
    }
    writeln!(out)?;
    Ok(())
}

/// `crictl images`' columns: each tag on its line (`<none>` for an untagged image).
pub fn table(images: &[minikind_image_store::ImageRecord]) -> String {
    let mut rows = vec![["IMAGE".to_string(), "IMAGE ID".into(), "SIZE".into()]];
    for i in images {
        let tags = if i.repo_tags.is_empty() {
            vec!["<none>".to_string()]
        } else {
            i.repo_tags.clone()
        };
        for t in tags {
            rows.push([t, short_id(&i.id).to_string(), human_size(i.size)]);
        }
    }
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0);
    rows.iter()
        .map(|r| format!("{:w0$}  {:w1$}  {}\n", r[0], r[1], r[2]))
        .collect()
}

/// The first 12 hex digits of `sha256:…`, as `crictl images` and `docker images` show them.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// Sizes as `crictl images` prints them (decimal units).
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.3}GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.3}MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.3}kB", b as f64 / 1e3),
        b => format!("{b}B"),
    }
}

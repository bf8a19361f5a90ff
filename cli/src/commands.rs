//! The user-facing commands, with KIND's names and flags.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cluster::access::{cluster_client, control_plane_admin, resolve_name};
use crate::cluster::create;
use crate::config::{self, ClusterConfig};
use crate::progress::{Mode, Status};
use crate::provider::docker::{self, delete, list, nodes};

#[derive(Debug, Parser)]
#[command(
    name = "minikind",
    version,
    about = "A mini KIND: throw-away Kubernetes clusters in containers, built to show how \
             container and cluster DNS work"
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a cluster.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Delete a cluster or clusters, or objects (`-f FILE`, `KIND NAME…`) in a cluster.
    Delete(DeleteArgs),
    /// Get clusters, node containers or a kubeconfig; or objects of a kind (`get pods -A`).
    Get(GetArgs),
    /// Create or update the objects of a manifest in a cluster, like `kubectl apply -f`.
    Apply(ObjectArgs),
    /// Set the replicas of a Deployment, like `kubectl scale`.
    Scale(ObjectArgs),
    /// Restart a Deployment or wait for its rollout, like `kubectl rollout restart|status`.
    Rollout(ObjectArgs),
    /// Run a command in a pod's container, like `kubectl exec POD -- CMD`.
    Exec {
        /// Cluster name (`-n` is the namespace, as in every minikind command).
        #[arg(long = "name")]
        cluster: Option<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        pod: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Print a pod's container log, like `kubectl logs`.
    Logs {
        /// Cluster name (`-n` is the namespace, as in every minikind command).
        #[arg(long = "name")]
        cluster: Option<String>,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The previous (restarted) container's log.
        #[arg(short = 'p', long)]
        previous: bool,
        #[arg(long)]
        tail: Option<i64>,
        pod: String,
    },
    /// The cluster's DNS path: the network magic (`dns magic status|on|off`).
    #[command(subcommand)]
    Dns(crate::dns::Dns),
    /// Build the node image.
    #[command(subcommand)]
    Build(BuildCommand),
    /// Export a cluster's logs or its kubeconfig, as KIND's `export logs|kubeconfig`.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Load images into the nodes' image stores (`load docker-image`, `load image-archive`).
    #[command(subcommand)]
    Load(LoadCommand),
    /// Run inside a node by the CLI (`minikind node images import|list|tag|remove`).
    #[command(subcommand, hide = true)]
    Node(crate::node_images::NodeCommand),
    /// Give the cluster's LoadBalancer Services an address on its network until stopped, as
    /// cloud-provider-kind does for KIND (one proxy container per Service).
    CloudProvider {
        #[command(flatten)]
        name: NameArg,
    },
    /// Print the minikind version.
    Version,
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Commands whose whole job is printing. When their reader goes away (`minikind dns trace
    /// … | head`) they end quietly by SIGPIPE, as `cat` and kubectl do (a shell reports 141),
    /// instead of panicking on the failed write. Commands that change something keep SIGPIPE
    /// ignored (Rust's default): a closed stdout must not stop them half-way, past their
    /// rollback; their status lines ignore write errors.
    fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Get(_)
                | Command::Logs { .. }
                | Command::Version
                | Command::Completion { .. }
                | Command::Dns(crate::dns::Dns::Trace(_))
        )
    }
}

/// The cluster a command acts on. `-n` means the namespace in every minikind command, as in
/// kubectl (`get pods -n kube-system`, `logs -n`, `dns trace -n`); KIND's `-n` for the cluster
/// is refused here with the flag to use instead, rather than taken as a second meaning.
#[derive(Debug, Args)]
struct NameArg {
    /// Cluster name (default: $MINIKIND_CLUSTER_NAME, else "minikind").
    #[arg(long)]
    name: Option<String>,
    #[arg(short = 'n', hide = true, value_name = "NAMESPACE")]
    namespace: Option<String>,
}

impl NameArg {
    /// The cluster's name: `--name`, else the config's, else $MINIKIND_CLUSTER_NAME, else
    /// "minikind".
    fn cluster(self, from_config: Option<&str>) -> Result<String> {
        if let Some(n) = self.namespace {
            bail!(
                "-n is the namespace in minikind, as in kubectl, and this command takes none: \
                 name the cluster with --name {n}"
            );
        }
        resolve_name(self.name, from_config)
    }
}

#[derive(Debug, Subcommand)]
enum CreateCommand {
    /// Create a cluster of node containers on the local Docker engine.
    Cluster {
        #[command(flatten)]
        name: NameArg,
        /// Cluster config file, or - for standard input.
        #[arg(long)]
        config: Option<String>,
        /// Keep the nodes when the create fails, for debugging.
        #[arg(long)]
        retain: bool,
        /// How long to wait for the nodes to be ready (e.g. 30s, 2m).
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

/// The rest of an object command's line; parsed by the objects module (see `ObjectCli`).
#[derive(Debug, Args)]
struct ObjectArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct DeleteArgs {
    #[command(subcommand)]
    which: Option<DeleteCommand>,
    /// `-f FILE` or `KIND NAME…`: objects in a cluster (pick it with --name).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    objects: Vec<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct GetArgs {
    #[command(subcommand)]
    which: Option<GetCommand>,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    objects: Vec<String>,
}

/// Object commands as the objects module defines them, with the cluster picked by `--name`.
#[derive(Debug, Parser)]
#[command(name = "minikind", no_binary_name = true)]
struct ObjectCli {
    /// Cluster name (default: $MINIKIND_CLUSTER_NAME, else "minikind").
    // Its own id: the object commands have a positional `name` of their own.
    #[arg(long = "name", id = "cluster_name", global = true)]
    cluster: Option<String>,
    #[command(subcommand)]
    command: crate::objects::ObjectCommand,
}

#[derive(Debug, Subcommand)]
enum DeleteCommand {
    /// Delete a cluster.
    Cluster {
        #[command(flatten)]
        name: NameArg,
    },
    /// Delete clusters by name, or all of them.
    Clusters {
        /// Delete every minikind cluster.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
    },
    /// Remove an image (by tag or ID) from every node that has it; refused while a container
    /// uses it.
    Image {
        #[command(flatten)]
        name: NameArg,
        reference: String,
    },
    /// Objects by kind and name (`delete pods busybox`).
    #[command(external_subcommand)]
    Objects(Vec<String>),
}

#[derive(Debug, Subcommand)]
enum GetCommand {
    /// List clusters.
    Clusters,
    /// Print a cluster's kubeconfig.
    Kubeconfig {
        #[command(flatten)]
        name: NameArg,
        /// The address nodes use (`https://<cluster>-control-plane:6443`), not the host's.
        #[arg(long)]
        internal: bool,
    },
    /// List a cluster's node containers (KIND's `get nodes`; the API's Node objects are
    /// `get node` / `get no`).
    Nodes {
        #[command(flatten)]
        name: NameArg,
        /// Nodes of every cluster.
        #[arg(short = 'A', long, conflicts_with = "name")]
        all_clusters: bool,
    },
    /// The images in each node's image store.
    Images {
        #[command(flatten)]
        name: NameArg,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Objects of a kind (`get pods -A`, `get svc kube-dns -n kube-system -o yaml`).
    #[command(external_subcommand)]
    Objects(Vec<String>),
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// Gather every node's log, rules, resolv.conf and inspect output, every pod's log, the
    /// API objects and the Corefile into DIR (default: a new folder under the temporary
    /// directory), for a CI artifact.
    Logs {
        /// A new or empty folder.
        dir: Option<PathBuf>,
        #[command(flatten)]
        name: NameArg,
        /// Pack the folder into DIR.tar (and remove the folder).
        #[arg(long)]
        archive: bool,
    },
    /// Merge the cluster's kubeconfig into $KUBECONFIG (or ~/.kube/config, or --kubeconfig)
    /// and make its context current, as `create` did.
    Kubeconfig {
        #[command(flatten)]
        name: NameArg,
        /// The address nodes use (`https://<cluster>-control-plane:6443`), not the host's.
        #[arg(long)]
        internal: bool,
        /// The file to merge into instead of $KUBECONFIG or ~/.kube/config.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum LoadCommand {
    /// Load images from the host's Docker engine into the nodes (re-tags only where a node
    /// already has the image's ID).
    DockerImage {
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        name: NameArg,
        /// Only these nodes (comma-separated node names).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
    /// Load a `docker save` or OCI-layout tar (a file, or - for standard input) into the nodes.
    ImageArchive {
        file: String,
        #[command(flatten)]
        name: NameArg,
        /// Only these nodes (comma-separated node names).
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum BuildCommand {
    /// Build (again) the node image from this executable and the host's iptables.
    NodeImage,
}

/// The cluster's admin kubeconfig and the server it is reached at: from this host, or with
/// `internal` at the address the nodes use (`https://<cluster>-control-plane:6443`).
async fn admin_and_server(name: &str, internal: bool) -> Result<(String, String)> {
    let docker = docker::connect().await?;
    let (cp, admin) = control_plane_admin(&docker, name).await?;
    let server = if internal {
        format!("https://{cp}:6443")
    } else {
        nodes::api_server_url(&docker, name, &cp).await?
    };
    Ok((admin, server))
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cmd = Cli::command().after_help(format!(
        "Programs inside this executable, used inside nodes and pods: {} \
         (run `minikind <program> --help`).",
        crate::multicall::names().join(", ")
    ));
    let parsed = cmd
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    init_logging(cli.verbose, cli.quiet);
    if cli.command.only_prints() {
        // SAFETY: set once at start, before any thread exists; SIG_DFL installs no handler.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    let status = Status::new(Mode::detect(cli.quiet));
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, &status)) {
        Ok(()) => ExitCode::SUCCESS,
        // `minikind get pods | head -1`: the reader went away; like kubectl, say nothing.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::FAILURE
        }
        // A signal that stopped the command: 128 + its number, as a shell reports it.
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            ExitCode::from(crate::interrupt::exit_code(&e))
        }
    }
}

/// The log filter: `-q` only errors; `-v` adds minikind's own debug events (the image decision,
/// the network and containers made, step timings), as KIND's `-v 1` adds its debug lines;
/// `-vv` everything at debug, `-vvv` at trace. With neither flag, `RUST_LOG` if set, else
/// warnings only.
fn log_filter(verbose: u8, quiet: bool, rust_log: Option<&str>) -> String {
    match (quiet, verbose) {
        (true, _) => "error".into(),
        (false, 0) => rust_log
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("warn")
            .into(),
        (false, 1) => "warn,minikind=debug,minikind_images=debug".into(),
        (false, 2) => "debug".into(),
        _ => "trace".into(),
    }
}

/// The `-v` log goes to standard error (the step lines own standard output), around the
/// spinner when one turns.
fn init_logging(verbose: u8, quiet: bool) {
    use std::io::IsTerminal;
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = log_filter(verbose, quiet, rust_log.as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("WARNING: ignoring RUST_LOG={directives:?}: {e}");
        tracing_subscriber::EnvFilter::new("warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| crate::progress::LogWriter)
        .try_init();
}

fn read_config(path: Option<&str>) -> Result<ClusterConfig> {
    let Some(path) = path else {
        return Ok(ClusterConfig::default());
    };
    let text = if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the config from standard input")?;
        s
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading config file {path}"))?
    };
    let source = if path == "-" { "<stdin>" } else { path };
    Ok(ClusterConfig::parse(&text, source)?)
}

async fn run(command: Command, status: &Status) -> Result<()> {
    match command {
        Command::Version => {
            println!(
                "minikind v{} {}/{}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            Ok(())
        }
        Command::CloudProvider { name } => {
            let cluster = name.cluster(None)?;
            let docker = docker::connect().await?;
            let client = cluster_client(Some(cluster.clone())).await?;
            crate::cloud_provider::run(docker, client, cluster).await
        }
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "minikind", &mut std::io::stdout());
            Ok(())
        }
        Command::Create(CreateCommand::Cluster {
            name,
            config,
            retain,
            wait,
        }) => {
            // Everything about the input is checked before Docker is even asked.
            let cfg = read_config(config.as_deref())?;
            let name = name.cluster(cfg.name.as_deref())?;
            let docker = docker::connect().await?;
            create::create(
                &docker,
                status,
                create::CreateOptions {
                    name,
                    config: cfg,
                    retain,
                    wait,
                },
            )
            .await
            .map(|_| ())
        }
        Command::Exec {
            cluster,
            namespace,
            container,
            pod,
            command,
        } => {
            let client = cluster_client(cluster).await?;
            let code =
                crate::pod_commands::exec(client, &namespace, &pod, container.as_deref(), &command)
                    .await?;
            if code != 0 {
                // The command's own exit code, as kubectl passes it on.
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Logs {
            cluster,
            namespace,
            container,
            follow,
            previous,
            tail,
            pod,
        } => {
            let client = cluster_client(cluster).await?;
            crate::pod_commands::logs(
                client,
                &namespace,
                &pod,
                container.as_deref(),
                follow,
                previous,
                tail,
            )
            .await
        }
        Command::Apply(a) => run_objects("apply", a.args).await,
        Command::Scale(a) => run_objects("scale", a.args).await,
        Command::Rollout(a) => run_objects("rollout", a.args).await,
        Command::Delete(DeleteArgs {
            which: None,
            objects,
        }) => run_objects("delete", objects).await,
        Command::Delete(DeleteArgs {
            which: Some(DeleteCommand::Objects(args)),
            ..
        }) => run_objects("delete", args).await,
        Command::Get(GetArgs {
            which: None,
            objects,
        }) => run_objects("get", objects).await,
        Command::Get(GetArgs {
            which: Some(GetCommand::Objects(args)),
            ..
        }) => run_objects("get", args).await,
        Command::Delete(DeleteArgs {
            which: Some(DeleteCommand::Cluster { name }),
            ..
        }) => {
            let name = name.cluster(None)?;
            let docker = docker::connect().await?;
            delete_one(&docker, status, &name).await
        }
        Command::Delete(DeleteArgs {
            which: Some(DeleteCommand::Clusters { all, names }),
            ..
        }) => {
            let docker = docker::connect().await?;
            let names = if all {
                docker::cluster_names(&docker).await?
            } else {
                for n in &names {
                    config::validate_name(n)?;
                }
                names
            };
            for n in names {
                delete_one(&docker, status, &n).await?;
            }
            Ok(())
        }
        Command::Get(GetArgs {
            which: Some(GetCommand::Clusters),
            ..
        }) => {
            let docker = docker::connect().await?;
            let names = docker::cluster_names(&docker).await?;
            if names.is_empty() {
                eprintln!("No minikind clusters found.");
            }
            for n in names {
                println!("{n}");
            }
            Ok(())
        }
        Command::Get(GetArgs {
            which: Some(GetCommand::Nodes { name, all_clusters }),
            ..
        }) => {
            let docker = docker::connect().await?;
            let cluster = if all_clusters {
                None
            } else {
                Some(name.cluster(None)?)
            };
            let nodes = list::nodes(&docker, cluster.as_deref()).await?;
            if nodes.is_empty() {
                match &cluster {
                    Some(c) => eprintln!("No minikind nodes found for cluster \"{c}\"."),
                    None => eprintln!("No minikind nodes found."),
                }
            }
            for n in nodes {
                println!("{}", n.name);
            }
            Ok(())
        }
        Command::Get(GetArgs {
            which: Some(GetCommand::Kubeconfig { name, internal }),
            ..
        }) => {
            let name = name.cluster(None)?;
            let (admin, server) = admin_and_server(&name, internal).await?;
            print!(
                "{}",
                crate::cluster::kubeconfig::entries_for(&name, &admin, &server)?
            );
            Ok(())
        }
        Command::Export(ExportCommand::Logs { dir, name, archive }) => {
            let name = name.cluster(None)?;
            let docker = docker::connect().await?;
            let dir = dir.unwrap_or_else(|| crate::cluster::export_logs::default_dir(&name));
            let step = status.step(format!("Exporting the logs of cluster \"{name}\""));
            let (written, missing) =
                match crate::cluster::export_logs::export(&docker, &name, &dir, archive).await {
                    Ok(r) => r,
                    Err(e) => {
                        step.fail();
                        return Err(e);
                    }
                };
            step.done();
            if missing > 0 {
                status.warning(&format!(
                    "{missing} part(s) could not be collected: see errors.txt in the export"
                ));
            }
            println!("{}", written.display());
            Ok(())
        }
        Command::Export(ExportCommand::Kubeconfig {
            name,
            internal,
            kubeconfig,
        }) => {
            let name = name.cluster(None)?;
            let (admin, server) = admin_and_server(&name, internal).await?;
            let path = crate::cluster::kubeconfig::export_to(kubeconfig, &name, &admin, &server)?;
            status.line(&format!(
                "Set kubectl context to \"{}\" in {}",
                minikind_apiserver::kubeconfig::entry_name(&name),
                path.display()
            ));
            Ok(())
        }
        Command::Dns(cmd) => crate::dns::run(cmd).await,
        // Inside a node, run by the CLI; synchronous and short.
        Command::Node(cmd) => crate::node_images::run(cmd),
        Command::Load(LoadCommand::DockerImage {
            images,
            name,
            nodes,
        }) => {
            let name = name.cluster(None)?;
            let docker = docker::connect().await?;
            crate::images::load_docker_images(&docker, status, &name, &images, &nodes).await
        }
        Command::Load(LoadCommand::ImageArchive { file, name, nodes }) => {
            let name = name.cluster(None)?;
            let docker = docker::connect().await?;
            crate::images::load_archive(&docker, status, &name, &file, &nodes).await
        }
        Command::Get(GetArgs {
            which: Some(GetCommand::Images { name, node }),
            ..
        }) => {
            let name = name.cluster(None)?;
            let docker = docker::connect().await?;
            crate::images::get_images(&docker, &name, node.as_deref()).await
        }
        Command::Delete(DeleteArgs {
            which: Some(DeleteCommand::Image { name, reference }),
            ..
        }) => {
            let name = name.cluster(None)?;
            let docker = docker::connect().await?;
            crate::images::delete_image(&docker, status, &name, &reference).await
        }
        Command::Build(BuildCommand::NodeImage) => {
            let docker = docker::connect().await?;
            let step = status.step("Building node image");
            let image = minikind_images::ensure_node_image(&docker, true).await?;
            step.done();
            tracing::info!(
                image = %image.reference,
                id = %image.id,
                rootfs_sha256 = %image.rootfs_sha256,
                rootfs_bytes = image.rootfs_bytes,
                "node image built and imported"
            );
            println!("{}", image.reference);
            Ok(())
        }
    }
}

/// Runs an object command against a cluster, reaching its API server the way `create` does.
async fn run_objects(verb: &str, args: Vec<String>) -> Result<()> {
    let line = std::iter::once(verb.to_string()).chain(args);
    let cli = match ObjectCli::try_parse_from(line) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => {
            print!("{e}");
            return Ok(());
        }
        Err(e) => anyhow::bail!("{}", e.to_string().trim_end()),
    };
    let client = cluster_client(cli.cluster).await?;
    crate::objects::run(cli.command, client).await
}

async fn delete_one(docker: &bollard::Docker, status: &Status, name: &str) -> Result<()> {
    status.line(&format!("Deleting cluster \"{name}\" ..."));
    let started = std::time::Instant::now();
    crate::cluster::kubeconfig::unexport(name)?;
    let removed = delete::remove_cluster_objects(docker, name).await?;
    tracing::info!(
        cluster = %name,
        containers = removed.containers.len(),
        volumes = removed.volumes.len(),
        networks = removed.networks.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "cluster objects removed"
    );
    if removed.is_empty() {
        status.line(&format!("cluster \"{name}\" not found: nothing to delete"));
    } else {
        status.line(&format!("Deleted nodes: {:?}", removed.containers));
    }
    // The cluster's containers may have been the last users of a node image a rebuild left
    // untagged: nobody would ever use it again.
    let images =
        minikind_images::remove_unused_node_images(docker, minikind_images::Prune::Untagged)
            .await?;
    if !images.is_empty() {
        tracing::info!(ids = ?images, "untagged node images no container uses removed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kind_style_commands_parse() {
        for line in [
            "minikind create cluster --name a --config c.yaml --retain --wait 30s",
            "minikind delete cluster --name a",
            "minikind delete clusters --all",
            "minikind delete clusters a b",
            "minikind get clusters",
            "minikind get nodes --all-clusters",
            "minikind get nodes --name a",
            "minikind get kubeconfig --name a --internal",
            "minikind build node-image",
            "minikind version",
            "minikind completion bash",
            "minikind -q create cluster",
            "minikind create cluster -vv",
            "minikind get pods -A",
            "minikind get svc kube-dns -n kube-system -o yaml --name lab",
            "minikind delete -f x.yaml --name lab",
            "minikind delete pods busybox",
            "minikind apply -f x.yaml",
            "minikind exec --name lab busybox -- nslookup busybox-svc",
            "minikind exec -n kube-system -c coredns coredns-x -- cat /etc/resolv.conf",
            "minikind logs -f -n kube-system coredns-x",
            "minikind scale deployment coredns --replicas 4 -n kube-system",
            "minikind dns magic status --name lab",
            "minikind dns magic off --node worker",
            "minikind load docker-image busybox:latest app:dev --name lab --nodes a,b",
            "minikind load image-archive - --name lab",
            "minikind get images --name lab --node lab-worker",
            "minikind delete image busybox:latest --name lab",
            "minikind node images import",
            "minikind node images list -o json",
            "minikind node images remove sha256:00",
        ] {
            Cli::try_parse_from(line.split_whitespace()).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        assert!(Cli::try_parse_from("minikind delete clusters".split_whitespace()).is_err());
        assert!(
            Cli::try_parse_from("minikind create cluster --wait soon".split_whitespace()).is_err()
        );
    }

    /// `-n` is the namespace everywhere; given to a command that names a cluster, it is a
    /// clear error pointing at `--name`, never taken as the cluster.
    #[test]
    fn dash_n_is_never_the_cluster() {
        let cli = Cli::try_parse_from("minikind create cluster -n lab".split_whitespace()).unwrap();
        let Command::Create(CreateCommand::Cluster { name, .. }) = cli.command else {
            panic!("not a create");
        };
        let err = name.cluster(None).unwrap_err().to_string();
        assert!(
            err.contains("-n is the namespace") && err.contains("--name lab"),
            "{err}"
        );
        for line in [
            "minikind get nodes -n lab",
            "minikind get kubeconfig -n lab",
            "minikind delete cluster -n lab",
        ] {
            // Parsed (so the hint can be given), never as `--name`.
            let cli = Cli::try_parse_from(line.split_whitespace()).unwrap();
            assert!(format!("{cli:?}").contains("name: None"), "{line}: {cli:?}");
        }
    }

    #[test]
    fn verbosity_picks_the_log_filter() {
        assert_eq!(log_filter(0, false, None), "warn");
        assert_eq!(log_filter(0, false, Some("info")), "info");
        assert_eq!(log_filter(0, false, Some(" ")), "warn");
        // -v shows minikind's own debug events (not every library's), whatever RUST_LOG says.
        let v = log_filter(1, false, Some("error"));
        assert!(
            v.contains("minikind=debug") && v.contains("minikind_images=debug"),
            "{v}"
        );
        assert!(v.starts_with("warn"), "{v}");
        assert_eq!(log_filter(2, false, None), "debug");
        assert_eq!(log_filter(5, false, None), "trace");
        assert_eq!(log_filter(3, true, Some("trace")), "error");
        for d in [v, log_filter(2, false, None)] {
            tracing_subscriber::EnvFilter::try_new(&d).unwrap();
        }
    }
}

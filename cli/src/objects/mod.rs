//! Objects from the command line, through kube-rs: `apply -f`, `delete -f|KIND NAME`,
//! `get KIND [NAME] [-A] [-o wide|yaml|json]`, `scale deployment NAME --replicas N`,
//! `rollout restart|status deployment NAME`.
//!
//! The cluster (and so the client) is chosen by the caller (`--name`, as KIND does).

pub mod api;
mod kinds;
mod manifest;
mod print;
mod rollout;
mod select;

use anyhow::{Context, bail};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use std::io::Write;

use self::api::{api_error, dyn_api};
use self::print::Output;
use self::rollout::RolloutAction;
use self::select::{kind_and_names, one_deployment};

/// The field manager of `minikind apply` (server-side apply, conflicts forced like
/// `kubectl apply --server-side --force-conflicts`: the file is the source of truth).
pub const FIELD_MANAGER: &str = "minikind";

#[derive(clap::Subcommand, Debug)]
pub enum ObjectCommand {
    /// Create or update the objects of a manifest (multi-document YAML; `-` reads stdin)
    Apply {
        /// Manifest file, or `-` for stdin
        #[arg(short = 'f', long = "filename")]
        file: String,
        /// Namespace for objects that name none
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Delete the objects of a manifest, or objects by kind and name
    Delete {
        /// Manifest file, or `-` for stdin
        #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "names"])]
        file: Option<String>,
        /// Kind (pods, svc, deploy, cm, …) when deleting by name
        kind: Option<String>,
        /// Names of the objects
        names: Vec<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Succeed when an object does not exist
        #[arg(long)]
        ignore_not_found: bool,
    },
    /// List objects of a kind, or show one
    Get {
        /// pods, services (svc), endpointslices, nodes, deployments (deploy), configmaps (cm), namespaces, endpoints, events
        kind: String,
        /// One object by name
        name: Option<String>,
        /// All namespaces
        #[arg(short = 'A', long = "all-namespaces")]
        all_namespaces: bool,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Label selector
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(short = 'o', long, value_enum)]
        output: Option<Output>,
    },
    /// Set the replicas of a Deployment
    Scale {
        /// `deployment NAME` or `deployment/NAME`
        target: String,
        name: Option<String>,
        #[arg(long)]
        replicas: i32,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Restart a Deployment's pods or wait for its rollout, like `kubectl rollout`
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
    },
}

/// Runs an object command, printing to stdout.
pub async fn run(cmd: ObjectCommand, client: kube::Client) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    run_to(cmd, client, &mut out).await
}

/// Runs an object command, printing to `out` (messages such as "No resources found" go to
/// stderr, as kubectl prints them).
pub async fn run_to(
    cmd: ObjectCommand,
    client: kube::Client,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        ObjectCommand::Apply { file, namespace } => {
            let text = manifest::read_source(&file)?;
            let docs = manifest::parse(&text, &file)?;
            if docs.is_empty() {
                bail!("{file}: no objects found");
            }
            let default_ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            for d in docs {
                apply_one(&client, &d, &default_ns, out).await?;
            }
            Ok(())
        }
        ObjectCommand::Delete {
            file,
            kind,
            names,
            namespace,
            ignore_not_found,
        } => {
            let default_ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            let targets: Vec<(&'static kinds::Kind, String, String)> = match (file, kind) {
                (Some(f), _) => {
                    let text = manifest::read_source(&f)?;
                    manifest::parse(&text, &f)?
                        .into_iter()
                        .map(|d| {
                            let ns = d.namespace.clone().unwrap_or_else(|| default_ns.clone());
                            (d.kind, d.name, ns)
                        })
                        .collect()
                }
                (None, Some(k)) => {
                    let (kind, names) = kind_and_names(&k, names)?;
                    if names.is_empty() {
                        bail!("delete {k}: name the objects to delete");
                    }
                    names
                        .into_iter()
                        .map(|n| (kind, n, default_ns.clone()))
                        .collect()
                }
                (None, None) => bail!("delete: give -f FILE or KIND NAME…"),
            };
            for (kind, name, ns) in targets {
                let api = dyn_api(&client, kind, Some(&ns));
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => writeln!(out, "{}/{name} deleted", kind.display())?,
                    Err(kube::Error::Api(s)) if s.code == 404 && ignore_not_found => {}
                    Err(e) => {
                        return Err(api_error(e))
                            .with_context(|| format!("deleting {}/{name}", kind.display()));
                    }
                }
            }
            Ok(())
        }
        ObjectCommand::Get {
            kind,
            name,
            all_namespaces,
            namespace,
            selector,
            output,
        } => {
            let (k, names) = kind_and_names(&kind, name.into_iter().collect())?;
            let ns = if all_namespaces && names.is_empty() {
                None
            } else {
                Some(namespace.unwrap_or_else(|| client.default_namespace().to_string()))
            };
            print::get(
                &client,
                k,
                names.first().map(String::as_str),
                ns.as_deref(),
                selector.as_deref(),
                output,
                out,
            )
            .await
        }
        ObjectCommand::Scale {
            target,
            name,
            replicas,
            namespace,
        } => {
            let (name, ns) = one_deployment(&client, "scale", &target, name, namespace)?;
            if replicas < 0 {
                bail!("scale: --replicas must be 0 or more, not {replicas}");
            }
            let api: Api<k8s_openapi::api::apps::v1::Deployment> =
                Api::namespaced(client.clone(), &ns);
            api.patch_scale(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
            .map_err(api_error)
            .with_context(|| format!("scaling deployment {name} in {ns}"))?;
            writeln!(out, "deployment.apps/{name} scaled")?;
            Ok(())
        }
        ObjectCommand::Rollout { action } => rollout::run(&client, action, out).await,
    }
}

/// The object without what controllers write on their own (status, versions, field owners):
/// comparing resource versions alone would call an apply "configured" whenever a controller
/// happened to update the status between our read and our patch.
fn desired_state(o: &DynamicObject) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(o).context("encoding the object")?;
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = v["metadata"].as_object_mut() {
        for k in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(k);
        }
    }
    Ok(v)
}

async fn apply_one(
    client: &kube::Client,
    d: &manifest::Doc,
    default_ns: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let ns = d
        .namespace
        .clone()
        .unwrap_or_else(|| default_ns.to_string());
    let api = dyn_api(client, d.kind, Some(&ns));
    let mut body = d.value.clone();
    if d.kind.namespaced {
        body["metadata"]["namespace"] = Value::String(ns.clone());
    }
    let before = api
        .get_opt(&d.name)
        .await
        .map_err(api_error)
        .with_context(|| d.describe())?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let after = api
        .patch(&d.name, &pp, &Patch::Apply(&body))
        .await
        .map_err(api_error)
        .with_context(|| format!("applying {}", d.describe()))?;
    let verb = match before {
        None => "created",
        Some(b) if desired_state(&b)? == desired_state(&after)? => "unchanged",
        Some(_) => "configured",
    };
    writeln!(out, "{}/{} {verb}", d.kind.display(), d.name)?;
    Ok(())
}

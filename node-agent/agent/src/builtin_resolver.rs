//! `dns.embedded: builtin`: the node serves 127.0.0.11 with minikind's reimplementation of
//! Docker's resolver (`minikind dns-embedded`) instead of dockerd's.
//!
//! The agent starts it as a child process in the node's own network namespace, before the
//! network magic: it binds two random ports on 127.0.0.11, flushes Docker's `DOCKER_OUTPUT` /
//! `DOCKER_POSTROUTING` chains and fills them with the same rules for its own ports, and only
//! then writes its ready file. The magic then rewrites those rules exactly as it rewrites
//! Docker's. Its query log goes to the agent's stdout, i.e. `docker logs <node>`.
//!
//! The names it answers come from a JSON file the CLI writes into the node once every
//! container of the cluster has an address ([`NAMES_PATH`]); the resolver re-reads it when it
//! changes. The external servers are the ones the node was created with (`--dns`), handed over
//! in the environment because Docker 20.10 records them nowhere in the container.
//!
//! If the resolver exits, [`supervise`] starts it again (with back-off); its start rebuilds
//! Docker's chains for the new ports (flushing, never duplicating), and the caller's hook puts
//! the magic back on top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use minikind_contract::NAMES_PATH;
use minikind_iptables::Flavour;

/// Where the resolver reports its ports once its rules are in place.
pub const READY_PATH: &str = "/run/minikind/dns-embedded.json";
/// How long the first start waits for the CLI's names file before serving an empty table.
pub const NAMES_WAIT: Duration = Duration::from_secs(60);
/// How long a start may take until the resolver reports ready.
const READY_WAIT: Duration = Duration::from_secs(20);
/// Restart back-off: first delay, and the most it grows to.
const RESTART_DELAY: Duration = Duration::from_millis(500);
const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// A resolver that ran this long before exiting restarts with the first delay again.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// How to start the resolver.
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    /// The multicall executable (`minikind`), run as `<program> dns-embedded …`.
    pub program: PathBuf,
    pub names: PathBuf,
    pub ready_file: PathBuf,
    /// External servers (`IP` or `IP:PORT`), in order.
    pub servers: Vec<String>,
    /// `legacy` or `nft`: the flavour the agent chose (Docker's rules live there).
    pub iptables_flavour: Flavour,
    pub names_wait: Duration,
    pub ready_wait: Duration,
}

impl ResolverOptions {
    /// The node's paths, this executable, and the given servers and flavour.
    pub fn for_node(servers: Vec<String>, iptables_flavour: Flavour) -> anyhow::Result<Self> {
        Ok(Self {
            program: std::env::current_exe().context("finding my own executable")?,
            names: PathBuf::from(NAMES_PATH),
            ready_file: PathBuf::from(READY_PATH),
            servers,
            iptables_flavour,
            names_wait: NAMES_WAIT,
            ready_wait: READY_WAIT,
        })
    }
}

/// The ports a started resolver reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

/// A resolver process that reported ready.
pub struct RunningResolver {
    child: Child,
    pub ready: Ready,
}

impl RunningResolver {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts the resolver and waits until its rules are in place. A names file that has not
/// appeared within `names_wait` is created empty (the resolver picks up the CLI's file when it
/// arrives later).
pub fn start(opts: &ResolverOptions) -> anyhow::Result<RunningResolver> {
    ensure_names_file(&opts.names, opts.names_wait)?;
    if let Some(dir) = opts.ready_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(&opts.ready_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("removing {}", opts.ready_file.display()));
        }
    }
    let mut cmd = Command::new(&opts.program);
    cmd.arg("dns-embedded")
        .arg("--names")
        .arg(&opts.names)
        .arg("--iptables")
        .arg(opts.iptables_flavour.as_str())
        .arg("--ready-file")
        .arg(&opts.ready_file)
        .stdin(Stdio::null());
    if !opts.servers.is_empty() {
        cmd.arg("--servers").arg(opts.servers.join(","));
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} dns-embedded", opts.program.display()))?;
    match wait_ready(&mut child, &opts.ready_file, opts.ready_wait) {
        Ok(ready) => Ok(RunningResolver { child, ready }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Waits for the CLI's names file; creates an empty table when it does not come in time.
fn ensure_names_file(path: &Path, wait: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut said = false;
    while !path.exists() {
        if started.elapsed() >= wait {
            eprintln!(
                "minikind node agent: no names table at {} after {wait:?}: serving no container \
                 names until it appears",
                path.display()
            );
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            // create_new: never clobber a file the CLI wrote in the meantime.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(b"{\"networks\":[]}\n")
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
            break;
        }
        if !said {
            println!(
                "minikind node agent: waiting for the cluster's names table at {}",
                path.display()
            );
            said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Polls for the ready file while the child lives.
fn wait_ready(child: &mut Child, path: &Path, limit: Duration) -> anyhow::Result<Ready> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("watching dns-embedded")? {
            bail!(
                "dns-embedded exited before it was ready ({status}); its error is in the node's log"
            );
        }
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(ready) = parse_ready(&text)
        {
            return Ok(ready);
        }
        if started.elapsed() >= limit {
            bail!(
                "dns-embedded did not report ready in {} within {limit:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The resolver's ready file: `{"udp":"127.0.0.11:41553","tcp":"127.0.0.11:38405",…}`. A
/// file still being written does not parse yet.
pub fn parse_ready(text: &str) -> Option<Ready> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    Some(Ready {
        udp: v["udp"].as_str()?.parse().ok()?,
        tcp: v["tcp"].as_str()?.parse().ok()?,
    })
}

/// Keeps the resolver running: when it exits it is started again (500 ms back-off, doubling
/// to 30 s while starts keep failing or the resolver keeps dying quickly), and `after_restart`
/// runs once the new one is ready. Runs on its own thread for the agent's lifetime.
pub fn supervise<F>(
    running: RunningResolver,
    opts: ResolverOptions,
    after_restart: F,
) -> JoinHandle<()>
where
    F: Fn(&Ready) + Send + 'static,
{
    std::thread::Builder::new()
        .name("dns-embedded-supervisor".into())
        .spawn(move || {
            let mut current = Some(running);
            let mut delay = RESTART_DELAY;
            loop {
                if let Some(mut running) = current.take() {
                    let since = Instant::now();
                    let status = running.child.wait();
                    if since.elapsed() >= STABLE_RUN {
                        delay = RESTART_DELAY;
                    }
                    eprintln!(
                        "minikind node agent: dns-embedded (pid {}) exited ({}); restarting in {delay:?}",
                        running.pid(),
                        status.map_or_else(|e| e.to_string(), |s| s.to_string())
                    );
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(RESTART_DELAY_MAX);
                match start(&opts) {
                    Ok(running) => {
                        println!(
                            "minikind node agent: dns-embedded restarted (pid {}): udp {} tcp {}",
                            running.pid(),
                            running.ready.udp,
                            running.ready.tcp
                        );
                        after_restart(&running.ready);
                        current = Some(running);
                    }
                    Err(e) => eprintln!("minikind node agent: restarting dns-embedded: {e:#}"),
                }
            }
        })
        .expect("spawning a thread")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;

    /// A stand-in for `minikind`: `dns-embedded … --ready-file F` counts its runs, reports the
    /// run number as its ports, then lives for `life` seconds (or forever).
    fn fake_program(dir: &Path, body_after_ready: &str) -> PathBuf {
        let path = dir.join("minikind");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n\
                 [ \"$1\" = dns-embedded ] || exit 64\n\
                 echo \"$@\" >> '{args}'\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = --ready-file ] && ready=\"$2\"; shift; done\n\
                 n=$(wc -l < '{args}')\n\
                 printf '{{\"udp\":\"127.0.0.11:%d\",\"tcp\":\"127.0.0.11:%d\"}}' $((40000+n)) $((50000+n)) > \"$ready\"\n\
                 {body_after_ready}\n",
                args = dir.join("args").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn options(dir: &Path, program: PathBuf) -> ResolverOptions {
        ResolverOptions {
            program,
            names: dir.join("etc/names.json"),
            ready_file: dir.join("run/ready.json"),
            servers: vec!["172.18.0.2".into(), "192.0.2.53:5353".into()],
            iptables_flavour: Flavour::Nft,
            names_wait: Duration::from_millis(300),
            ready_wait: Duration::from_secs(5),
        }
    }

    #[test]
    fn start_passes_the_settings_and_reads_the_ports() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), fake_program(dir.path(), "exec sleep 30"));
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(&opts.names, "{\"networks\":[{\"network\":\"n\"}]}").unwrap();
        let mut running = start(&opts).unwrap();
        assert_eq!(running.ready.udp, "127.0.0.11:40001".parse().unwrap());
        assert_eq!(running.ready.tcp, "127.0.0.11:50001".parse().unwrap());
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(
            args.trim(),
            format!(
                "dns-embedded --names {} --iptables nft --ready-file {} --servers 172.18.0.2,192.0.2.53:5353",
                opts.names.display(),
                opts.ready_file.display()
            )
        );
        // The CLI's file was there: it is left as it was.
        assert!(
            std::fs::read_to_string(&opts.names)
                .unwrap()
                .contains("\"n\"")
        );
        running.child.kill().unwrap();
        running.child.wait().unwrap();
    }

    #[test]
    fn a_missing_names_file_becomes_an_empty_table_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), fake_program(dir.path(), "exec sleep 30"));
        let started = Instant::now();
        let mut running = start(&opts).unwrap();
        assert!(started.elapsed() >= opts.names_wait);
        assert_eq!(
            std::fs::read_to_string(&opts.names).unwrap(),
            "{\"networks\":[]}\n"
        );
        running.child.kill().unwrap();
        running.child.wait().unwrap();
    }

    #[test]
    fn a_resolver_that_dies_before_ready_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("minikind");
        std::fs::write(
            &program,
            "#!/bin/sh\necho 'dns-embedded: bad table' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let opts = options(dir.path(), program);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(&opts.names, "{}").unwrap();
        let err = format!("{:#}", start(&opts).err().unwrap());
        assert!(err.contains("exited before it was ready"), "{err}");
    }

    #[test]
    fn a_resolver_that_never_reports_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("minikind");
        std::fs::write(&program, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut opts = options(dir.path(), program);
        opts.ready_wait = Duration::from_millis(300);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(&opts.names, "{}").unwrap();
        let err = format!("{:#}", start(&opts).err().unwrap());
        assert!(err.contains("did not report ready"), "{err}");
    }

    #[test]
    fn the_supervisor_restarts_and_calls_the_hook_with_the_new_ports() {
        let dir = tempfile::tempdir().unwrap();
        // Each run lives a moment, then exits as if it crashed.
        let opts = options(dir.path(), fake_program(dir.path(), "sleep 0.2; exit 3"));
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(&opts.names, "{}").unwrap();
        let first = start(&opts).unwrap();
        assert_eq!(first.ready.udp.port(), 40001);
        let (tx, rx) = mpsc::channel();
        let _supervisor = supervise(first, opts, move |ready| {
            let _ = tx.send(*ready);
        });
        let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second.udp.port(), 40002);
        assert_eq!(second.tcp.port(), 50002);
        let third = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(third.udp.port(), 40003);
    }

    #[test]
    fn ready_files_parse_only_when_complete() {
        assert_eq!(
            parse_ready("{\"udp\":\"127.0.0.11:1\",\"tcp\":\"127.0.0.11:2\",\"servers\":[]}"),
            Some(Ready {
                udp: "127.0.0.11:1".parse().unwrap(),
                tcp: "127.0.0.11:2".parse().unwrap()
            })
        );
        assert_eq!(parse_ready("{\"udp\":\"127.0.0.11:1\""), None);
        assert_eq!(parse_ready("{\"udp\":\"x\",\"tcp\":\"y\"}"), None);
    }
}

//! Which Docker engine minikind talks to, chosen as the docker CLI chooses it
//! (docker/cli `cli/command/cli.go`, `resolveContextName`, and `cli/context/docker`):
//!
//! 1. `DOCKER_HOST` (`unix://`, `tcp://`, `http://`, `https://`, `ssh://`), with TLS when
//!    `DOCKER_TLS_VERIFY` is set to anything but empty, its files (`ca.pem`, `cert.pem`,
//!    `key.pem`) in `DOCKER_CERT_PATH` (else the docker config directory);
//! 2. else the context named by `DOCKER_CONTEXT`;
//! 3. else the `currentContext` of `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`);
//! 4. else the local socket, `unix:///var/run/docker.sock`.
//!
//! A context other than `default` is read from
//! `$DOCKER_CONFIG/contexts/meta/<sha256 of its name>/meta.json` (`Endpoints.docker.Host`,
//! `SkipTLSVerify`) with its TLS files under `contexts/tls/<same digest>/docker/`.
//!
//! The endpoint also says where the engine's host is, as seen from here: the node ports the
//! engine publishes are on that host, so the kubeconfig must point there.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The engine's socket when nothing else is said (the docker CLI's `DefaultDockerHost`).
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where the engine is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host URL as given (`unix:///…`, `tcp://h:2376`, `ssh://user@h`).
    pub host: String,
    /// Where the URL came from, for messages (`DOCKER_HOST`, `context "remote"`, …).
    pub source: String,
    /// TLS files; None for a plain connection.
    pub tls: Option<TlsFiles>,
}

/// The client's TLS material, as the docker CLI names the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_dir(dir: &Path) -> Self {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// The process environment the choice depends on, gathered once so tests can give their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    pub docker_tls_verify: Option<String>,
    pub docker_cert_path: Option<PathBuf>,
    /// `$DOCKER_CONFIG`, else `$HOME/.docker`.
    pub config_dir: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_tls_verify: var("DOCKER_TLS_VERIFY"),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            config_dir: var("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".docker"))),
        }
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", default)]
    endpoints: ContextEndpoints,
}

#[derive(Deserialize, Default)]
struct ContextEndpoints {
    docker: Option<DockerEndpointMeta>,
}

#[derive(Deserialize)]
struct DockerEndpointMeta {
    #[serde(rename = "Host")]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// Chooses the engine as the docker CLI would from `env` (see the module docs).
pub fn resolve(env: &Env) -> Result<Endpoint> {
    if let Some(host) = &env.docker_host {
        let tls = env.docker_tls_verify.is_some().then(|| {
            let dir = env
                .docker_cert_path
                .clone()
                .or_else(|| env.config_dir.clone())
                .unwrap_or_else(|| PathBuf::from(".docker"));
            TlsFiles::in_dir(&dir)
        });
        return Ok(Endpoint {
            host: host.clone(),
            source: "DOCKER_HOST".into(),
            tls,
        });
    }
    let (context, source) = match &env.docker_context {
        Some(c) => (Some(c.clone()), "DOCKER_CONTEXT"),
        None => (current_context(env)?, "currentContext in the docker config"),
    };
    match context {
        Some(name) if name != "default" => context_endpoint(env, &name, source),
        _ => Ok(Endpoint {
            host: DEFAULT_HOST.into(),
            source: "the default socket".into(),
            tls: None,
        }),
    }
}

fn current_context(env: &Env) -> Result<Option<String>> {
    let Some(dir) = &env.config_dir else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let cfg: ConfigFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a docker config file", path.display()))?;
    Ok(cfg.current_context.filter(|c| !c.is_empty()))
}

fn context_endpoint(env: &Env, name: &str, source: &str) -> Result<Endpoint> {
    let dir = env
        .config_dir
        .as_ref()
        .with_context(|| format!("docker context {name:?} ({source}): no docker config directory (set DOCKER_CONFIG or HOME)"))?;
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let meta_path = dir.join("contexts/meta").join(&digest).join("meta.json");
    let text = std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "docker context {name:?} ({source}) does not exist: {} cannot be read",
            meta_path.display()
        )
    })?;
    let meta: ContextMeta = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a docker context", meta_path.display()))?;
    let Some(docker) = meta.endpoints.docker else {
        bail!(
            "docker context {name:?} has no docker endpoint ({})",
            meta_path.display()
        );
    };
    let Some(host) = docker.host.filter(|h| !h.is_empty()) else {
        bail!(
            "docker context {name:?} names no Host ({})",
            meta_path.display()
        );
    };
    let tls_dir = dir.join("contexts/tls").join(&digest).join("docker");
    if docker.skip_tls_verify {
        bail!(
            "docker context {name:?} sets SkipTLSVerify: minikind does not talk to an engine \
             whose certificate it cannot check; give the context the engine's CA"
        );
    }
    let tls = tls_dir
        .join("ca.pem")
        .exists()
        .then(|| TlsFiles::in_dir(&tls_dir));
    Ok(Endpoint {
        host,
        source: format!("docker context {name:?} ({source})"),
        tls,
    })
}

impl Endpoint {
    /// The engine's host name as the URL gives it, None for a local socket.
    pub fn remote_host(&self) -> Option<String> {
        let rest = ["tcp://", "http://", "https://", "ssh://"]
            .iter()
            .find_map(|s| self.host.strip_prefix(s))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or_default()
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        (!host.is_empty()).then(|| host.to_string())
    }

    /// The address the engine's host has as seen from here: loopback for a local socket, else
    /// the remote host's name resolved here. Ports the engine publishes are reached there.
    pub fn host_address(&self) -> Result<IpAddr> {
        let Some(host) = self.remote_host() else {
            return Ok(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        };
        if let Ok(ip) = host.parse() {
            return Ok(ip);
        }
        (host.as_str(), 0)
            .to_socket_addrs()
            .with_context(|| format!("resolving the engine's host {host:?} ({})", self.source))?
            .map(|a| a.ip())
            .next()
            .with_context(|| format!("the engine's host {host:?} has no address"))
    }

    /// Connects (without talking yet) as the URL's scheme says.
    pub fn client(&self) -> Result<bollard::Docker> {
        use bollard::{API_DEFAULT_VERSION, Docker};
        const TIMEOUT_SECS: u64 = 120;
        let h = self.host.as_str();
        let docker = if h.starts_with("unix://") {
            if self.tls.is_some() {
                bail!("{} ({}) is a socket: TLS does not apply", h, self.source);
            }
            Docker::connect_with_unix(h, TIMEOUT_SECS, API_DEFAULT_VERSION)
        } else if h.starts_with("tcp://") || h.starts_with("http://") || h.starts_with("https://") {
            match (&self.tls, h.starts_with("https://")) {
                (Some(t), _) => {
                    for f in [&t.ca, &t.cert, &t.key] {
                        if !f.exists() {
                            bail!(
                                "TLS to the engine at {h} ({}) needs {}, which does not exist",
                                self.source,
                                f.display()
                            );
                        }
                    }
                    Docker::connect_with_ssl(
                        h,
                        &t.key,
                        &t.cert,
                        &t.ca,
                        TIMEOUT_SECS,
                        API_DEFAULT_VERSION,
                    )
                }
                (None, true) => bail!(
                    "{h} ({}) asks for TLS but names no certificates: set DOCKER_TLS_VERIFY=1 \
                     and DOCKER_CERT_PATH",
                    self.source
                ),
                (None, false) => Docker::connect_with_http(h, TIMEOUT_SECS, API_DEFAULT_VERSION),
            }
        } else if h.starts_with("ssh://") {
            Docker::connect_with_ssh(h, TIMEOUT_SECS, API_DEFAULT_VERSION, None)
        } else {
            bail!(
                "the Docker host {h:?} ({}) is not a unix://, tcp://, http://, https:// or ssh:// URL",
                self.source
            );
        };
        docker.with_context(|| format!("connecting to the Docker engine at {h} ({})", self.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(dir: &Path) -> Env {
        Env {
            config_dir: Some(dir.to_path_buf()),
            ..Env::default()
        }
    }

    fn write_context(dir: &Path, name: &str, host: &str, with_tls: bool) {
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        let meta = dir.join("contexts/meta").join(&digest);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            ),
        )
        .unwrap();
        if with_tls {
            let tls = dir.join("contexts/tls").join(&digest).join("docker");
            std::fs::create_dir_all(&tls).unwrap();
            std::fs::write(tls.join("ca.pem"), "x").unwrap();
        }
    }

    #[test]
    fn nothing_set_is_the_local_socket() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(&env_in(dir.path())).unwrap();
        assert_eq!(e.host, DEFAULT_HOST);
        assert_eq!(e.tls, None);
        assert_eq!(e.remote_host(), None);
        assert_eq!(e.host_address().unwrap().to_string(), "127.0.0.1");
    }

    #[test]
    fn docker_host_wins_over_every_context() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "remote", "tcp://10.1.2.3:2376", false);
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"remote"}"#,
        )
        .unwrap();
        let env = Env {
            docker_host: Some("tcp://127.0.0.1:2375".into()),
            docker_context: Some("remote".into()),
            ..env_in(dir.path())
        };
        let e = resolve(&env).unwrap();
        assert_eq!(e.host, "tcp://127.0.0.1:2375");
        assert_eq!(e.source, "DOCKER_HOST");
        assert_eq!(e.tls, None);
    }

    #[test]
    fn tls_verify_takes_the_files_from_the_cert_path() {
        let env = Env {
            docker_host: Some("tcp://engine.example:2376".into()),
            docker_tls_verify: Some("1".into()),
            docker_cert_path: Some("/certs".into()),
            ..Env::default()
        };
        let e = resolve(&env).unwrap();
        assert_eq!(e.tls, Some(TlsFiles::in_dir(Path::new("/certs"))));
        assert_eq!(e.remote_host().as_deref(), Some("engine.example"));
    }

    #[test]
    fn docker_context_then_current_context_name_the_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "a", "tcp://[::1]:2375", false);
        write_context(dir.path(), "b", "ssh://me@builder.example:22", true);
        std::fs::write(dir.path().join("config.json"), r#"{"currentContext":"b"}"#).unwrap();
        let from_current = resolve(&env_in(dir.path())).unwrap();
        assert_eq!(from_current.host, "ssh://me@builder.example:22");
        assert_eq!(
            from_current.remote_host().as_deref(),
            Some("builder.example")
        );
        let tls = from_current.tls.expect("the context's TLS files");
        assert!(tls.ca.ends_with("docker/ca.pem"), "{tls:?}");
        let env = Env {
            docker_context: Some("a".into()),
            ..env_in(dir.path())
        };
        let from_env = resolve(&env).unwrap();
        assert_eq!(from_env.host, "tcp://[::1]:2375");
        assert_eq!(from_env.host_address().unwrap().to_string(), "::1");
        let default = Env {
            docker_context: Some("default".into()),
            ..env_in(dir.path())
        };
        assert_eq!(resolve(&default).unwrap().host, DEFAULT_HOST);
    }

    #[test]
    fn a_missing_context_or_a_bad_url_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            docker_context: Some("gone".into()),
            ..env_in(dir.path())
        };
        let err = format!("{:#}", resolve(&env).unwrap_err());
        assert!(err.contains("docker context \"gone\""), "{err}");
        let bad = Endpoint {
            host: "ftp://x".into(),
            source: "DOCKER_HOST".into(),
            tls: None,
        };
        let err = format!("{:#}", bad.client().unwrap_err());
        assert!(
            err.contains("ftp://x") && err.contains("DOCKER_HOST"),
            "{err}"
        );
        let missing = Endpoint {
            host: "tcp://127.0.0.1:1".into(),
            source: "DOCKER_HOST".into(),
            tls: Some(TlsFiles::in_dir(dir.path())),
        };
        let err = format!("{:#}", missing.client().unwrap_err());
        assert!(err.contains("ca.pem"), "{err}");
    }

    #[test]
    fn a_broken_config_file_is_an_error_not_the_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let err = format!("{:#}", resolve(&env_in(dir.path())).unwrap_err());
        assert!(err.contains("config.json"), "{err}");
    }
}

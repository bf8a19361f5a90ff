//! Docker's embedded resolver, reimplemented: 127.0.0.11 at random UDP and TCP ports inside a
//! network namespace, Docker's `DOCKER_OUTPUT`/`DOCKER_POSTROUTING` NAT rules, container names
//! answered locally, the rest forwarded to at most three external servers.

pub mod cli;
pub mod ext_servers;
pub mod forward;
pub mod names;
pub mod netns;
pub mod resolver;
pub mod rules;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use forward::{FORWARD_TIMEOUT, Forwarder, MAX_IN_FLIGHT};
use minikind_iptables::Commands;
use names::{NamesHandle, NamesTable};
use netns::{NetnsError, in_netns};
use resolver::ResolverHandler;
use rules::{DockerDnsRules, RulesError};

use crate::querylog::QueryLog;
use crate::transport::{self, ServerTasks};

/// Docker's resolver address inside every container on a user-defined network.
pub const DOCKER_RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// How the resolver runs.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// The address to listen on (Docker: 127.0.0.11).
    pub listen_ip: IpAddr,
    /// External servers, in order; only the first three are used.
    pub servers: Vec<SocketAddr>,
    /// Timeout per external server (Docker: 4 s).
    pub forward_timeout: Duration,
    /// Forwarded queries in flight before new ones are refused (Docker: 1024).
    pub max_in_flight: usize,
    /// Docker's ndots guard (set when the container configured `ndots` itself).
    pub ndots_guard: bool,
    /// The network namespace to listen in (`None`: the current one).
    pub netns: Option<PathBuf>,
    pub log: QueryLog,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            listen_ip: IpAddr::V4(DOCKER_RESOLVER_IP),
            servers: Vec::new(),
            forward_timeout: FORWARD_TIMEOUT,
            max_in_flight: MAX_IN_FLIGHT,
            ndots_guard: false,
            netns: None,
            log: QueryLog::Stdout,
        }
    }
}

/// Why the resolver could not start or install its rules.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("binding the resolver's {proto} socket on {ip}: {source}")]
    Bind {
        proto: &'static str,
        ip: IpAddr,
        source: std::io::Error,
    },
    #[error("Docker's NAT rules are IPv4 only; the resolver listens on {0}")]
    NotIpv4(IpAddr),
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// A running embedded resolver; dropping it stops serving.
pub struct EmbeddedResolver {
    names: NamesHandle,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    netns: Option<PathBuf>,
    servers: Vec<SocketAddr>,
    tasks: ServerTasks,
}

impl EmbeddedResolver {
    /// Binds the two random ports (inside `config.netns` when given) and starts serving.
    /// Must be called inside a tokio runtime.
    pub async fn start(config: EmbeddedConfig, table: &NamesTable) -> Result<Self, EmbeddedError> {
        let ip = config.listen_ip;
        let (udp, tcp) = in_netns(config.netns.as_deref(), move || bind(ip))??;
        let udp_addr = udp.local_addr().map_err(|source| EmbeddedError::Bind {
            proto: "udp",
            ip,
            source,
        })?;
        let tcp_addr = tcp.local_addr().map_err(|source| EmbeddedError::Bind {
            proto: "tcp",
            ip,
            source,
        })?;
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(|source| EmbeddedError::Bind {
            proto: "udp",
            ip,
            source,
        })?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|source| EmbeddedError::Bind {
            proto: "tcp",
            ip,
            source,
        })?;
        let names = NamesHandle::new(table);
        let forwarder = Forwarder::new(
            &config.servers,
            config.forward_timeout,
            config.max_in_flight,
        );
        let servers = forwarder.servers().to_vec();
        let handler = ResolverHandler {
            names: names.clone(),
            forwarder,
            ndots_guard: config.ndots_guard,
        };
        let tasks = transport::spawn(Arc::new(handler), udp, tcp, config.log);
        Ok(Self {
            names,
            udp_addr,
            tcp_addr,
            netns: config.netns,
            servers,
            tasks,
        })
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// The external servers in use (at most three).
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The names table; `replace` on it takes effect for the next query.
    pub fn names(&self) -> NamesHandle {
        self.names.clone()
    }

    /// Docker's NAT rules for this instance's ports.
    pub fn rules(&self) -> Result<DockerDnsRules, EmbeddedError> {
        match self.udp_addr.ip() {
            IpAddr::V4(resolver_ip) => Ok(DockerDnsRules {
                resolver_ip,
                udp_port: self.udp_addr.port(),
                tcp_port: self.tcp_addr.port(),
            }),
            other => Err(EmbeddedError::NotIpv4(other)),
        }
    }

    /// Installs the rules in the resolver's namespace (flushing and rebuilding Docker's chains,
    /// which also replaces the rules of Docker's own resolver). Blocking: runs iptables.
    pub fn apply_rules(&self, tools: &Commands) -> Result<DockerDnsRules, EmbeddedError> {
        let rules = self.rules()?;
        rules.apply(tools, self.netns.as_deref())?;
        Ok(rules)
    }

    /// Serves until a server loop fails.
    pub async fn wait(&mut self) {
        self.tasks.wait().await;
    }

    /// Stops serving.
    pub fn shutdown(self) {
        self.tasks.shutdown();
    }
}

/// Binds UDP and TCP at two independent random ports, as Docker does.
fn bind(ip: IpAddr) -> Result<(UdpSocket, TcpListener), EmbeddedError> {
    let udp = UdpSocket::bind((ip, 0)).map_err(|source| EmbeddedError::Bind {
        proto: "udp",
        ip,
        source,
    })?;
    let tcp = TcpListener::bind((ip, 0)).map_err(|source| EmbeddedError::Bind {
        proto: "tcp",
        ip,
        source,
    })?;
    for result in [udp.set_nonblocking(true), tcp.set_nonblocking(true)] {
        result.map_err(|source| EmbeddedError::Bind {
            proto: "udp/tcp",
            ip,
            source,
        })?;
    }
    Ok((udp, tcp))
}

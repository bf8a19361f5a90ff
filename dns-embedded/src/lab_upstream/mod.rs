//! The hermetic lab upstream: a small authoritative DNS server (UDP and TCP) for one zone,
//! `example.test` by default, that a `<cluster>-upstream` container runs as
//! `minikind lab-upstream`. It stands in for the host's DNS so no lab query leaves the machine.

mod answer;
mod zone;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use hickory_proto::rr::Name;
use minikind_dns_log::Proto;
use tokio::net::{TcpListener, UdpSocket};

pub use answer::answer;
pub use zone::{BIG_RECORDS, DEFAULT_ZONE, Zone, ZoneError, default_zone_text};

use crate::querylog::QueryLog;
use crate::transport::{self, Handler, Request, ServerTasks};
use crate::wire::{Names, encode_within, reply_limit};

struct ZoneHandler {
    zone: Zone,
}

impl Handler for ZoneHandler {
    async fn handle(&self, request: &Request) -> Option<Vec<u8>> {
        let mut reply = answer(&self.zone, &request.message);
        let limit = reply_limit(&request.message, request.proto);
        match encode_within(
            &mut reply,
            limit,
            request.proto == Proto::Udp,
            Names::Compressed,
        ) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::error!("lab upstream: {e}");
                None
            }
        }
    }
}

/// A running lab upstream; dropping it stops the server.
pub struct LabUpstream {
    addr: SocketAddr,
    tasks: ServerTasks,
}

impl LabUpstream {
    /// The address it serves on (UDP and TCP share the port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until a server loop fails.
    pub async fn wait(mut self) {
        self.tasks.wait().await;
    }
}

/// Starts serving `zone` on `listen` over UDP and TCP. Port 0 picks one free port for both.
pub async fn start(listen: SocketAddr, zone: Zone, log: QueryLog) -> anyhow::Result<LabUpstream> {
    let (udp, tcp) = bind_same_port(listen).await?;
    let addr = udp.local_addr()?;
    let tasks = transport::spawn(Arc::new(ZoneHandler { zone }), udp, tcp, log);
    Ok(LabUpstream { addr, tasks })
}

/// Serves `zone` on `listen` until the process ends, logging queries to stdout.
pub async fn serve(listen: SocketAddr, zone: Zone) -> anyhow::Result<()> {
    let origin = zone.origin().to_ascii();
    let server = start(listen, zone, QueryLog::Stdout).await?;
    println!(
        "[INFO] lab-upstream: serving zone {origin} on {} (udp, tcp)",
        server.addr()
    );
    server.wait().await;
    anyhow::bail!("lab upstream on {listen} stopped serving")
}

/// Binds UDP and TCP on the same port; with port 0 the UDP port is picked first and TCP tries
/// to follow it (a few attempts, in case another program holds that TCP port).
async fn bind_same_port(listen: SocketAddr) -> anyhow::Result<(UdpSocket, TcpListener)> {
    let mut last_err = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding UDP {listen}"))?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e).with_context(|| format!("binding TCP {addr}")),
        }
    }
    Err(last_err.map_or_else(
        || anyhow::anyhow!("no free port for both UDP and TCP on {listen}"),
        |e| anyhow::Error::new(e).context(format!("binding TCP next to UDP on {listen}")),
    ))
}

#[derive(Parser, Debug)]
#[command(
    name = "lab-upstream",
    about = "Serve a hermetic authoritative zone (default example.test) over UDP and TCP"
)]
struct Args {
    /// Address and port to serve on.
    #[arg(long, default_value = "0.0.0.0:53")]
    listen: SocketAddr,
    /// RFC 1035 master file to serve instead of the built-in example.test zone.
    #[arg(long)]
    zone: Option<PathBuf>,
    /// Origin for a zone file without `$ORIGIN` (relative names are made absolute with it).
    #[arg(long)]
    origin: Option<String>,
    /// An extra record in master-file form, appended to the zone (repeatable), e.g.
    /// `--record 'api 300 IN A 192.0.2.80'`; relative names are under the zone's origin.
    #[arg(long = "record", value_name = "RECORD")]
    records: Vec<String>,
    /// Print the zone's records and exit.
    #[arg(long)]
    print_zone: bool,
    /// Once serving, write the bound address here (useful with port 0).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

/// `minikind lab-upstream [--listen ADDR] [--zone FILE]`; returns the exit code.
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = run(args);
    QueryLog::Stdout.flush();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lab-upstream: {e:#}");
            1
        }
    }
}

/// The zone the command serves: the file (or the built-in zone) with `extra` lines appended.
fn build_zone(file: Option<&Path>, origin: Option<Name>, extra: &[String]) -> anyhow::Result<Zone> {
    if extra.is_empty() {
        return Ok(match file {
            Some(path) => Zone::load_with_origin(path, origin)?,
            None => Zone::default_zone(),
        });
    }
    let (mut text, what) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("reading zone file {}", path.display()))?,
            format!("{} with --record lines", path.display()),
        ),
        None => (
            default_zone_text(),
            "built-in example.test with --record lines".to_string(),
        ),
    };
    for line in extra {
        if line.contains('\n') || line.starts_with(char::is_whitespace) {
            anyhow::bail!("--record {line:?}: one record per flag, starting with its name");
        }
        text.push('\n');
        text.push_str(line);
    }
    text.push('\n');
    Ok(Zone::from_text(&text, &what, file, origin)?)
}

fn run(args: Args) -> anyhow::Result<()> {
    let origin = args
        .origin
        .as_deref()
        .map(|o| {
            Name::from_ascii(o).with_context(|| format!("--origin {o:?} is not a domain name"))
        })
        .transpose()?;
    let zone = build_zone(args.zone.as_deref(), origin, &args.records)?;
    if args.print_zone {
        let mut lines: Vec<String> = zone.all_records().map(ToString::to_string).collect();
        lines.sort();
        for line in lines {
            println!("{line}");
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let origin = zone.origin().to_ascii();
        let server = start(args.listen, zone, QueryLog::Stdout).await?;
        println!(
            "[INFO] lab-upstream: serving zone {origin} on {} (udp, tcp)",
            server.addr()
        );
        if let Some(path) = &args.ready_file {
            std::fs::write(path, format!("{}\n", server.addr()))
                .with_context(|| format!("writing --ready-file {}", path.display()))?;
        }
        tokio::select! {
            _ = server.wait() => anyhow::bail!("lab upstream on {} stopped serving", args.listen),
            _ = crate::signal::shutdown_signal() => {
                println!("[INFO] lab-upstream: shutting down");
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    #[test]
    fn extra_records_join_the_zone() {
        let zone = build_zone(
            None,
            None,
            &[
                "api 120 IN A 192.0.2.80".into(),
                "api.example.test. IN AAAA 2001:db8::80".into(),
            ],
        )
        .unwrap();
        let api = zone
            .records(&Name::from_ascii("api.example.test.").unwrap())
            .unwrap();
        assert_eq!(api.len(), 2);
        assert!(
            api.iter()
                .any(|r| r.record_type() == RecordType::A && r.ttl == 120)
        );
        assert!(
            zone.records(&Name::from_ascii("www.example.test.").unwrap())
                .is_some()
        );

        let err = build_zone(None, None, &["  indented IN A 192.0.2.1".into()]).unwrap_err();
        assert!(err.to_string().contains("indented"), "{err}");
        let err = build_zone(None, None, &["bad IN A 999.0.0.1".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("--record"), "{err:#}");
    }
}

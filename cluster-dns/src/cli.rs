//! CoreDNS's command line: `-conf FILE`, `-dns.port N`, `-version`, `-plugins`, `-quiet`
//! (single or double dash, `-flag value` or `-flag=value`, as Go's flag package accepts).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::run::{Instance, Options};

#[derive(Debug, PartialEq, Eq)]
pub struct Flags {
    pub conf: PathBuf,
    pub dns_port: u16,
    pub version: bool,
    pub plugins: bool,
    pub quiet: bool,
    pub pidfile: Option<PathBuf>,
}

pub const USAGE: &str = "Usage of cluster-dns:
  -conf string
        Corefile to load (default \"Corefile\")
  -dns.port string
        Default port (default \"53\")
  -pidfile string
        Path to write pid file
  -plugins
        List installed plugins
  -quiet
        Quiet mode (no initialization output)
  -version
        Show version";

pub fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags {
        conf: PathBuf::from("Corefile"),
        dns_port: 53,
        version: false,
        plugins: false,
        quiet: false,
        pidfile: None,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(format!("unexpected argument '{a}'"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let value = |i: &mut usize| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            *i += 1;
            args.get(*i)
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: -{name}"))
        };
        match name {
            "conf" => f.conf = PathBuf::from(value(&mut i)?),
            "dns.port" => {
                let v = value(&mut i)?;
                f.dns_port = v
                    .parse()
                    .map_err(|_| format!("invalid value \"{v}\" for flag -dns.port"))?;
            }
            "pidfile" => f.pidfile = Some(PathBuf::from(value(&mut i)?)),
            "version" => f.version = true,
            "plugins" => f.plugins = true,
            "quiet" => f.quiet = true,
            "h" | "help" => return Err(String::new()),
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
        i += 1;
    }
    Ok(f)
}

/// Entry point of `cluster-dns` (and `minikind cluster-dns`).
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.first().map(String::as_str) == Some("node-cache") {
        return node_cache_main(&args[1..]);
    }
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return 2;
        }
    };
    if flags.version {
        println!("cluster-dns-{}", env!("CARGO_PKG_VERSION"));
        println!("{}/{}, rust", std::env::consts::OS, std::env::consts::ARCH);
        return 0;
    }
    if flags.plugins {
        println!("Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:");
        // CoreDNS lists them sorted by name.
        let mut names: Vec<&str> = crate::plugins::implemented().collect();
        names.sort_unstable();
        for p in names {
            println!("  dns.{p}");
        }
        return 0;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cluster-dns: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(serve(flags))
}

async fn serve(flags: Flags) -> i32 {
    if let Some(p) = &flags.pidfile
        && let Err(e) = std::fs::write(p, format!("{}\n", std::process::id()))
    {
        eprintln!("cluster-dns: writing pid file {}: {e}", p.display());
        return 1;
    }
    let opts = Options {
        dns_port: flags.dns_port,
        banner: !flags.quiet,
        ..Default::default()
    };
    let inst = match Instance::start_file(flags.conf.clone(), opts).await {
        Ok(i) => i,
        Err(e) => {
            crate::util::log("FATAL", "", format!("{e:#}"));
            return 1;
        }
    };
    wait_for_signals(inst.clone()).await;
    inst.shutdown().await;
    0
}

/// `cluster-dns node-cache FLAGS`: NodeLocal DNSCache's node-cache (`crate::nodecache`).
fn node_cache_main(args: &[String]) -> i32 {
    let flags = match crate::nodecache::flags::parse(args) {
        Ok(f) => f,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{}", crate::nodecache::flags::USAGE);
            return 2;
        }
    };
    // k8s-dns-node-cache's image calls iptables through iptables-wrapper, which on first use
    // picks legacy or nft from the rules the node already holds and links the plain names to
    // it. The tools image these pods run carries both flavours and no plain names, so the same
    // choice (KIND's rule, `minikind_iptables::select`) is made here; on a node, where the
    // names are linked at boot, nothing changes.
    let cmds = minikind_iptables::Commands::default();
    if flags.setup_iptables && !cmds.save.exists() {
        match minikind_iptables::select(std::path::Path::new("/")) {
            Ok(sel) => println!("[INFO] {sel}"),
            Err(e) => {
                eprintln!("cluster-dns: choosing the iptables mode: {e:#}");
                return 1;
            }
        }
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::nodecache::run(flags, cmds, wait_for_signals)),
        Err(e) => {
            eprintln!("cluster-dns: cannot start the runtime: {e}");
            1
        }
    }
}

/// Waits for SIGTERM/SIGINT; SIGUSR1 triggers an immediate reload check, as in CoreDNS.
async fn wait_for_signals(inst: Arc<Instance>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = usr1.recv() => inst.check_reload().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn go_style_flags() {
        let f = parse_flags(&s(&["-conf", "/etc/coredns/Corefile", "-dns.port=1053"])).unwrap();
        assert_eq!(f.conf, PathBuf::from("/etc/coredns/Corefile"));
        assert_eq!(f.dns_port, 1053);
        assert!(parse_flags(&s(&["--version"])).unwrap().version);
        assert!(
            parse_flags(&s(&["-dns.port", "x"]))
                .unwrap_err()
                .contains("dns.port")
        );
        assert!(
            parse_flags(&s(&["-bogus"]))
                .unwrap_err()
                .contains("not defined")
        );
        assert!(
            parse_flags(&s(&["-conf"]))
                .unwrap_err()
                .contains("needs an argument")
        );
    }
}

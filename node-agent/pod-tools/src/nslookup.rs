//! `nslookup`: busybox's nslookup output (the one pods in the seeds run).
//!
//! `nslookup [-type=TYPE] [-port=N] [-timeout=N] [-retry=N] [-debug] NAME [SERVER]`. Without a
//! type it asks A and AAAA; an IP address as NAME asks its PTR. The search list and `ndots` of
//! resolv.conf apply as in a stub resolver (glibc's `res_nsearch` walk: on to the next name
//! after NXDOMAIN, NODATA or SERVFAIL). Exit 0 when something was found, else 1.
//!
//! `-debug` (the option busybox and BIND name so; `-nodebug` turns it off) prints, before the
//! answers, one line per exchange of that walk: the name tried, the server that answered
//! (`ip#port`), the client port and id a server's query log shows, the code and the
//! milliseconds ([`super::attempt`] has the format; `minikind dns trace` reads it back).

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::rr::{RData, Record, RecordType};

use super::client::{self, Lookup, Outcome, QueryEvent, ResolverConfig};
use super::present::rdata_text;
use super::{ToolEnv, string_args};
use minikind_resolv_conf::ResolvConf;

const USAGE: &str = "Usage: nslookup [-type=QUERY_TYPE] [-port=N] [-timeout=SECS] [-retry=N] [-debug] HOST [DNS_SERVER]\n\
     -debug: print each search-list attempt (name, server ip#port, client ip#port and id, code, ms)";

#[derive(Debug)]
struct Args {
    name: String,
    server: Option<IpAddr>,
    rtype: Option<RecordType>,
    port: Option<u16>,
    timeout: Option<u64>,
    retry: Option<u32>,
    debug: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args {
        name: String::new(),
        server: None,
        rtype: None,
        port: None,
        timeout: None,
        retry: None,
        debug: false,
    };
    let mut positional = Vec::new();
    for arg in args {
        if let Some(option) = arg.strip_prefix('-').filter(|o| !o.is_empty()) {
            if option == "debug" || option == "nodebug" {
                parsed.debug = option == "debug";
                continue;
            }
            let (key, value) = option
                .split_once('=')
                .ok_or_else(|| format!("nslookup: invalid option -- '{option}'"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("nslookup: invalid number '{value}' for -{key}"))
            };
            match key {
                "type" | "query" | "q" | "t" => {
                    let t = RecordType::from_str(&value.to_ascii_uppercase())
                        .ok()
                        .filter(|t| !matches!(t, RecordType::Unknown(_)))
                        .ok_or_else(|| format!("nslookup: invalid query type '{value}'"))?;
                    parsed.rtype = Some(t);
                }
                "port" => {
                    parsed.port = Some(
                        u16::try_from(number()?)
                            .map_err(|_| format!("nslookup: invalid port '{value}'"))?,
                    )
                }
                "timeout" => parsed.timeout = Some(number()?.max(1)),
                "retry" => parsed.retry = Some(u32::try_from(number()?.min(100)).unwrap_or(100)),
                _ => return Err(format!("nslookup: invalid option -- '{key}'")),
            }
        } else {
            positional.push(arg.clone());
        }
    }
    match positional.as_slice() {
        [name] => parsed.name = name.clone(),
        [name, server] => {
            parsed.name = name.clone();
            parsed.server = Some(
                server
                    .parse()
                    .map_err(|_| format!("nslookup: server '{server}' is not an IP address"))?,
            );
        }
        _ => return Err(USAGE.to_string()),
    }
    Ok(parsed)
}

/// Runs nslookup with `args` (no program name), printing to `out`.
pub fn run(args: &[String], env: &ToolEnv, out: &mut dyn Write) -> i32 {
    let parsed = match parse_args(args) {
        Ok(p) => p,
        Err(message) => {
            let _ = writeln!(out, "{message}");
            return 1;
        }
    };
    let conf = match ResolvConf::read(&env.resolv_conf) {
        Ok(conf) => conf,
        Err(_) if parsed.server.is_some() => ResolvConf::default(),
        Err(e) => {
            let _ = writeln!(out, "nslookup: {e:#}");
            return 1;
        }
    };
    let port = parsed.port.unwrap_or(env.dns_port);
    let mut config = ResolverConfig::from_resolv_conf(&conf, port);
    if let Some(server) = parsed.server {
        config.servers = vec![SocketAddr::new(server, port)];
    }
    if let Some(t) = parsed.timeout {
        config.timeout = Duration::from_secs(t);
    }
    if let Some(r) = parsed.retry {
        config.attempts = r + 1;
    }
    let Some(first) = config.servers.first().copied() else {
        let _ = writeln!(
            out,
            "nslookup: no nameserver in {}",
            env.resolv_conf.display()
        );
        return 1;
    };
    let _ = writeln!(out, "Server:\t\t{}", first.ip());
    let _ = writeln!(out, "Address:\t{first}\n");

    // An address is looked up by its reverse name, with no search list.
    let (name, types) = match parsed.name.parse::<IpAddr>() {
        Ok(ip) => (client::reverse_name(ip), vec![RecordType::PTR]),
        Err(_) => (
            parsed.name.clone(),
            parsed
                .rtype
                .map_or(vec![RecordType::A, RecordType::AAAA], |t| vec![t]),
        ),
    };

    let mut found = false;
    let mut failures = Vec::new();
    let mut attempts = 0;
    for rtype in types {
        let on_event = |event: QueryEvent<'_>| {
            if let QueryEvent::Attempt(attempt) = event
                && parsed.debug
            {
                attempts += 1;
                let _ = writeln!(out, "{}", attempt.line(attempts));
            }
        };
        let lookup = match client::lookup_with(&config, &name, rtype, on_event) {
            Ok(lookup) => lookup,
            Err(message) => {
                let _ = writeln!(out, "nslookup: {message}");
                return 1;
            }
        };
        match print_lookup(out, &lookup) {
            Ok(()) => found = true,
            Err(failure) => failures.push(failure),
        }
    }
    if found {
        return 0;
    }
    // Nothing at all: say why once, the most telling reason first.
    failures.sort_by_key(|f| match f {
        Failure::Unreachable => 0,
        Failure::Rcode(_) => 1,
        Failure::NoAnswer => 2,
    });
    match failures.first() {
        Some(Failure::Unreachable) => {
            let _ = writeln!(
                out,
                ";; connection timed out; no servers could be reached\n"
            );
        }
        Some(Failure::Rcode(code)) => {
            let _ = writeln!(out, "** server can't find {}: {code}\n", parsed.name);
        }
        Some(Failure::NoAnswer) | None => {
            let _ = writeln!(out, "*** Can't find {}: No answer\n", parsed.name);
        }
    }
    1
}

enum Failure {
    Unreachable,
    Rcode(String),
    NoAnswer,
}

/// Prints the answer records of a successful lookup in busybox's forms.
fn print_lookup(out: &mut dyn Write, lookup: &Lookup) -> Result<(), Failure> {
    match &lookup.outcome {
        Outcome::Answer(reply) => {
            // busybox marks answers that did not come from the zone's own server.
            if !reply.response.metadata.authoritative {
                let _ = writeln!(out, "Non-authoritative answer:");
            }
            for record in &reply.response.answers {
                print_record(out, record);
            }
            let _ = writeln!(out);
            Ok(())
        }
        Outcome::NxDomain => Err(Failure::Rcode("NXDOMAIN".into())),
        Outcome::NoData(_) => Err(Failure::NoAnswer),
        Outcome::ServerFailure(reply) => Err(Failure::Rcode(super::present::rcode_name(
            reply.response.metadata.response_code,
        ))),
        Outcome::Unreachable(_) => Err(Failure::Unreachable),
    }
}

fn print_record(out: &mut dyn Write, record: &Record) {
    let owner = record.name.to_string();
    let owner = owner.trim_end_matches('.');
    let _ = match &record.data {
        RData::A(a) => writeln!(out, "Name:\t{owner}\nAddress: {a}"),
        RData::AAAA(aaaa) => writeln!(out, "Name:\t{owner}\nAddress: {aaaa}"),
        RData::CNAME(target) => writeln!(
            out,
            "{owner}\tcanonical name = {}",
            target.0.to_string().trim_end_matches('.')
        ),
        RData::PTR(target) => writeln!(
            out,
            "{owner}\tname = {}",
            target.0.to_string().trim_end_matches('.')
        ),
        RData::NS(target) => writeln!(
            out,
            "{owner}\tnameserver = {}",
            target.0.to_string().trim_end_matches('.')
        ),
        RData::SRV(srv) => writeln!(
            out,
            "{owner}\tservice = {} {} {} {}",
            srv.priority, srv.weight, srv.port, srv.target
        ),
        RData::MX(mx) => writeln!(
            out,
            "{owner}\tmail exchanger = {} {}",
            mx.preference, mx.exchange
        ),
        RData::TXT(_) => writeln!(out, "{owner}\ttext = {}", rdata_text(&record.data)),
        other => writeln!(
            out,
            "{owner}\t{} = {}",
            record.record_type(),
            rdata_text(other)
        ),
    };
}

/// Entry point for `minikind nslookup …` (args[0] is the program name).
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args = match string_args(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("nslookup: {message}");
            return 1;
        }
    };
    let mut stdout = std::io::stdout().lock();
    run(&args, &ToolEnv::system(), &mut stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_busybox_arguments() {
        let p = parse_args(&args(&["-type=srv", "_http._tcp.web", "10.96.0.10"])).unwrap();
        assert_eq!(p.rtype, Some(RecordType::SRV));
        assert_eq!(p.server, Some("10.96.0.10".parse().unwrap()));
        assert!(parse_args(&args(&[])).unwrap_err().starts_with("Usage"));
        assert!(
            parse_args(&args(&["-type=bogus", "x"]))
                .unwrap_err()
                .contains("bogus")
        );
        assert!(
            parse_args(&args(&["x", "dns.example"]))
                .unwrap_err()
                .contains("not an IP")
        );
        assert!(
            parse_args(&args(&["-verbose", "x"]))
                .unwrap_err()
                .contains("invalid option")
        );
        assert!(parse_args(&args(&["-debug", "x"])).unwrap().debug);
        assert!(
            !parse_args(&args(&["-debug", "-nodebug", "x"]))
                .unwrap()
                .debug
        );
    }
}

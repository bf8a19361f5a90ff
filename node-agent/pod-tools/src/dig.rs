//! `dig`: one DNS query, printed the way BIND's dig prints it.
//!
//! `dig [@server] [-p port] [-t type] [-x addr] name [type] [+short] [+search|+nosearch]
//! [+showsearch] [+tcp|+notcp|+vc|+novc] [+noall] [+answer] [+question] [+authority]
//! [+additional] [+comments] [+cmd] [+stats] [+edns|+noedns] [+time=N] [+tries=N] [+retry=N]
//! [+ndots=N]`.
//! Exit codes as dig's: 0 a reply (whatever its rcode), 1 usage error, 9 no reply,
//! 10 a problem before querying (bad server address, unreadable resolv.conf).
//!
//! `+showsearch` (BIND's name; it implies `+search`) prints every exchange of the search-list
//! walk as it happens — the name tried, the server that answered (`ip#port`), the client port
//! and id a server's query log shows, the code and the milliseconds — so `ndots` can be watched
//! at work ([`super::attempt`] has the line format). BIND's dig prints each intermediate reply
//! in full instead; one line each keeps a five-step walk readable.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::client::{self, Exchange, QueryEvent, ResolverConfig};
use super::present::{dig_flags, dig_question_line, dig_record_line, rcode_name, rdata_text};
use super::search::candidate_names;
use super::transport::Transport;
use super::{ToolEnv, string_args};
use minikind_resolv_conf::ResolvConf;

const USAGE: &str = "Usage: dig [@server] [-p port] [-t type] [-x addr] name [type] [+short] [+search] [+showsearch] [+tcp|+notcp] [+noall] [+answer] [+time=N] [+tries=N] [+ndots=N]";

/// Which parts of the output are printed.
#[derive(Debug, Clone, Copy)]
struct Display {
    cmd: bool,
    comments: bool,
    question: bool,
    answer: bool,
    authority: bool,
    additional: bool,
    stats: bool,
    short: bool,
}

impl Default for Display {
    fn default() -> Self {
        Self {
            cmd: true,
            comments: true,
            question: true,
            answer: true,
            authority: true,
            additional: true,
            stats: true,
            short: false,
        }
    }
}

#[derive(Debug, Clone)]
struct DigArgs {
    server: Option<IpAddr>,
    port: Option<u16>,
    name: Option<String>,
    rtype: Option<RecordType>,
    search: bool,
    /// Print every exchange of the search-list walk.
    showsearch: bool,
    tcp: bool,
    edns: bool,
    time: Option<u64>,
    tries: Option<u32>,
    ndots: Option<u8>,
    display: Display,
}

/// Parses dig's command line; the error is the message to print.
fn parse_args(args: &[String]) -> Result<DigArgs, String> {
    let mut parsed = DigArgs {
        server: None,
        port: None,
        name: None,
        rtype: None,
        search: false,
        showsearch: false,
        tcp: false,
        edns: true,
        time: None,
        tries: None,
        ndots: None,
        display: Display::default(),
    };
    let mut positional = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value_of = |flag: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("option {flag} needs a value"))
        };
        if let Some(server) = arg.strip_prefix('@') {
            let ip = server
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("couldn't get address for '{server}': not an IP address"))?;
            parsed.server = Some(ip);
        } else if arg == "-p" {
            let v = value_of("-p")?;
            parsed.port = Some(
                v.parse()
                    .map_err(|_| format!("invalid port number '{v}'"))?,
            );
        } else if arg == "-t" {
            let v = value_of("-t")?;
            parsed.rtype = Some(parse_type(&v).ok_or_else(|| format!("invalid type: {v}"))?);
        } else if arg == "-x" {
            let v = value_of("-x")?;
            let ip: IpAddr = v
                .parse()
                .map_err(|_| format!("invalid IP address for -x: '{v}'"))?;
            parsed.name = Some(client::reverse_name(ip));
            parsed.rtype.get_or_insert(RecordType::PTR);
        } else if arg == "-c" {
            let v = value_of("-c")?;
            if !v.eq_ignore_ascii_case("IN") {
                return Err(format!("class {v} is not supported (only IN)"));
            }
        } else if arg == "-4" || arg == "-6" {
            // The address family follows from the server address.
        } else if let Some(option) = arg.strip_prefix('+') {
            plus_option(&mut parsed, option)?;
        } else if arg.starts_with('-') && arg.len() > 1 {
            return Err(format!("Invalid option: {arg}"));
        } else {
            positional.push(arg.clone());
        }
    }
    // Like dig, a word that is a record type is the type once a name is there (or when
    // another word follows); `IN` is the class and is skipped.
    let count = positional.len();
    for (i, word) in positional.into_iter().enumerate() {
        if word.eq_ignore_ascii_case("IN") {
            continue;
        }
        let is_type = parse_type(&word).is_some() && (parsed.name.is_some() || i + 1 < count);
        if is_type && parsed.rtype.is_none() {
            parsed.rtype = parse_type(&word);
        } else if parsed.name.is_none() {
            parsed.name = Some(word);
        } else {
            return Err(format!("unexpected argument '{word}'"));
        }
    }
    Ok(parsed)
}

fn parse_type(word: &str) -> Option<RecordType> {
    super::present::parse_record_type(word)
}

fn plus_option(parsed: &mut DigArgs, option: &str) -> Result<(), String> {
    let (negated, body) = match option.strip_prefix("no") {
        Some(rest) => (true, rest),
        None => (false, option),
    };
    let (key, value) = match body.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (body, None),
    };
    let number = |v: Option<&str>| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("Invalid option: +{option} (a number is needed)"))
    };
    let on = !negated;
    let d = &mut parsed.display;
    match key {
        "short" => d.short = on,
        "search" => parsed.search = on,
        "showsearch" => parsed.showsearch = on,
        "tcp" | "vc" => parsed.tcp = on,
        "edns" => parsed.edns = on,
        "all" => {
            *d = Display {
                cmd: on,
                comments: on,
                question: on,
                answer: on,
                authority: on,
                additional: on,
                stats: on,
                short: d.short,
            };
        }
        "answer" => d.answer = on,
        "question" => d.question = on,
        "authority" => d.authority = on,
        "additional" => d.additional = on,
        "comments" => d.comments = on,
        "cmd" => d.cmd = on,
        "stats" => d.stats = on,
        "time" if !negated => parsed.time = Some(number(value)?.max(1)),
        "tries" if !negated => parsed.tries = Some(number(value)?.clamp(1, 100) as u32),
        "retry" if !negated => parsed.tries = Some(number(value)?.clamp(0, 99) as u32 + 1),
        "ndots" if !negated => parsed.ndots = Some(number(value)?.min(255) as u8),
        _ => return Err(format!("Invalid option: +{option}")),
    }
    Ok(())
}

/// Runs dig with `args` (no program name), printing to `out`.
pub fn run(args: &[String], env: &ToolEnv, out: &mut dyn Write) -> i32 {
    match run_inner(args, env, out) {
        Ok(code) => code,
        Err((code, message)) => {
            let _ = writeln!(out, "{message}");
            if code == 1 {
                let _ = writeln!(out, "{USAGE}");
            }
            code
        }
    }
}

fn run_inner(args: &[String], env: &ToolEnv, out: &mut dyn Write) -> Result<i32, (i32, String)> {
    let parsed = parse_args(args).map_err(|m| (1, m))?;
    let conf = match ResolvConf::read(&env.resolv_conf) {
        Ok(conf) => conf,
        // dig works without a resolv.conf when a server is given.
        Err(_) if parsed.server.is_some() => ResolvConf::default(),
        Err(e) => return Err((10, format!(";; {e:#}"))),
    };
    let port = parsed.port.unwrap_or(env.dns_port);
    let mut config = ResolverConfig::from_resolv_conf(&conf, port);
    if let Some(ip) = parsed.server {
        config.servers = vec![SocketAddr::new(ip, port)];
    } else if config.servers.is_empty() {
        // dig's own fallback when resolv.conf names no server.
        config.servers = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)];
    }
    config.tcp = parsed.tcp;
    config.edns = parsed.edns;
    config.timeout = Duration::from_secs(parsed.time.unwrap_or_else(|| {
        u64::from(
            conf.numeric_option("timeout")
                .map_or(5, |_| conf.timeout_secs()),
        )
    }));
    config.attempts = parsed.tries.unwrap_or_else(|| {
        conf.numeric_option("attempts")
            .map_or(3, |_| conf.attempts())
    });
    if let Some(ndots) = parsed.ndots {
        config.ndots = ndots;
    }

    let (name, rtype) = match &parsed.name {
        Some(name) => (name.clone(), parsed.rtype.unwrap_or(RecordType::A)),
        // No name: dig asks the root's NS.
        None => (".".to_string(), parsed.rtype.unwrap_or(RecordType::NS)),
    };
    let candidates = if parsed.search || parsed.showsearch {
        candidate_names(&name, &config.search, config.ndots)
    } else if name.ends_with('.') {
        vec![name.clone()]
    } else {
        vec![format!("{name}.")]
    };

    let display = parsed.display;
    if display.cmd && !display.short {
        let _ = writeln!(
            out,
            "\n; <<>> DiG {} (minikind) <<>> {}",
            env!("CARGO_PKG_VERSION"),
            args.join(" ")
        );
        let _ = writeln!(out, ";; global options: +cmd");
    }
    let mut last: Option<Exchange> = None;
    let mut attempts = 0;
    for candidate in &candidates {
        let qname = client::parse_name(candidate).map_err(|m| (10, m))?;
        let query = client::build_query(qname, rtype, config.edns);
        let reply = client::query_servers(&config, &query, |event| {
            let _ = match event {
                QueryEvent::Attempt(attempt) if parsed.showsearch => {
                    attempts += 1;
                    writeln!(out, "{}", attempt.line(attempts))
                }
                QueryEvent::Attempt(_) => Ok(()),
                // The attempt line already says how the exchange failed.
                QueryEvent::Failed(..) if parsed.showsearch => Ok(()),
                QueryEvent::Failed(server, transport, e) => writeln!(
                    out,
                    ";; communications error to {}#{}: {e}{}",
                    server.ip(),
                    server.port(),
                    if transport == Transport::Tcp {
                        " (TCP)"
                    } else {
                        ""
                    }
                ),
                QueryEvent::Truncated(_) => writeln!(out, ";; Truncated, retrying in TCP mode."),
            };
        });
        match reply {
            Ok(reply) => {
                let nxdomain = reply.response.metadata.response_code == ResponseCode::NXDomain;
                last = Some(reply);
                if !nxdomain {
                    break;
                }
            }
            Err(_) => {
                let _ = writeln!(out, ";; no servers could be reached");
                return Ok(9);
            }
        }
    }
    let Some(reply) = last else {
        return Err((10, "no name to query".into()));
    };
    print_reply(out, &reply, display);
    Ok(0)
}

fn print_reply(out: &mut dyn Write, reply: &Exchange, display: Display) {
    let message = &reply.response;
    if display.short {
        for record in &message.answers {
            let _ = writeln!(out, "{}", rdata_text(&record.data));
        }
        return;
    }
    let m = &message.metadata;
    if display.comments {
        let _ = writeln!(out, ";; Got answer:");
        let _ = writeln!(
            out,
            ";; ->>HEADER<<- opcode: QUERY, status: {}, id: {}",
            rcode_name(m.response_code),
            m.id
        );
        let additional = message.additionals.len() + usize::from(message.edns.is_some());
        let _ = writeln!(
            out,
            ";; flags: {}; QUERY: {}, ANSWER: {}, AUTHORITY: {}, ADDITIONAL: {}",
            dig_flags(message),
            message.queries.len(),
            message.answers.len(),
            message.authorities.len(),
            additional
        );
        if let Some(edns) = &message.edns {
            let _ = writeln!(out, "\n;; OPT PSEUDOSECTION:");
            let flags = if edns.flags().dnssec_ok { " do" } else { "" };
            let _ = writeln!(
                out,
                "; EDNS: version: {}, flags:{flags}; udp: {}",
                edns.version(),
                edns.max_payload()
            );
        }
    }
    if display.question {
        if display.comments {
            let _ = writeln!(out, ";; QUESTION SECTION:");
        }
        for line in dig_question_line(message) {
            let _ = writeln!(out, "{line}");
        }
    }
    let sections = [
        (display.answer, "ANSWER", &message.answers),
        (display.authority, "AUTHORITY", &message.authorities),
        (display.additional, "ADDITIONAL", &message.additionals),
    ];
    for (shown, title, records) in sections {
        if !shown || records.is_empty() {
            continue;
        }
        if display.comments {
            let _ = writeln!(out, "\n;; {title} SECTION:");
        }
        for record in records.iter() {
            let _ = writeln!(out, "{}", dig_record_line(record));
        }
    }
    if display.stats {
        let _ = writeln!(out, "\n;; Query time: {} msec", reply.elapsed.as_millis());
        let _ = writeln!(
            out,
            ";; SERVER: {}#{}({}) ({})",
            reply.server.ip(),
            reply.server.port(),
            reply.server.ip(),
            reply.transport.as_str()
        );
        let _ = writeln!(out, ";; WHEN: {}", when_now());
        let _ = writeln!(out, ";; MSG SIZE  rcvd: {}", reply.size);
    }
    if display.comments || display.stats {
        let _ = writeln!(out);
    }
}

/// The current time as dig's `WHEN:` line shows it, in UTC (nodes and pods run in UTC).
fn when_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// `Sun Nov 22 01:22:42 UTC 2026` for seconds since the epoch (civil calendar from days).
pub fn format_utc(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        year
    )
}

/// Entry point for `minikind dig …` (args[0] is the program name).
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args = match string_args(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("dig: {message}");
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
    fn parses_name_type_server_and_options() {
        let p = parse_args(&args(&[
            "@127.0.0.1",
            "-p",
            "5353",
            "example.test",
            "AAAA",
            "+short",
            "+tcp",
            "+time=2",
            "+tries=1",
        ]))
        .unwrap();
        assert_eq!(p.server, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.port, Some(5353));
        assert_eq!(p.name.as_deref(), Some("example.test"));
        assert_eq!(p.rtype, Some(RecordType::AAAA));
        assert!(p.display.short && p.tcp);
        assert_eq!((p.time, p.tries), (Some(2), Some(1)));
        let p = parse_args(&args(&[
            "srv",
            "_dns._udp.kube-dns.kube-system.svc.cluster.local",
            "+noall",
            "+answer",
        ]))
        .unwrap();
        assert_eq!(p.rtype, Some(RecordType::SRV));
        assert!(p.display.answer && !p.display.cmd && !p.display.stats);
        let p = parse_args(&args(&["-x", "10.96.0.10"])).unwrap();
        assert_eq!(p.name.as_deref(), Some("10.0.96.10.in-addr.arpa."));
        assert_eq!(p.rtype, Some(RecordType::PTR));
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        assert_eq!(
            parse_args(&args(&["+frobnicate"])).unwrap_err(),
            "Invalid option: +frobnicate"
        );
        assert!(
            parse_args(&args(&["-p", "x"]))
                .unwrap_err()
                .contains("port")
        );
        assert!(
            parse_args(&args(&["@not-an-ip", "a"]))
                .unwrap_err()
                .contains("not-an-ip")
        );
        assert!(
            parse_args(&args(&["-p"]))
                .unwrap_err()
                .contains("needs a value")
        );
    }

    #[test]
    fn formats_dates_like_date() {
        assert_eq!(format_utc(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(format_utc(1_700_000_000), "Tue Nov 14 22:13:20 UTC 2023");
    }
}

//! The DNS facts minikind's servers (cluster-dns, the embedded resolver, the lab upstream) and
//! its `dns trace` share, in one place so they cannot drift apart:
//!
//! - [`QueryLine`]: the query-log line of CoreDNS's `log` plugin (its default `{common}`
//!   format), with its one writer ([`QueryLine`]'s `Display`) and its one parser
//!   ([`QueryLine::parse`]):
//!
//!   `[INFO] <client-ip>:<port> - <id> "<type> <class> <name> <proto> <size> <do> <bufsize>" <rcode> <flags> <rsize> <duration>s`
//!
//! - [`ErrorLine`]: the line of CoreDNS's `errors` plugin for a query that failed, written and
//!   read the same way: `[ERROR] plugin/errors: <rcode> <name> <type>: <error>`.
//! - the names CoreDNS prints: [`rcode_name`], [`type_name`], [`class_name`], [`Flags`], and
//!   the transport a query came in on, [`Proto`].
//!
//! Upstream: coredns plugin/log/log.go, plugin/errors/errors.go, plugin/pkg/replacer/replacer.go (the placeholders and
//! how each is written), miekg/dns msg.go (`RcodeToString`, `TypeToString`, header flags).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::RecordType;

/// The transport a query came in on (`{proto}`: `udp` or `tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }

    /// `udp` or `tcp`; None for anything else.
    pub fn parse(text: &str) -> Option<Proto> {
        match text {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rcode as CoreDNS prints it (`NOERROR`, `NXDOMAIN`, …; `RCODE<n>` for the unnamed ones).
pub fn rcode_name(rcode: u16) -> Cow<'static, str> {
    Cow::Borrowed(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        16 => "BADVERS",
        n => return Cow::Owned(format!("RCODE{n}")),
    })
}

/// The record type's mnemonic (`TYPE<n>` for one without a name).
pub fn type_name(qtype: u16) -> Cow<'static, str> {
    match RecordType::from(qtype) {
        RecordType::Unknown(n) => Cow::Owned(format!("TYPE{n}")),
        known => Cow::Borrowed(known.into()),
    }
}

/// The class mnemonic (`CLASS<n>` for the unnamed ones).
pub fn class_name(class: u16) -> Cow<'static, str> {
    Cow::Borrowed(match class {
        1 => "IN",
        3 => "CH",
        4 => "HS",
        254 => "NONE",
        255 => "ANY",
        n => return Cow::Owned(format!("CLASS{n}")),
    })
}

/// A reply's header flags, written in CoreDNS's order: `qr,aa,tc,rd,ra,z,ad,cd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub qr: bool,
    pub aa: bool,
    pub tc: bool,
    pub rd: bool,
    pub ra: bool,
    pub z: bool,
    pub ad: bool,
    pub cd: bool,
}

impl Flags {
    /// From the header's third and fourth bytes.
    pub fn from_header(hi: u8, lo: u8) -> Flags {
        Flags {
            qr: hi & 0x80 != 0,
            aa: hi & 0x04 != 0,
            tc: hi & 0x02 != 0,
            rd: hi & 0x01 != 0,
            ra: lo & 0x80 != 0,
            z: lo & 0x40 != 0,
            ad: lo & 0x20 != 0,
            cd: lo & 0x10 != 0,
        }
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = [
            (self.qr, "qr"),
            (self.aa, "aa"),
            (self.tc, "tc"),
            (self.rd, "rd"),
            (self.ra, "ra"),
            (self.z, "z"),
            (self.ad, "ad"),
            (self.cd, "cd"),
        ];
        let mut first = true;
        for (_, name) in bits.iter().filter(|(set, _)| *set) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// A duration as CoreDNS's log writes it: Go's `Duration.Seconds()` printed with
/// `strconv.FormatFloat(s, 'f', -1, 64)` and an `s` (`0.000114128s`).
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A duration as CoreDNS writes it (`0.000114128s`), or in Go's units (`114.128µs`, `2ms`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let units: [(&str, f64); 5] = [
        ("ns", 1e-9),
        ("µs", 1e-6),
        ("us", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
    ];
    for (suffix, scale) in units {
        if let Some(number) = text.strip_suffix(suffix)
            && let Ok(v) = number.parse::<f64>()
            && v.is_finite()
            && v >= 0.0
        {
            return Some(Duration::from_secs_f64(v * scale));
        }
    }
    None
}

/// `{remote}`: the client's address, an IPv6 one in brackets (coredns
/// plugin/pkg/replacer/replacer.go, `addrToRFC3986`).
pub fn remote_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// One query as a server logs it: the facts of a request/response pair in CoreDNS's default
/// `log` format. Writing it ([`fmt::Display`]) gives the whole line with its `[INFO] ` level;
/// [`QueryLine::parse`] reads such a line back.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLine {
    pub client: SocketAddr,
    pub id: u16,
    /// `{type}`: see [`type_name`].
    pub qtype: String,
    /// `{class}`: see [`class_name`].
    pub qclass: String,
    /// `{name}`: the question name as the client spelled it, with its final dot.
    pub name: String,
    pub proto: Proto,
    /// `{size}`: the query's size on the wire.
    pub size: usize,
    /// `{>do}`: the query's DNSSEC OK bit.
    pub do_bit: bool,
    /// `{>bufsize}`: the reply size the writer reports the client accepts.
    pub bufsize: u16,
    /// `{rcode}`: see [`rcode_name`]; `-` when no reply was sent.
    pub rcode: String,
    /// `{>rflags}`: see [`Flags`]; `-` when no reply was sent.
    pub flags: String,
    /// `{rsize}`: the reply's size on the wire.
    pub rsize: usize,
    /// `{duration}`: see [`seconds`].
    pub duration: Duration,
}

/// The level every query line is written at.
const LEVEL: &str = "[INFO] ";

impl QueryLine {
    /// The text of one placeholder of CoreDNS's `log` format (`remote`, `port`, `>id`, `type`,
    /// `class`, `name`, `proto`, `size`, `>do`, `>bufsize`, `rcode`, `>rflags`, `rsize`,
    /// `duration`); None for one this line does not hold.
    pub fn placeholder(&self, key: &str) -> Option<String> {
        Some(match key {
            "remote" => remote_text(self.client.ip()),
            "port" => self.client.port().to_string(),
            ">id" => self.id.to_string(),
            "type" => self.qtype.clone(),
            "class" => self.qclass.clone(),
            "name" => self.name.clone(),
            "proto" => self.proto.as_str().to_string(),
            "size" => self.size.to_string(),
            ">do" => self.do_bit.to_string(),
            ">bufsize" => self.bufsize.to_string(),
            "rcode" => self.rcode.clone(),
            ">rflags" => self.flags.clone(),
            "rsize" => self.rsize.to_string(),
            "duration" => seconds(self.duration),
            _ => return None,
        })
    }

    /// Reads one query line (trailing fields after the duration, as the `{combined}` format
    /// adds, are ignored); None for anything that is not one (start-up messages, errors,
    /// plugin output).
    pub fn parse(line: &str) -> Option<QueryLine> {
        let body = line.trim_end().strip_prefix(LEVEL)?;
        let (client, rest) = body.split_once(" - ")?;
        let client = parse_client(client)?;
        let (id, rest) = rest.split_once(" \"")?;
        let id = id.parse().ok()?;
        let (question, rest) = rest.split_once("\" ")?;
        let q: Vec<&str> = question.split(' ').collect();
        let [qtype, qclass, name, proto, size, do_bit, bufsize] = q.as_slice() else {
            return None;
        };
        let r: Vec<&str> = rest.split(' ').collect();
        let [rcode, flags, rsize, duration, ..] = r.as_slice() else {
            return None;
        };
        Some(QueryLine {
            client,
            id,
            qtype: qtype.to_string(),
            qclass: qclass.to_string(),
            name: name.to_string(),
            proto: Proto::parse(proto)?,
            size: size.parse().ok()?,
            do_bit: do_bit.parse().ok()?,
            bufsize: bufsize.parse().ok()?,
            rcode: rcode.to_string(),
            flags: flags.to_string(),
            rsize: rsize.parse().ok()?,
            duration: parse_duration(duration)?,
        })
    }
}

impl fmt::Display for QueryLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{LEVEL}{remote}:{port} - {id} \"{qtype} {qclass} {name} {proto} {size} {do_bit} {bufsize}\" {rcode} {flags} {rsize} {duration}",
            remote = remote_text(self.client.ip()),
            port = self.client.port(),
            id = self.id,
            qtype = self.qtype,
            qclass = self.qclass,
            name = self.name,
            proto = self.proto,
            size = self.size,
            do_bit = self.do_bit,
            bufsize = self.bufsize,
            rcode = self.rcode,
            flags = self.flags,
            rsize = self.rsize,
            duration = seconds(self.duration),
        )
    }
}

/// A failure the `errors` plugin logs for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLine {
    /// The rcode the query was answered with, as a number.
    pub rcode: u16,
    pub name: String,
    pub qtype: String,
    /// The error, as the plugin that failed put it.
    pub message: String,
}

const ERRORS: &str = "[ERROR] plugin/errors: ";

impl ErrorLine {
    /// Reads one `errors` line; None for anything else.
    pub fn parse(line: &str) -> Option<ErrorLine> {
        let rest = line.trim_end().strip_prefix(ERRORS)?;
        let (rcode, rest) = rest.split_once(' ')?;
        let (name, rest) = rest.split_once(' ')?;
        let (qtype, message) = rest.split_once(": ")?;
        Some(ErrorLine {
            rcode: rcode.parse().ok()?,
            name: name.to_string(),
            qtype: qtype.to_string(),
            message: message.to_string(),
        })
    }
}

impl fmt::Display for ErrorLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ERRORS}{} {} {}: {}",
            self.rcode, self.name, self.qtype, self.message
        )
    }
}

/// `ip:port`, the IPv6 address bracketed or (as some writers do) bare.
fn parse_client(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let (ip, port) = text.rsplit_once(':')?;
    Some(SocketAddr::new(
        ip.parse::<IpAddr>().ok()?,
        port.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests;

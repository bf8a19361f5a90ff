//! `log [NAMES...] [FORMAT] { class success|denial|error|all }`: one line per query in CoreDNS's
//! format, by default
//! `{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};

use crate::corefile::{CorefileError, Directive, address::normalize_zone};
use crate::dnsmsg::{Request, flags_str, in_zone, rcode_name};

pub const COMMON: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";
pub const COMBINED: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration} \"{>opcode}\"";

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub format: String,
    pub success: bool,
    pub denial: bool,
    pub error: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Log {
    pub rules: Vec<Rule>,
}

impl Log {
    /// Adds one `log` directive (the directive may appear several times).
    pub fn add(&mut self, d: &Directive) -> Result<(), CorefileError> {
        let args = d.arg_strs();
        let (names, format) = match args.as_slice() {
            [] => (vec![".".to_string()], COMMON.to_string()),
            [name] => (
                vec![normalize_zone(name).map_err(|e| d.err(e))?],
                COMMON.to_string(),
            ),
            [names @ .., fmt] => {
                let mut n = Vec::new();
                for x in names {
                    n.push(normalize_zone(x).map_err(|e| d.err(e))?);
                }
                let f = match *fmt {
                    "{common}" => COMMON.to_string(),
                    "{combined}" => COMBINED.to_string(),
                    f => f
                        .replace("{common}", COMMON)
                        .replace("{combined}", COMBINED),
                };
                (n, f)
            }
        };
        let (mut success, mut denial, mut error) = (true, true, true);
        for line in &d.block {
            match line.name.text.as_str() {
                "class" => {
                    if line.args.is_empty() {
                        return Err(
                            line.err("plugin/log: class needs success, denial, error or all")
                        );
                    }
                    (success, denial, error) = (false, false, false);
                    for c in line.arg_strs() {
                        match c {
                            "all" => (success, denial, error) = (true, true, true),
                            "success" => success = true,
                            "denial" => denial = true,
                            "error" => error = true,
                            other => {
                                return Err(
                                    line.err(format!("plugin/log: unknown class '{other}'"))
                                );
                            }
                        }
                    }
                }
                other => return Err(line.err(format!("plugin/log: unknown property '{other}'"))),
            }
        }
        for name in names {
            self.rules.push(Rule {
                name,
                format: format.clone(),
                success,
                denial,
                error,
            });
        }
        Ok(())
    }

    /// Prints the line for this exchange if a rule covers it.
    pub fn log(&self, req: &Request, resp: &Message, rsize: usize, took: Duration) {
        let class = classify(resp);
        for rule in &self.rules {
            if !in_zone(&req.qname_lc, &rule.name) {
                continue;
            }
            let want = match class {
                Class::Success => rule.success,
                Class::Denial => rule.denial,
                Class::Error => rule.error,
            };
            if want {
                crate::util::log(
                    "INFO",
                    "",
                    format_line(&rule.format, req, resp, rsize, took),
                );
            }
            return;
        }
    }
}

enum Class {
    Success,
    Denial,
    Error,
}

fn classify(m: &Message) -> Class {
    match m.metadata.response_code {
        ResponseCode::NXDomain => Class::Denial,
        ResponseCode::NoError if m.answers.is_empty() => Class::Denial,
        ResponseCode::NoError => Class::Success,
        _ => Class::Error,
    }
}

/// Expands the placeholders of a log format.
pub fn format_line(
    fmt: &str,
    req: &Request,
    resp: &Message,
    rsize: usize,
    took: Duration,
) -> String {
    let mut out = String::with_capacity(fmt.len() + 64);
    let mut rest = fmt;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let key = &rest[start + 1..start + end];
        let client = req.client;
        let v: String = match key {
            "remote" => client.ip().to_string(),
            "port" => client.port().to_string(),
            ">id" => req.msg.metadata.id.to_string(),
            "type" => req.qtype.to_string(),
            "class" => req.qclass.to_string(),
            "name" => req.qname.to_ascii(),
            "proto" => req.proto.as_str().into(),
            "size" => req.size.to_string(),
            ">do" => req.do_bit.to_string(),
            ">bufsize" => req.bufsize.to_string(),
            "rcode" => rcode_name(resp.metadata.response_code),
            ">rflags" => flags_str(resp),
            "rsize" => rsize.to_string(),
            "duration" => go_seconds(took),
            ">opcode" => format!("{:?}", req.msg.metadata.op_code).to_uppercase(),
            _ => format!("{{{key}}}"),
        };
        out.push_str(&v);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// Seconds as Go prints a float64 in CoreDNS's log (`0.000114128s`).
fn go_seconds(d: Duration) -> String {
    let s = format!("{:.9}", d.as_secs_f64());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn the_default_line() {
        let mut q = Message::query();
        q.metadata.id = 51439;
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(
            Name::from_ascii("abc.svc.cluster.local.").unwrap(),
            RecordType::A,
        ));
        let req = Request::new(
            q,
            "10.244.1.4:50940".parse().unwrap(),
            "10.244.0.3:53".parse().unwrap(),
            crate::dnsmsg::Proto::Udp,
            51,
        )
        .unwrap();
        let mut resp = Message::response(51439, OpCode::Query);
        resp.metadata.response_code = ResponseCode::NXDomain;
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = true;
        let line = format_line(COMMON, &req, &resp, 144, Duration::from_nanos(114128));
        assert_eq!(
            line,
            "10.244.1.4:50940 - 51439 \"A IN abc.svc.cluster.local. udp 51 false 512\" NXDOMAIN qr,aa,rd 144 0.000114128s"
        );
    }
}

//! `log [NAMES...] [FORMAT] { class success|denial|error|all }`: one line per query in CoreDNS's
//! format, by default
//! `{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}`.

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use minikind_dns_log::{Flags, QueryLine, class_name, rcode_name, type_name};

use crate::corefile::{CorefileError, Directive, address::normalize_zone};
use crate::dnsmsg::{Request, in_zone};

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
                let line = query_line(req, resp, rsize, took);
                if rule.format == COMMON {
                    // The default line, from its one writer.
                    crate::util::print_line(line);
                } else {
                    crate::util::log("INFO", "", format_line(&rule.format, req, &line));
                }
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

/// The facts of one exchange as the query log shows them.
pub fn query_line(req: &Request, resp: &Message, rsize: usize, took: Duration) -> QueryLine {
    let md = &resp.metadata;
    let flags = Flags {
        qr: md.message_type == MessageType::Response,
        aa: md.authoritative,
        tc: md.truncation,
        rd: md.recursion_desired,
        ra: md.recursion_available,
        z: false,
        ad: md.authentic_data,
        cd: md.checking_disabled,
    };
    QueryLine {
        client: req.client,
        id: req.msg.metadata.id,
        qtype: type_name(u16::from(req.qtype)).into_owned(),
        qclass: class_name(u16::from(req.qclass)).into_owned(),
        name: req.qname.to_ascii(),
        proto: req.proto,
        size: req.size,
        do_bit: req.do_bit,
        bufsize: req.bufsize,
        rcode: rcode_name(u16::from(md.response_code)).into_owned(),
        flags: flags.to_string(),
        rsize,
        duration: took,
    }
}

/// Expands the placeholders of a log format (coredns plugin/pkg/replacer/replacer.go).
pub fn format_line(fmt: &str, req: &Request, line: &QueryLine) -> String {
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
        let v: String = match key {
            ">opcode" => format!("{:?}", req.msg.metadata.op_code).to_uppercase(),
            _ => line
                .placeholder(key)
                .unwrap_or_else(|| format!("{{{key}}}")),
        };
        out.push_str(&v);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
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
            minikind_dns_log::Proto::Udp,
            51,
        )
        .unwrap();
        let mut resp = Message::response(51439, OpCode::Query);
        resp.metadata.response_code = ResponseCode::NXDomain;
        resp.metadata.authoritative = true;
        resp.metadata.recursion_desired = true;
        let line = query_line(&req, &resp, 144, Duration::from_nanos(114128));
        assert_eq!(
            format_line(COMMON, &req, &line),
            "10.244.1.4:50940 - 51439 \"A IN abc.svc.cluster.local. udp 51 false 512\" NXDOMAIN qr,aa,rd 144 0.000114128s"
        );
        // The default format spelled out is the shared writer's line.
        assert_eq!(
            format!("[INFO] {}", format_line(COMMON, &req, &line)),
            line.to_string()
        );
    }
}

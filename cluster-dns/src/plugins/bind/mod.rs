//! `bind ADDRESS...`: the addresses a server block listens on (default: every address).

use std::net::IpAddr;

use crate::corefile::{CorefileError, Directive};

pub fn parse(d: &Directive) -> Result<Vec<IpAddr>, CorefileError> {
    if d.args.is_empty() {
        return Err(d.err("needs at least one address"));
    }
    let mut out = Vec::new();
    for a in &d.args {
        match a.text.parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => {
                return Err(a.err(format!(
                    "plugin/bind: '{}' is not an IP address (interface names are not supported)",
                    a.text
                )));
            }
        }
    }
    Ok(out)
}

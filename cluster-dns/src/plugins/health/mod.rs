//! `health [ADDRESS] { lameduck DURATION }`: `GET /health` answers 200 `OK` while the process
//! runs; on shutdown the server keeps serving for the lameduck period before it exits.

use std::time::Duration;

use crate::corefile::{CorefileError, Directive};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub addr: String,
    pub lameduck: Duration,
}

impl Health {
    pub fn parse(d: &Directive) -> Result<Self, CorefileError> {
        let addr = match d.arg_strs().as_slice() {
            [] => ":8080".to_string(),
            [a] => a.to_string(),
            _ => return Err(d.err("takes at most one address")),
        };
        let mut lameduck = Duration::ZERO;
        for line in &d.block {
            match (line.name.text.as_str(), line.arg_strs().as_slice()) {
                ("lameduck", [dur]) => {
                    lameduck = crate::util::parse_duration(dur)
                        .map_err(|e| line.err(format!("plugin/health: lameduck: {e}")))?
                }
                ("lameduck", _) => {
                    return Err(line.err("plugin/health: lameduck needs one duration"));
                }
                (other, _) => {
                    return Err(line.err(format!("plugin/health: unknown property '{other}'")));
                }
            }
        }
        Ok(Health { addr, lameduck })
    }
}

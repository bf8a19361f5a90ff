//! `ready [ADDRESS]`: `GET /ready` answers 200 `OK` once every plugin that reports readiness
//! (the `kubernetes` plugin, after its first sync) is ready, else 503 naming those that are not.

use crate::corefile::{CorefileError, Directive};

pub fn parse(d: &Directive) -> Result<String, CorefileError> {
    if !d.block.is_empty() {
        return Err(d.err("takes no block"));
    }
    match d.arg_strs().as_slice() {
        [] => Ok(":8181".to_string()),
        [a] => Ok(a.to_string()),
        _ => Err(d.err("takes at most one address")),
    }
}

//! `prometheus [ADDRESS]`: exports the metrics at `http://ADDRESS/metrics` (default
//! `localhost:9153`).

use crate::corefile::{CorefileError, Directive};

pub fn parse(d: &Directive) -> Result<String, CorefileError> {
    if !d.block.is_empty() {
        return Err(d.err("takes no block"));
    }
    match d.arg_strs().as_slice() {
        [] => Ok("localhost:9153".to_string()),
        [a] => Ok(a.to_string()),
        _ => Err(d.err("takes at most one address")),
    }
}

//! `errors`: logs every error a plugin returned with the query it failed, in CoreDNS's form
//! `[ERROR] plugin/errors: <rcode> <name> <type>: <error>` (coredns plugin/errors/errors.go),
//! written by `minikind_dns_log::ErrorLine`.

use minikind_dns_log::ErrorLine;

use crate::corefile::{CorefileError, Directive};
use crate::util::print_line;

#[derive(Debug, Clone, Default)]
pub struct Errors;

impl Errors {
    pub fn parse(d: &Directive) -> Result<Self, CorefileError> {
        if !d.args.is_empty() {
            return Err(d.err("takes no arguments"));
        }
        for line in &d.block {
            match line.name.text.as_str() {
                // A panic is never recovered in cluster-dns, so there is no stack to print.
                "stacktrace" => {}
                other => {
                    return Err(line.err(format!(
                        "plugin/errors: unknown property '{other}' (consolidate is not supported)"
                    )));
                }
            }
        }
        Ok(Errors)
    }

    pub fn report(&self, rcode: u16, qname: &str, qtype: &str, err: &str) {
        print_line(ErrorLine {
            rcode,
            name: qname.to_string(),
            qtype: qtype.to_string(),
            message: err.to_string(),
        });
    }
}

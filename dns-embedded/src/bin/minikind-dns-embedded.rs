//! Stand-alone entry for this crate's two servers, used by its own tests and handy before the
//! `minikind` binary dispatches to them: `minikind-dns-embedded (dns-embedded|lab-upstream) …`.

use std::ffi::OsString;

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let code = match args.get(1).and_then(|a| a.to_str()) {
        Some(cmd @ ("dns-embedded" | "lab-upstream")) => {
            let cmd = cmd.to_string();
            // The subcommand becomes the program name, as `minikind <cmd> …` hands it over.
            args.remove(0);
            if cmd == "dns-embedded" {
                minikind_dns_embedded::cli_main(args)
            } else {
                minikind_dns_embedded::lab_upstream::cli_main(args)
            }
        }
        _ => {
            eprintln!("usage: minikind-dns-embedded (dns-embedded|lab-upstream) [OPTIONS]");
            2
        }
    };
    std::process::exit(code);
}

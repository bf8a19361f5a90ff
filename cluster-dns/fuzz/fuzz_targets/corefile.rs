//! Fuzzes the Corefile parser and the plugin setup: any text gives a config or an error with
//! a position, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minikind_cluster_dns::run::{Config, Options};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match minikind_cluster_dns::corefile::parse_str(text, "Corefile", None, &|_| Some("x".into())) {
        Ok(cf) => {
            let opts = Options {
                banner: false,
                ..Default::default()
            };
            let _ = Config::build(&cf, text.to_string(), &opts);
        }
        Err(e) => assert!(!e.msg.is_empty()),
    }
});

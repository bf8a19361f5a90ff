//! The plugins, one folder each as CoreDNS's `plugin/<name>/`: each holds its Corefile parsing
//! and its behaviour (answering, logging, its HTTP endpoint, its background work). No plugin
//! imports the chain that puts a server block's plugins together (the `chain` module) nor
//! another plugin; what they share is below them (`dnsmsg`, `pkg`, `corefile`, `metrics`).

pub mod bind;
pub mod cache;
pub mod errors;
pub mod forward;
pub mod health;
pub mod hosts;
pub mod kubernetes;
pub mod loadbalance;
pub mod log;
pub mod r#loop;
pub mod prometheus;
pub mod ready;
pub mod reload;

/// CoreDNS's execution order (coredns plugin.cfg), with whether cluster-dns implements each
/// plugin. A name here that cluster-dns does not implement is reported as unsupported rather
/// than unknown.
pub const EXECUTION_ORDER: &[(&str, bool)] = &[
    ("root", false),
    ("metadata", false),
    ("geoip", false),
    ("cancel", false),
    ("tls", false),
    ("timeouts", false),
    ("multisocket", false),
    ("reload", true),
    ("nsid", false),
    ("bufsize", false),
    ("bind", true),
    ("debug", false),
    ("trace", false),
    ("ready", true),
    ("health", true),
    ("pprof", false),
    ("prometheus", true),
    ("errors", true),
    ("log", true),
    ("dnstap", false),
    ("local", false),
    ("dns64", false),
    ("acl", false),
    ("any", false),
    ("chaos", false),
    ("loadbalance", true),
    ("tsig", false),
    ("cache", true),
    ("rewrite", false),
    ("header", false),
    ("dnssec", false),
    ("autopath", false),
    ("minimal", false),
    ("template", false),
    ("transfer", false),
    ("hosts", true),
    ("route53", false),
    ("azure", false),
    ("clouddns", false),
    ("k8s_external", false),
    ("kubernetes", true),
    ("file", false),
    ("auto", false),
    ("secondary", false),
    ("etcd", false),
    ("loop", true),
    ("forward", true),
    ("grpc", false),
    ("erratic", false),
    ("whoami", false),
    ("on", false),
    ("sign", false),
    ("view", false),
];

/// The plugins cluster-dns implements, in execution order.
pub fn implemented() -> impl Iterator<Item = &'static str> {
    EXECUTION_ORDER
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
}

/// Whether cluster-dns implements the plugin `name`.
pub fn is_implemented(name: &str) -> bool {
    EXECUTION_ORDER.iter().any(|(n, on)| *on && *n == name)
}

/// Whether `name` is a CoreDNS plugin at all.
pub fn is_known(name: &str) -> bool {
    EXECUTION_ORDER.iter().any(|(n, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_implemented_plugins_in_execution_order() {
        assert_eq!(
            implemented().collect::<Vec<_>>(),
            [
                "reload",
                "bind",
                "ready",
                "health",
                "prometheus",
                "errors",
                "log",
                "loadbalance",
                "cache",
                "hosts",
                "kubernetes",
                "loop",
                "forward"
            ]
        );
        assert!(is_known("whoami") && !is_implemented("whoami"));
        assert!(!is_known("frobnicate"));
    }
}

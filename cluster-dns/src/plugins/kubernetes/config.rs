//! The `kubernetes` directive's options, with CoreDNS's defaults.

use std::path::PathBuf;

use crate::corefile::{CorefileError, Directive, address::normalize_zone};

use super::model::LabelSelector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodMode {
    Disabled,
    Insecure,
    Verified,
}

/// Where the API is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// `endpoint URL`: no authentication (as CoreDNS's out-of-cluster endpoint).
    Endpoint(String),
    /// `kubeconfig PATH [CONTEXT]`.
    Kubeconfig(PathBuf, Option<String>),
    /// Neither: in-cluster service account, else the usual kubeconfig inference.
    InCluster,
}

#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// Lower-case fqdn zones, in written order.
    pub zones: Vec<String>,
    pub source: ApiSource,
    pub namespaces: Vec<String>,
    pub labels: Option<LabelSelector>,
    pub pods: PodMode,
    pub endpoint_pod_names: bool,
    pub ttl: u32,
    pub noendpoints: bool,
    /// None: no fallthrough; Some(empty): every zone.
    pub fallthrough: Option<Vec<String>>,
    pub ignore_empty_service: bool,
    /// How long the server waits at start for the first sync (`startup_timeout`, default 5s).
    pub startup_timeout: std::time::Duration,
}

impl KubeOptions {
    /// Parses the directive; `block_zones` are the server block's zones (used when the
    /// directive names none).
    pub fn parse(d: &Directive, block_zones: &[String]) -> Result<Self, CorefileError> {
        let mut zones = Vec::new();
        for a in &d.args {
            zones.push(
                normalize_zone(&a.text).map_err(|e| a.err(format!("plugin/kubernetes: {e}")))?,
            );
        }
        if zones.is_empty() {
            zones = block_zones.to_vec();
        }
        let mut o = KubeOptions {
            zones,
            source: ApiSource::InCluster,
            namespaces: Vec::new(),
            labels: None,
            pods: PodMode::Disabled,
            endpoint_pod_names: false,
            ttl: 5,
            noendpoints: false,
            fallthrough: None,
            ignore_empty_service: false,
            startup_timeout: std::time::Duration::from_secs(5),
        };
        for line in &d.block {
            let args = line.arg_strs();
            let bad = |m: &str| line.err(format!("plugin/kubernetes: {}: {m}", line.name.text));
            match line.name.text.as_str() {
                "endpoint" => match args.as_slice() {
                    [url] => o.source = ApiSource::Endpoint(url.to_string()),
                    _ => return Err(bad("needs exactly one URL")),
                },
                "kubeconfig" => match args.as_slice() {
                    [p] => o.source = ApiSource::Kubeconfig(p.into(), None),
                    [p, c] => o.source = ApiSource::Kubeconfig(p.into(), Some(c.to_string())),
                    _ => return Err(bad("needs PATH [CONTEXT]")),
                },
                "namespaces" => {
                    if args.is_empty() {
                        return Err(bad("needs at least one namespace"));
                    }
                    o.namespaces = args.iter().map(|a| a.to_ascii_lowercase()).collect();
                }
                "labels" => {
                    if args.is_empty() {
                        return Err(bad("needs a selector"));
                    }
                    o.labels = Some(LabelSelector::parse(&args.join(" ")).map_err(|e| bad(&e))?);
                }
                "pods" => {
                    o.pods = match args.as_slice() {
                        ["disabled"] => PodMode::Disabled,
                        ["insecure"] => PodMode::Insecure,
                        ["verified"] => PodMode::Verified,
                        _ => return Err(bad("expects one of disabled, insecure, verified")),
                    }
                }
                "endpoint_pod_names" => {
                    if !args.is_empty() {
                        return Err(bad("takes no arguments"));
                    }
                    o.endpoint_pod_names = true;
                }
                "ttl" => match args.as_slice() {
                    [t] => {
                        let v: u32 = t
                            .parse()
                            .map_err(|_| bad(&format!("'{t}' is not a number")))?;
                        if v > 3600 {
                            return Err(bad("must be in range [0, 3600]"));
                        }
                        o.ttl = v;
                    }
                    _ => return Err(bad("needs one number")),
                },
                "noendpoints" => o.noendpoints = true,
                "fallthrough" => {
                    let mut z = Vec::new();
                    for a in &args {
                        z.push(normalize_zone(a).map_err(|e| bad(&e))?);
                    }
                    o.fallthrough = Some(z);
                }
                "ignore" => match args.as_slice() {
                    ["empty_service"] => o.ignore_empty_service = true,
                    _ => return Err(bad("only 'ignore empty_service' is known")),
                },
                "startup_timeout" => match args.as_slice() {
                    [t] => {
                        o.startup_timeout = crate::util::parse_duration(t).map_err(|e| bad(&e))?
                    }
                    _ => return Err(bad("needs one duration")),
                },
                other => {
                    return Err(line.err(format!("plugin/kubernetes: unknown property '{other}'")));
                }
            }
        }
        Ok(o)
    }

    /// The first forward (non-reverse) zone: the one PTR and SRV targets are written in.
    pub fn primary_zone(&self) -> &str {
        self.zones
            .iter()
            .find(|z| !z.ends_with("in-addr.arpa.") && !z.ends_with("ip6.arpa."))
            .map(String::as_str)
            .unwrap_or("cluster.local.")
    }

    pub fn falls_through(&self, qname_lc: &str) -> bool {
        match &self.fallthrough {
            None => false,
            Some(z) if z.is_empty() => true,
            Some(z) => z.iter().any(|z| crate::dnsmsg::in_zone(qname_lc, z)),
        }
    }
}

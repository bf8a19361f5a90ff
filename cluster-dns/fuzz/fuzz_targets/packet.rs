//! Fuzzes the packet path: parsing, the checks before the chain, zone selection, the cache,
//! hosts and the kubernetes plugin, and encoding/truncating the reply. Any input must give a
//! reply or a drop, never a panic. Differentially, the wire fast path must give byte for byte
//! what the general path gives for the same packet (on a block without cache or shuffling,
//! where answers are deterministic).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use minikind_cluster_dns::fastpath;
use minikind_cluster_dns::plugins::kubernetes::Change;
use minikind_cluster_dns::run::{Config, Options};
use minikind_cluster_dns::packet::prepare;
use minikind_cluster_dns::query::{Step, prepare_decoded};
use minikind_cluster_dns::zones::ZoneTable;
use minikind_dns_log::Proto;

const COREFILE: &str = ".:53 {
    cache 30
    loadbalance
    hosts {
        10.0.0.1 a.lab
        10.0.0.2 a.lab
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
lab:53 {
    hosts {
        10.0.0.3 b.lab
    }
}
";

fn objects() -> Vec<Change> {
    let v = |s: serde_json::Value| s;
    let ns = v(serde_json::json!({"metadata":{"name":"default"}}));
    let svc = v(
        serde_json::json!({"metadata":{"name":"web","namespace":"default"},
        "spec":{"clusterIP":"10.96.0.50","clusterIPs":["10.96.0.50"],"ports":[{"name":"http","port":80,"protocol":"TCP"}]}}),
    );
    let headless = v(
        serde_json::json!({"metadata":{"name":"db","namespace":"default"},
        "spec":{"clusterIP":"None","ports":[{"name":"sql","port":5432}]}}),
    );
    let ext = v(
        serde_json::json!({"metadata":{"name":"ext","namespace":"default"},
        "spec":{"type":"ExternalName","externalName":"example.org"}}),
    );
    let slice = v(
        serde_json::json!({"metadata":{"name":"db-1","namespace":"default","labels":{"kubernetes.io/service-name":"db"}},
        "addressType":"IPv4","endpoints":[{"addresses":["10.244.1.5"],"hostname":"db-0"},{"addresses":["10.244.1.6"],"conditions":{"ready":false}}],
        "ports":[{"name":"sql","port":5432,"protocol":"TCP"}]}),
    );
    vec![
        Change::Namespace(serde_json::from_value(ns).expect("namespace")),
        Change::Service(serde_json::from_value(svc).expect("service")),
        Change::Service(serde_json::from_value(headless).expect("service")),
        Change::Service(serde_json::from_value(ext).expect("service")),
        Change::Slice(serde_json::from_value(slice).expect("slice")),
    ]
}

/// Only the kubernetes plugin: its kept answers are what the fast path serves here.
const PLAIN: &str = ".:53 {
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
    }
}
";

fn table() -> &'static (Config, Arc<ZoneTable>) {
    static T: OnceLock<(Config, Arc<ZoneTable>)> = OnceLock::new();
    T.get_or_init(|| build(COREFILE))
}

fn plain() -> &'static (Config, Arc<ZoneTable>) {
    static T: OnceLock<(Config, Arc<ZoneTable>)> = OnceLock::new();
    T.get_or_init(|| build(PLAIN))
}

fn build(text: &str) -> (Config, Arc<ZoneTable>) {
    let cf = minikind_cluster_dns::corefile::parse_str(text, "Corefile", None, &|_| None)
        .expect("corefile");
    let opts = Options {
        banner: false,
        ..Default::default()
    };
    let config = Config::build(&cf, text.to_string(), &opts).expect("config");
    for b in &config.blocks {
        if let Some(k) = &b.kubernetes {
            for c in objects() {
                k.apply(c);
            }
            k.mark_synced();
        }
    }
    let t = config.tables.values().next().expect("a listener").clone();
    (config, t)
}

fuzz_target!(|data: &[u8]| {
    let (_, t) = table();
    let client: SocketAddr = "127.0.0.1:5353".parse().expect("addr");
    let local: SocketAddr = "127.0.0.1:53".parse().expect("addr");
    for proto in [Proto::Udp, Proto::Tcp] {
        match prepare(t, data, client, local, proto) {
            Step::Drop | Step::Later(_) => {}
            Step::Done(out) => {
                assert!(out.len() >= 12, "a reply has a header");
                if proto == Proto::Udp {
                    assert!(out.len() <= 65535);
                }
            }
        }
        let (_, p) = plain();
        let general = prepare_decoded(p, data, client, local, proto, true);
        if let Some(Step::Done(fast)) = fastpath::serve(p, data, client, local, proto) {
            match general {
                Step::Done(g) => assert_eq!(fast, g, "the fast path answers as the general path"),
                _ => panic!("the fast path answered what the general path does not"),
            }
        }
    }
});

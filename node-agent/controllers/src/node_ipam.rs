//! Node IPAM: gives each registered Node a pod range (`spec.podCIDR`/`podCIDRs`) carved out of
//! the cluster's pod CIDR, as kube-controller-manager's range allocator does.

use super::{Key, Reconciler};
use ipnet::Ipv4Net;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

pub struct NodeIpam {
    cluster: Ipv4Net,
    prefix: u8,
}

impl NodeIpam {
    pub fn new(cluster: Ipv4Net, prefix: u8) -> Self {
        NodeIpam {
            cluster,
            prefix: prefix.max(cluster.prefix_len()),
        }
    }

    fn next_free(&self, st: &ApiState) -> Option<Ipv4Net> {
        let (nodes, _, _) = st.store.list(idx::nodes(), None, None, 0, |_| true);
        let used: HashSet<Ipv4Net> = nodes
            .iter()
            .filter_map(|n| str_at(&n.value(), "/spec/podCIDR").and_then(|c| c.parse().ok()))
            .collect();
        self.cluster
            .subnets(self.prefix)
            .ok()?
            .find(|s| !used.contains(s))
    }
}

impl Reconciler for NodeIpam {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        if ev.obj.res == idx::nodes() && ev.ty != minikind_apiserver::store::EventType::Deleted {
            vec![(String::new(), ev.obj.name.to_string())]
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        let (nodes, _, _) = st.store.list(idx::nodes(), None, None, 0, |_| true);
        nodes
            .iter()
            .map(|n| (String::new(), n.name.to_string()))
            .collect()
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        let Some(node) = st.store.get(idx::nodes(), "", &key.1) else {
            return;
        };
        if str_at(&node.value(), "/spec/podCIDR").is_some_and(|c| !c.is_empty()) {
            return;
        }
        let Some(cidr) = self.next_free(st) else {
            tracing::warn!(node = %key.1, "no pod CIDR left in {}", self.cluster);
            return;
        };
        let c = cidr.to_string();
        let r = objects::update_internal(
            st,
            idx::nodes(),
            "",
            &key.1,
            "node-ipam-controller",
            false,
            |n| {
                if str_at(n, "/spec/podCIDR").is_some_and(|c| !c.is_empty()) {
                    return false;
                }
                n["spec"]["podCIDR"] = json!(c);
                n["spec"]["podCIDRs"] = json!([c]);
                true
            },
        )
        .await;
        if let Err(e) = r {
            tracing::warn!(node = %key.1, "assigning pod CIDR: {e}");
        }
    }
}

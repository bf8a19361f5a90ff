//! One server block, ready to serve: its plugins, built from its Corefile directives, and the
//! chain that runs them. Whatever order a Corefile lists directives in, they run in CoreDNS's
//! fixed execution order ([`crate::plugins::EXECUTION_ORDER`]); a query goes cache → hosts →
//! kubernetes → loop → forward, with loadbalance applied to what comes back (coredns
//! core/dnsserver/server.go, plugin.cfg).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

use crate::corefile::{CorefileError, ListenAddr, ServerBlock, parse_address};
use crate::dnsmsg::{Reply, Request};
use crate::plugins::kubernetes::{self, KubeOptions, Kubernetes, Outcome};
use crate::plugins::{
    bind, cache, errors, forward, health, hosts, is_implemented, is_known, loadbalance, log,
    r#loop, prometheus, ready, reload,
};

/// Called with the message when the server must stop (the loop plugin's fatal error).
pub type FatalHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Work the synchronous part of the chain could not finish.
#[derive(Debug)]
pub enum Pending {
    /// A CNAME answer whose target must be resolved through the chain.
    Chase(Box<(Message, hickory_proto::rr::Name)>),
    /// An answer whose additional section needs these lookups.
    Additional(Box<(Message, Vec<kubernetes::ExtraLookup>)>),
    /// Nothing answered from memory: loop and forward are next.
    Next,
}

/// One server block, ready to serve.
pub struct Block {
    /// `dns://:53`-style label for metrics.
    pub server: String,
    pub keys: Vec<ListenAddr>,
    pub bind: Vec<IpAddr>,
    pub errors: Option<errors::Errors>,
    pub log: Option<log::Log>,
    pub prometheus: Option<String>,
    pub health: Option<health::Health>,
    pub ready: Option<String>,
    pub reload: Option<reload::Reload>,
    pub loadbalance: Option<loadbalance::LoadBalance>,
    pub cache: Option<Arc<cache::Cache>>,
    pub hosts: Option<hosts::Hosts>,
    pub kubernetes: Option<Kubernetes>,
    pub r#loop: Option<r#loop::Loop>,
    pub forward: Option<forward::Forward>,
    pub fatal: FatalHook,
}

/// Longest chain of CNAME targets chased through the plugins.
const MAX_CHASE: u8 = 8;

impl Block {
    /// Builds a block from its Corefile text. `default_port` is 53 or `-dns.port`.
    pub fn build(
        sb: &ServerBlock,
        default_port: u16,
        fatal: FatalHook,
    ) -> Result<Block, CorefileError> {
        let mut keys = Vec::new();
        for k in &sb.keys {
            keys.extend(parse_address(&k.text, default_port).map_err(|e| k.err(e))?);
        }
        let zones: Vec<String> = keys.iter().map(|k| k.zone.clone()).collect();
        let port = keys.first().map(|k| k.port).unwrap_or(default_port);
        let mut b = Block {
            server: format!("dns://:{port}"),
            keys,
            bind: Vec::new(),
            errors: None,
            log: None,
            prometheus: None,
            health: None,
            ready: None,
            reload: None,
            loadbalance: None,
            cache: None,
            hosts: None,
            kubernetes: None,
            r#loop: None,
            forward: None,
            fatal,
        };
        for d in &sb.directives {
            let name = d.name.text.as_str();
            if !is_implemented(name) {
                if is_known(name) {
                    return Err(d
                        .name
                        .err(format!("plugin '{name}' is not supported by cluster-dns")));
                }
                return Err(d.name.err(format!("Unknown directive '{name}'")));
            }
            let once = |present: bool| {
                if present {
                    Err(d.name.err(format!(
                        "plugin/{name}: this plugin can only be used once per Server Block"
                    )))
                } else {
                    Ok(())
                }
            };
            match name {
                "bind" => b.bind.extend(bind::parse(d)?),
                "errors" => {
                    once(b.errors.is_some())?;
                    b.errors = Some(errors::Errors::parse(d)?);
                }
                "log" => b.log.get_or_insert_with(Default::default).add(d)?,
                "prometheus" => {
                    once(b.prometheus.is_some())?;
                    b.prometheus = Some(prometheus::parse(d)?);
                }
                "health" => {
                    once(b.health.is_some())?;
                    b.health = Some(health::Health::parse(d)?);
                }
                "ready" => {
                    once(b.ready.is_some())?;
                    b.ready = Some(ready::parse(d)?);
                }
                "reload" => {
                    once(b.reload.is_some())?;
                    b.reload = Some(reload::Reload::parse(d)?);
                }
                "loadbalance" => {
                    once(b.loadbalance.is_some())?;
                    b.loadbalance = Some(loadbalance::LoadBalance::parse(d)?);
                }
                "cache" => {
                    once(b.cache.is_some())?;
                    b.cache = Some(Arc::new(cache::Cache::new(
                        cache::CacheOptions::parse(d, &zones)?,
                        &b.server,
                    )));
                }
                "hosts" => {
                    once(b.hosts.is_some())?;
                    b.hosts = Some(hosts::Hosts::new(hosts::HostsOptions::parse(d, &zones)?));
                }
                "kubernetes" => {
                    once(b.kubernetes.is_some())?;
                    b.kubernetes = Some(Kubernetes::new(KubeOptions::parse(d, &zones)?));
                }
                "loop" => {
                    once(b.r#loop.is_some())?;
                    b.r#loop = Some(r#loop::Loop::parse(d, &zones)?);
                }
                "forward" => {
                    once(b.forward.is_some())?;
                    b.forward = Some(forward::Forward::new(forward::ForwardOptions::parse(d)?));
                }
                _ => unreachable!("every implemented directive is matched above"),
            }
        }
        let r = crate::metrics::registry();
        for name in crate::plugins::implemented() {
            let on = match name {
                "bind" => !b.bind.is_empty(),
                "errors" => b.errors.is_some(),
                "log" => b.log.is_some(),
                "prometheus" => b.prometheus.is_some(),
                "health" => b.health.is_some(),
                "ready" => b.ready.is_some(),
                "reload" => b.reload.is_some(),
                "loadbalance" => b.loadbalance.is_some(),
                "cache" => b.cache.is_some(),
                "hosts" => b.hosts.is_some(),
                "kubernetes" => b.kubernetes.is_some(),
                "loop" => b.r#loop.is_some(),
                "forward" => b.forward.is_some(),
                _ => unreachable!("every implemented plugin is matched above"),
            };
            if on {
                for z in &zones {
                    r.plugin_enabled.with(&[&b.server, z, "", name]).set(1.0);
                }
            }
        }
        Ok(b)
    }

    /// Runs the chain for one request (cache → hosts → kubernetes → loop → forward, with
    /// loadbalance applied to whatever comes back).
    pub async fn serve(self: &Arc<Self>, req: &Request, listener: &str) -> Reply {
        match self.serve_sync(req, listener) {
            Ok(r) => r,
            Err(pending) => self.finish(req, listener, pending).await,
        }
    }

    /// The part of the chain that answers without waiting (cache hits, hosts, kubernetes).
    /// What needs the network comes back as [`Pending`] for [`Block::finish`].
    pub fn serve_sync(self: &Arc<Self>, req: &Request, listener: &str) -> Result<Reply, Pending> {
        if let Some(c) = self.cache.as_ref().filter(|c| c.applies(req)) {
            match c.get(req, self.loadbalance.is_some()) {
                Some(cache::Hit::Fresh(w, rcode, prefetch)) => {
                    if prefetch {
                        c.count_prefetch();
                        self.refresh(req, listener);
                    }
                    return Ok(Reply::cached(req, w, rcode));
                }
                Some(cache::Hit::Stale(w, rcode)) => {
                    self.refresh(req, listener);
                    return Ok(Reply::cached(req, w, rcode));
                }
                None => {}
            }
        }
        self.serve_uncached(req)
    }

    /// The synchronous part of the chain after the cache (whose miss the caller has seen).
    pub fn serve_uncached(self: &Arc<Self>, req: &Request) -> Result<Reply, Pending> {
        let r = self.resolve_sync(req)?;
        Ok(self.store(req, r))
    }

    /// Completes what [`Block::serve_sync`] left: a CNAME chase or the forward.
    pub async fn finish(
        self: &Arc<Self>,
        req: &Request,
        listener: &str,
        pending: Pending,
    ) -> Reply {
        let r = self.resolve_pending(req, listener, pending).await;
        self.store(req, r)
    }

    /// Caches and balances a fresh reply; a cached one goes out as the cache encoded it.
    fn store(&self, req: &Request, mut r: Reply) -> Reply {
        if let Some(c) = self.cache.as_ref().filter(|c| c.applies(req))
            && let Some(w) = match r.encoded.take() {
                Some(e) => c.put_encoded(req, e, self.loadbalance.is_some()),
                None => c.put(req, &r.msg, self.loadbalance.is_some()),
            }
        {
            r.wire = Some(w);
            return r;
        }
        self.balance(&mut r.msg);
        r
    }

    fn balance(&self, m: &mut Message) {
        if let Some(lb) = &self.loadbalance {
            lb.apply(m);
        }
    }

    /// Re-resolves a cached name in the background and stores the fresh answer.
    pub(crate) fn refresh(self: &Arc<Self>, req: &Request, listener: &str) {
        let (me, req, listener) = (self.clone(), req.clone(), listener.to_string());
        tokio::spawn(async move {
            let r = me.resolve(&req, &listener).await;
            if let Some(c) = &me.cache {
                c.put(&req, &r.msg, false);
            }
        });
    }

    /// hosts and kubernetes, which answer from memory.
    fn resolve_sync(&self, req: &Request) -> Result<Reply, Pending> {
        if let Some(h) = &self.hosts
            && let Some(m) = h.serve(req)
        {
            return Ok(Reply::new(m, "hosts"));
        }
        if let Some(k) = &self.kubernetes {
            let (outcome, encoded) = k.serve_encoded(req);
            match outcome {
                Outcome::Reply(m) => {
                    let rc = m.metadata.response_code;
                    return Ok(if rc == ResponseCode::ServFail {
                        Reply::err(m, "kubernetes", "kubernetes API not synced yet".into())
                    } else {
                        let mut r = Reply::new(m, "kubernetes");
                        r.encoded = encoded;
                        r
                    });
                }
                Outcome::Chase(m, target) => return Err(Pending::Chase(Box::new((m, target)))),
                Outcome::Additional(m, l) => return Err(Pending::Additional(Box::new((m, l)))),
                Outcome::Next => {}
            }
        }
        Err(Pending::Next)
    }

    async fn resolve_pending(
        self: &Arc<Self>,
        req: &Request,
        listener: &str,
        pending: Pending,
    ) -> Reply {
        match pending {
            Pending::Chase(b) => {
                let (mut m, target) = *b;
                if req.depth < MAX_CHASE {
                    let sub = req.derived(target, req.qtype);
                    let r = self.chase(sub, listener.to_string()).await;
                    m.answers.extend(r.msg.answers);
                }
                Reply::new(m, "kubernetes")
            }
            Pending::Additional(b) => {
                let (mut m, lookups) = *b;
                if req.depth < MAX_CHASE {
                    for l in lookups {
                        let sub = req.derived(l.name, l.qtype);
                        let answers = if l.internal {
                            self.kubernetes_only(sub, listener).await
                        } else {
                            self.chase(sub, listener.to_string()).await.msg.answers
                        };
                        m.additionals.extend(
                            answers
                                .into_iter()
                                .filter(|r| l.cnames || r.record_type() != RecordType::CNAME),
                        );
                    }
                }
                Reply::new(m, "kubernetes")
            }
            Pending::Next => {
                if let Some(l) = &self.r#loop
                    && let Some(msg) = l.observe(req, listener)
                {
                    (self.fatal)(&msg);
                    return Reply::err(req.reply_rcode(ResponseCode::ServFail), "loop", msg);
                }
                if let Some(f) = &self.forward
                    && f.handles(&req.qname_lc)
                    && let Some(r) = f.serve(req).await
                {
                    return r;
                }
                Reply::err(
                    req.reply_rcode(ResponseCode::ServFail),
                    "",
                    format!("no next plugin found for {}", req.qname_lc),
                )
            }
        }
    }

    /// The plugins after the cache.
    pub async fn resolve(self: &Arc<Self>, req: &Request, listener: &str) -> Reply {
        match self.resolve_sync(req) {
            Ok(r) => r,
            Err(p) => self.resolve_pending(req, listener, p).await,
        }
    }

    /// The answers of the `kubernetes` plugin alone for a name in its zone (a CNAME it gives
    /// is followed through the chain, as for any query).
    async fn kubernetes_only(self: &Arc<Self>, sub: Request, listener: &str) -> Vec<Record> {
        let Some(k) = &self.kubernetes else {
            return Vec::new();
        };
        match k.serve(&sub) {
            Outcome::Reply(m) if m.metadata.response_code == ResponseCode::NoError => m.answers,
            Outcome::Chase(m, target) => {
                let inside = k.zone_for(&crate::dnsmsg::lower_fqdn(&target)).is_some();
                let mut found = Vec::new();
                if sub.depth < MAX_CHASE {
                    let next = sub.derived(target, sub.qtype);
                    found = self.chase(next, listener.to_string()).await.msg.answers;
                }
                // A CNAME inside the zone counts only with what it leads to.
                if inside && found.is_empty() {
                    return Vec::new();
                }
                let mut answers = m.answers;
                answers.extend(found);
                answers
            }
            _ => Vec::new(),
        }
    }

    fn chase(
        self: &Arc<Self>,
        sub: Request,
        listener: String,
    ) -> futures::future::BoxFuture<'static, Reply> {
        let me = self.clone();
        Box::pin(async move { me.resolve(&sub, &listener).await })
    }

    /// Not-ready plugin names (for `/ready`).
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if let Some(k) = &self.kubernetes
            && !k.synced()
        {
            v.push("kubernetes");
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Result<Block, CorefileError> {
        let cf = crate::corefile::parse_str(text, "Corefile", None, &|_| None)?;
        Block::build(&cf.blocks[0], 53, Arc::new(|_| {}))
    }

    #[test]
    fn unknown_and_unsupported_directives() {
        let e = block(".:53 {\n  frobnicate\n}").err().unwrap();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("Unknown directive 'frobnicate'"), "{e}");
        let e = block(".:53 {\n  whoami\n}").err().unwrap();
        assert!(e.msg.contains("not supported"), "{e}");
        let e = block(".:53 {\n cache\n cache 10\n}").err().unwrap();
        assert_eq!(e.line, 3);
        let e = block(".:53 {\n forward .\n}").err().unwrap();
        assert!(e.msg.contains("plugin/forward"), "{e}");
        let e = block(".:53 {\n kubernetes {\n  pods maybe\n }\n}")
            .err()
            .unwrap();
        assert_eq!(e.line, 3);
        let e = block(".:53 {\n cache {\n  success lots\n }\n}")
            .err()
            .unwrap();
        assert!(e.msg.contains("not a number"), "{e}");
    }

    #[test]
    fn kubeadm_block_builds() {
        let b = block(".:53 {\n errors\n health {\n lameduck 5s\n }\n ready\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n pods insecure\n fallthrough in-addr.arpa ip6.arpa\n ttl 30\n }\n prometheus :9153\n forward . 127.0.0.1:5399 {\n max_concurrent 1000\n }\n cache 30\n loop\n reload\n loadbalance\n}").unwrap();
        assert_eq!(
            b.health.as_ref().unwrap().lameduck,
            std::time::Duration::from_secs(5)
        );
        let k = b.kubernetes.as_ref().unwrap();
        assert_eq!(k.opts.ttl, 30);
        assert_eq!(
            k.opts.zones,
            vec!["cluster.local.", "in-addr.arpa.", "ip6.arpa."]
        );
        assert_eq!(b.forward.as_ref().unwrap().opts.max_concurrent, Some(1000));
        assert_eq!(
            b.cache.as_ref().unwrap().opts.success_max_ttl,
            std::time::Duration::from_secs(30)
        );
        assert_eq!(b.prometheus.as_deref(), Some(":9153"));
    }
}

//! Kubeconfig documents: building the admin kubeconfig of a cluster, rewriting its server,
//! merging one cluster/user/context into a user's kubeconfig without touching other entries
//! (unknown fields kept), and removing exactly those entries again.

use anyhow::{Context, bail};
use base64::Engine;
use serde_yaml::{Mapping, Value};

/// The entry names a cluster gets: cluster, user and context all `minikind-<cluster>`.
pub fn entry_name(cluster: &str) -> String {
    format!("minikind-{cluster}")
}

/// A kubeconfig with one cluster/user/context named `name`, authenticating with `token`.
pub fn build(name: &str, server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

fn parse(doc: &str, what: &str) -> anyhow::Result<Mapping> {
    if doc.trim().is_empty() {
        return Ok(Mapping::new());
    }
    match serde_yaml::from_str::<Value>(doc).with_context(|| format!("{what} is not valid YAML"))? {
        Value::Mapping(m) => Ok(m),
        Value::Null => Ok(Mapping::new()),
        _ => bail!("{what} is not a kubeconfig (the top level is not a mapping)"),
    }
}

fn list_mut<'a>(m: &'a mut Mapping, key: &str, what: &str) -> anyhow::Result<&'a mut Vec<Value>> {
    let k = Value::String(key.into());
    if !m.get(&k).is_some_and(|v| v.is_sequence()) {
        if m.get(&k).is_some_and(|v| !v.is_null()) {
            bail!("{what}: `{key}` is not a list");
        }
        m.insert(k.clone(), Value::Sequence(vec![]));
    }
    Ok(m.get_mut(&k)
        .and_then(Value::as_sequence_mut)
        .expect("made a sequence"))
}

fn entry_named<'a>(list: &'a [Value], name: &str) -> Option<&'a Value> {
    list.iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

/// Rewrites the server URL of every cluster in a kubeconfig (the CLI points the admin
/// kubeconfig at `https://127.0.0.1:<published port>`).
pub fn rewrite_server(doc: &str, server: &str) -> anyhow::Result<String> {
    let mut m = parse(doc, "the kubeconfig")?;
    for c in list_mut(&mut m, "clusters", "the kubeconfig")? {
        if let Some(cl) = c.get_mut("cluster").and_then(Value::as_mapping_mut) {
            cl.insert("server".into(), Value::String(server.into()));
        }
    }
    Ok(serde_yaml::to_string(&m)?)
}

/// Renames the cluster/user/context of a single-entry kubeconfig to `name`.
pub fn rename(doc: &str, name: &str) -> anyhow::Result<String> {
    let mut m = parse(doc, "the kubeconfig")?;
    for key in ["clusters", "users", "contexts"] {
        for e in list_mut(&mut m, key, "the kubeconfig")? {
            if let Some(em) = e.as_mapping_mut() {
                em.insert("name".into(), Value::String(name.into()));
            }
            if key == "contexts"
                && let Some(c) = e.get_mut("context").and_then(Value::as_mapping_mut)
            {
                c.insert("cluster".into(), Value::String(name.into()));
                c.insert("user".into(), Value::String(name.into()));
            }
        }
    }
    m.insert("current-context".into(), Value::String(name.into()));
    Ok(serde_yaml::to_string(&m)?)
}

/// Merges the entries of `addition` (cluster, user and context named `name`) into `existing`:
/// entries of that name are replaced, all others and every unknown field are kept; with
/// `make_current` the context becomes current.
pub fn merge(
    existing: &str,
    addition: &str,
    name: &str,
    make_current: bool,
) -> anyhow::Result<String> {
    let mut base = parse(existing, "the existing kubeconfig")?;
    let mut add = parse(addition, "the cluster's kubeconfig")?;
    if base.is_empty() {
        base.insert("apiVersion".into(), "v1".into());
        base.insert("kind".into(), "Config".into());
        base.insert("preferences".into(), Value::Mapping(Mapping::new()));
    }
    for key in ["clusters", "users", "contexts"] {
        let new_entry = entry_named(list_mut(&mut add, key, "the cluster's kubeconfig")?, name)
            .cloned()
            .with_context(|| {
                format!("the cluster's kubeconfig has no {key} entry named {name:?}")
            })?;
        let list = list_mut(&mut base, key, "the existing kubeconfig")?;
        match list
            .iter_mut()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(slot) => *slot = new_entry,
            None => list.push(new_entry),
        }
    }
    if make_current
        || base
            .get("current-context")
            .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
    {
        base.insert("current-context".into(), Value::String(name.into()));
    }
    Ok(serde_yaml::to_string(&base)?)
}

/// Removes the cluster, user and context named `name`; unsets current-context if it was that.
pub fn remove(existing: &str, name: &str) -> anyhow::Result<String> {
    let mut base = parse(existing, "the existing kubeconfig")?;
    for key in ["clusters", "users", "contexts"] {
        if base.get(key).is_some_and(Value::is_sequence) {
            list_mut(&mut base, key, "the existing kubeconfig")?
                .retain(|e| e.get("name").and_then(Value::as_str) != Some(name));
        }
    }
    if base.get("current-context").and_then(Value::as_str) == Some(name) {
        base.insert("current-context".into(), Value::String(String::new()));
    }
    Ok(serde_yaml::to_string(&base)?)
}

/// The kubeconfig file to edit: the first path of `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_path() -> Option<std::path::PathBuf> {
    if let Some(k) = std::env::var_os("KUBECONFIG").filter(|k| !k.is_empty()) {
        return std::env::split_paths(&k).next();
    }
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".kube").join("config"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod:6443
    extensions:
    - name: x
      extension: {keep: me}
users:
- name: prod
  user: {token: abc}
contexts:
- name: prod
  context: {cluster: prod, user: prod, namespace: team}
current-context: prod
preferences: {colors: true}
"#;

    #[test]
    fn merge_keeps_others_and_remove_is_exact() {
        let add = build("minikind-a", "https://a-control-plane:6443", "PEM", "tok");
        let add = rewrite_server(&add, "https://127.0.0.1:40000").unwrap();
        let merged = merge(OTHER, &add, "minikind-a", true).unwrap();
        let v: Value = serde_yaml::from_str(&merged).unwrap();
        assert_eq!(v["current-context"].as_str(), Some("minikind-a"));
        assert_eq!(v["clusters"].as_sequence().unwrap().len(), 2);
        assert_eq!(v["preferences"]["colors"].as_bool(), Some(true));
        assert_eq!(
            v["clusters"][0]["cluster"]["extensions"][0]["extension"]["keep"].as_str(),
            Some("me")
        );
        assert_eq!(
            v["clusters"][1]["cluster"]["server"].as_str(),
            Some("https://127.0.0.1:40000")
        );
        // Merging again replaces, never duplicates.
        let again = merge(&merged, &add, "minikind-a", true).unwrap();
        let v2: Value = serde_yaml::from_str(&again).unwrap();
        assert_eq!(v2["users"].as_sequence().unwrap().len(), 2);
        let removed = remove(&again, "minikind-a").unwrap();
        let v3: Value = serde_yaml::from_str(&removed).unwrap();
        assert_eq!(v3["clusters"].as_sequence().unwrap().len(), 1);
        assert_eq!(
            v3["contexts"][0]["context"]["namespace"].as_str(),
            Some("team")
        );
        assert_eq!(v3["current-context"].as_str(), Some(""));
    }

    #[test]
    fn merge_into_empty_and_bad_input() {
        let add = build("minikind-b", "https://x:6443", "PEM", "t");
        let merged = merge("", &add, "minikind-b", false).unwrap();
        let v: Value = serde_yaml::from_str(&merged).unwrap();
        assert_eq!(v["current-context"].as_str(), Some("minikind-b"));
        let e = merge("- a\n- b\n", &add, "minikind-b", true).unwrap_err();
        assert!(e.to_string().contains("not a kubeconfig"));
        let e = merge("", &add, "other", true).unwrap_err();
        assert!(e.to_string().contains("no clusters entry named"));
    }
}

//! Reading manifests: multi-document YAML (or JSON) from a file or stdin, each document
//! checked for the fields the commands need, errors naming the document and the field.

use super::kinds::{self, Kind};
use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// One object of a manifest.
pub struct Doc {
    /// 1-based position in the stream (empty documents count too, as in kubectl's messages).
    pub index: usize,
    pub kind: &'static Kind,
    pub name: String,
    pub namespace: Option<String>,
    pub value: Value,
}

impl Doc {
    pub fn describe(&self) -> String {
        format!(
            "document {} ({} {:?})",
            self.index, self.kind.kind, self.name
        )
    }
}

/// Reads `path` (`-` = stdin).
pub fn read_source(path: &str) -> anyhow::Result<String> {
    if path == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("reading the manifest from stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
    }
}

/// Parses every document; `List` kinds are expanded into their items.
pub fn parse(text: &str, source: &str) -> anyhow::Result<Vec<Doc>> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let v = serde_yaml::Value::deserialize(de)
            .with_context(|| format!("{source}: document {index} is not valid YAML"))?;
        if v.is_null() {
            continue;
        }
        let v: Value = serde_json::to_value(&v)
            .with_context(|| format!("{source}: document {index} cannot be represented as JSON"))?;
        if !v.is_object() {
            bail!(
                "{source}: document {index} is not an object (a mapping with apiVersion, kind and metadata)"
            );
        }
        if v.get("kind").and_then(Value::as_str) == Some("List") {
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, item) in items.into_iter().enumerate() {
                out.push(
                    check(item, index, source)
                        .with_context(|| format!("{source}: document {index}, items[{j}]"))?,
                );
            }
            continue;
        }
        out.push(check(v, index, source)?);
    }
    Ok(out)
}

fn check(v: Value, index: usize, source: &str) -> anyhow::Result<Doc> {
    let field = |f: &str| v.get(f).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(api_version) = field("apiVersion") else {
        bail!("{source}: document {index}: missing field `apiVersion`");
    };
    let Some(kind_name) = field("kind") else {
        bail!("{source}: document {index}: missing field `kind`");
    };
    let Some(kind) = kinds::by_type(api_version, kind_name) else {
        bail!(
            "{source}: document {index}: unknown kind {kind_name:?} in apiVersion {api_version:?} (field `kind`); minikind serves: {}",
            kinds::supported_list()
        );
    };
    let meta = v.get("metadata");
    if meta.is_some_and(|m| !m.is_object()) {
        bail!("{source}: document {index}: field `metadata` must be a mapping");
    }
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        bail!("{source}: document {index} ({kind_name}): missing field `metadata.name`");
    }
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    Ok(Doc {
        index,
        kind,
        name,
        namespace,
        value: v,
    })
}

//! `get` output: the server's Table as kubectl prints it (columns of priority 0, all of them
//! with `-o wide`, a NAMESPACE column with `-A`), or the objects as YAML/JSON (managedFields
//! hidden, as kubectl hides them), or `kind/name` lines.

use super::kinds::Kind;
use anyhow::Context;
use serde_json::{Value, json};
use std::io::Write;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// GETs one object or a list with the given Accept header (kube's request builder makes the
/// URL and query; the header is the only thing typed APIs cannot set).
async fn fetch(
    client: &kube::Client,
    kind: &Kind,
    name: Option<&str>,
    ns: Option<&str>,
    selector: Option<&str>,
    accept: &str,
) -> anyhow::Result<Value> {
    let builder = kube::core::Request::new(kind.collection_path(ns));
    let mut req = match name {
        Some(n) => builder.get(n, &kube::api::GetParams::default()),
        None => {
            let mut lp = kube::api::ListParams::default();
            if let Some(sel) = selector {
                lp = lp.labels(sel);
            }
            builder.list(&lp)
        }
    }
    .context("building the request")?;
    req.headers_mut()
        .insert("accept", accept.parse().context("Accept header")?);
    let text = client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(s) => anyhow::anyhow!("{} ({}): {}", s.reason, s.code, s.message),
        other => anyhow::Error::new(other),
    })?;
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

fn strip(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    v
}

pub async fn get(
    client: &kube::Client,
    kind: &Kind,
    name: Option<&str>,
    ns: Option<&str>,
    selector: Option<&str>,
    output: Option<Output>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match output {
        Some(Output::Yaml) | Some(Output::Json) | Some(Output::Name) => {
            let v = fetch(client, kind, name, ns, selector, "application/json").await?;
            let doc = if name.is_some() {
                strip(v)
            } else {
                let items: Vec<Value> = v
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut i| {
                        // List items carry no type; kubectl adds it back.
                        i["apiVersion"] = json!(kind.api_version());
                        i["kind"] = json!(kind.kind);
                        strip(i)
                    })
                    .collect();
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
            };
            match output {
                Some(Output::Yaml) => write!(out, "{}", serde_yaml::to_string(&doc)?)?,
                Some(Output::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?,
                _ => {
                    let objs: Vec<&Value> = match doc.get("items").and_then(Value::as_array) {
                        Some(items) => items.iter().collect(),
                        None => vec![&doc],
                    };
                    for o in objs {
                        let n = o
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        writeln!(out, "{}/{n}", kind.display())?;
                    }
                }
            }
            Ok(())
        }
        _ => {
            let t = fetch(client, kind, name, ns, selector, TABLE_ACCEPT).await?;
            let wide = output == Some(Output::Wide);
            print_table(&t, kind, ns, wide, out)
        }
    }
}

fn print_table(
    t: &Value,
    kind: &Kind,
    ns: Option<&str>,
    wide: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let cols = t
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .context("the server did not answer with a Table")?;
    let rows = t
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        match ns {
            Some(ns) if kind.namespaced => eprintln!("No resources found in {ns} namespace."),
            _ => eprintln!("No resources found"),
        }
        return Ok(());
    }
    let keep: Vec<usize> = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| wide || c.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let all_ns = ns.is_none() && kind.namespaced;
    let mut grid: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = Vec::new();
    if all_ns {
        header.push("NAMESPACE".into());
    }
    for &i in &keep {
        header.push(
            cols[i]
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_uppercase(),
        );
    }
    grid.push(header);
    for r in &rows {
        let cells = r
            .get("cells")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut line = Vec::new();
        if all_ns {
            line.push(
                r.pointer("/object/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        for &i in &keep {
            line.push(match cells.get(i) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "<none>".into(),
                Some(other) => other.to_string(),
            });
        }
        grid.push(line);
    }
    let ncol = grid[0].len();
    let widths: Vec<usize> = (0..ncol)
        .map(|c| {
            grid.iter()
                .map(|l| l.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in grid {
        let mut s = String::new();
        for (c, cell) in line.iter().enumerate() {
            if c + 1 == ncol {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        writeln!(out, "{}", s.trim_end())?;
    }
    Ok(())
}

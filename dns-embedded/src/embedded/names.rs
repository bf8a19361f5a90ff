//! The names the embedded resolver answers, as Docker keeps them per network: container name,
//! network aliases, the 12-character short id and the hostname, stored lower-case, each also
//! reachable as `<name>.<network>`; and the reverse map for PTR (`<name>.<network>.`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// The names table as the node agent writes it (JSON, see [`NamesTable::load`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesTable {
    #[serde(default)]
    pub networks: Vec<NetworkNames>,
}

/// One user-defined network and the containers attached to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkNames {
    /// The network's name, e.g. `minikind-lab`.
    pub network: String,
    #[serde(default)]
    pub containers: Vec<ContainerNames>,
}

/// A container's endpoint on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerNames {
    /// Container name, e.g. `lab-worker`.
    pub name: String,
    /// Full or short container id; the first 12 characters are answered.
    #[serde(default)]
    pub id: Option<String>,
    /// The container's hostname when it differs from its name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Network aliases (`--network-alias`); several containers may share one.
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
}

/// Why a names file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("reading names file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("names file {path} is not a valid names table: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("names file {path}: {what}")]
    Invalid { path: String, what: String },
}

impl NamesTable {
    /// Reads a JSON names file:
    /// `{"networks":[{"network":"minikind-lab","containers":[{"name":"lab-worker","id":"…","aliases":["w"],"ipv4":"172.18.0.3"}]}]}`
    pub fn load(path: &Path) -> Result<Self, NamesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| NamesError::Read {
            path: shown.clone(),
            source,
        })?;
        let table: NamesTable =
            serde_json::from_str(&text).map_err(|source| NamesError::Parse {
                path: shown.clone(),
                source,
            })?;
        table
            .validate()
            .map_err(|what| NamesError::Invalid { path: shown, what })?;
        Ok(table)
    }

    /// Empty names are the one thing the index cannot hold meaningfully.
    fn validate(&self) -> Result<(), String> {
        for (n, net) in self.networks.iter().enumerate() {
            if net.network.trim().is_empty() {
                return Err(format!("networks[{n}].network is empty"));
            }
            for (c, container) in net.containers.iter().enumerate() {
                if container.name.trim().is_empty() {
                    return Err(format!(
                        "networks[{n}] ({}) containers[{c}].name is empty",
                        net.network
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a name lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameLookup {
    /// Not a local name: forward it.
    Unknown,
    /// A local name, with the addresses it has (either list may be empty: NODATA).
    Found {
        v4: Vec<Ipv4Addr>,
        v6: Vec<Ipv6Addr>,
    },
}

/// The lookup structure built from a [`NamesTable`].
#[derive(Debug, Default)]
pub struct NameIndex {
    by_name: HashMap<String, (Vec<Ipv4Addr>, Vec<Ipv6Addr>)>,
    by_ip: HashMap<IpAddr, String>,
}

impl NameIndex {
    pub fn build(table: &NamesTable) -> Self {
        let mut index = NameIndex::default();
        for net in &table.networks {
            let network = net.network.to_ascii_lowercase();
            for c in &net.containers {
                let name = c.name.trim_start_matches('/').to_ascii_lowercase();
                let mut keys = vec![name.clone()];
                if let Some(id) = &c.id {
                    keys.push(id.chars().take(12).collect::<String>().to_ascii_lowercase());
                }
                if let Some(host) = &c.hostname {
                    keys.push(host.to_ascii_lowercase());
                }
                keys.extend(c.aliases.iter().map(|a| a.to_ascii_lowercase()));
                keys.sort();
                keys.dedup();
                for key in keys.iter().filter(|k| !k.is_empty()) {
                    for full in [key.clone(), format!("{key}.{network}")] {
                        let entry = index.by_name.entry(full).or_default();
                        if let Some(v4) = c.ipv4
                            && !entry.0.contains(&v4)
                        {
                            entry.0.push(v4);
                        }
                        if let Some(v6) = c.ipv6
                            && !entry.1.contains(&v6)
                        {
                            entry.1.push(v6);
                        }
                    }
                }
                let ptr = format!("{name}.{network}.");
                for ip in c
                    .ipv4
                    .map(IpAddr::V4)
                    .into_iter()
                    .chain(c.ipv6.map(IpAddr::V6))
                {
                    // The first container listed with an address owns its PTR.
                    index.by_ip.entry(ip).or_insert_with(|| ptr.clone());
                }
            }
        }
        index
    }

    /// Looks a query name up (any case, trailing dot or not).
    pub fn lookup(&self, qname: &str) -> NameLookup {
        let key = qname.trim_end_matches('.').to_ascii_lowercase();
        match self.by_name.get(&key) {
            Some((v4, v6)) => NameLookup::Found {
                v4: v4.clone(),
                v6: v6.clone(),
            },
            None => NameLookup::Unknown,
        }
    }

    /// The PTR target for a container address, `<name>.<network>.`.
    pub fn reverse(&self, ip: IpAddr) -> Option<&str> {
        self.by_ip.get(&ip).map(String::as_str)
    }
}

/// A names table shared between the running resolver and whoever updates it (the node agent,
/// or the CLI's file watcher). Swaps are atomic: a query sees the old or the new table.
#[derive(Clone, Debug, Default)]
pub struct NamesHandle {
    inner: Arc<RwLock<Arc<NameIndex>>>,
}

impl NamesHandle {
    pub fn new(table: &NamesTable) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(NameIndex::build(table)))),
        }
    }

    /// Replaces the whole table.
    pub fn replace(&self, table: &NamesTable) {
        let index = Arc::new(NameIndex::build(table));
        match self.inner.write() {
            Ok(mut guard) => *guard = index,
            Err(poisoned) => *poisoned.into_inner() = index,
        }
    }

    /// The current index (cheap: an `Arc` clone).
    pub fn current(&self) -> Arc<NameIndex> {
        match self.inner.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn lab_table() -> NamesTable {
        NamesTable {
            networks: vec![NetworkNames {
                network: "minikind-lab".into(),
                containers: vec![
                    ContainerNames {
                        name: "lab-control-plane".into(),
                        id: Some("0123456789abcdef0123456789abcdef".into()),
                        hostname: Some("cp-host".into()),
                        aliases: vec!["Web".into()],
                        ipv4: Some("172.18.0.2".parse().unwrap()),
                        ipv6: Some("fc00::2".parse().unwrap()),
                    },
                    ContainerNames {
                        name: "lab-worker".into(),
                        aliases: vec!["web".into()],
                        ipv4: Some("172.18.0.3".parse().unwrap()),
                        ..Default::default()
                    },
                ],
            }],
        }
    }

    #[test]
    fn every_kind_of_name_resolves_case_insensitively() {
        let index = NameIndex::build(&lab_table());
        let v4 = |name: &str| match index.lookup(name) {
            NameLookup::Found { v4, .. } => v4,
            NameLookup::Unknown => panic!("{name} should be local"),
        };
        let cp: Ipv4Addr = "172.18.0.2".parse().unwrap();
        assert_eq!(v4("lab-control-plane"), vec![cp]);
        assert_eq!(v4("LAB-Control-Plane."), vec![cp]);
        assert_eq!(v4("0123456789ab"), vec![cp], "12-char short id");
        assert_eq!(v4("cp-host"), vec![cp], "hostname");
        assert_eq!(
            v4("lab-control-plane.minikind-lab"),
            vec![cp],
            "name.network"
        );
        assert_eq!(v4("web").len(), 2, "a shared alias has every address");
        assert_eq!(
            index.lookup("0123456789abc"),
            NameLookup::Unknown,
            "only 12 chars"
        );
        assert_eq!(index.lookup("example.test"), NameLookup::Unknown);
    }

    #[test]
    fn missing_family_is_found_with_an_empty_list() {
        let index = NameIndex::build(&lab_table());
        assert_eq!(
            index.lookup("lab-worker"),
            NameLookup::Found {
                v4: vec!["172.18.0.3".parse().unwrap()],
                v6: vec![]
            }
        );
    }

    #[test]
    fn reverse_names_are_name_dot_network() {
        let index = NameIndex::build(&lab_table());
        assert_eq!(
            index.reverse("172.18.0.3".parse().unwrap()),
            Some("lab-worker.minikind-lab.")
        );
        assert_eq!(
            index.reverse("fc00::2".parse().unwrap()),
            Some("lab-control-plane.minikind-lab.")
        );
        assert_eq!(index.reverse("172.18.0.99".parse().unwrap()), None);
    }

    #[test]
    fn handle_swaps_tables() {
        let handle = NamesHandle::new(&NamesTable::default());
        assert_eq!(handle.current().lookup("lab-worker"), NameLookup::Unknown);
        handle.replace(&lab_table());
        assert!(matches!(
            handle.current().lookup("lab-worker"),
            NameLookup::Found { .. }
        ));
    }

    #[test]
    fn names_file_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.json");
        std::fs::write(&path, serde_json::to_string(&lab_table()).unwrap()).unwrap();
        assert_eq!(NamesTable::load(&path).unwrap(), lab_table());

        std::fs::write(
            &path,
            r#"{"networks":[{"network":"n","containers":[{"name":"a","ipv4":"300.1.1.1"}]}]}"#,
        )
        .unwrap();
        let err = NamesTable::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("names.json") && err.contains("invalid"),
            "{err}"
        );

        std::fs::write(
            &path,
            r#"{"networks":[{"network":"n","containers":[{"name":"a","ip":"1.1.1.1"}]}]}"#,
        )
        .unwrap();
        let err = NamesTable::load(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `ip`"), "{err}");

        std::fs::write(
            &path,
            r#"{"networks":[{"network":"n","containers":[{"name":""}]}]}"#,
        )
        .unwrap();
        let err = NamesTable::load(&path).unwrap_err().to_string();
        assert!(err.contains("containers[0].name is empty"), "{err}");

        let err = NamesTable::load(&dir.path().join("absent.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.json"), "{err}");
    }
}

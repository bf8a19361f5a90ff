//! The lab upstream's zone: loaded from an RFC 1035 master file (hickory's parser), with a
//! built-in default `example.test` whose addresses are all from documentation ranges, so
//! nothing a lab resolves can point off the machine.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;

/// The default zone, in master-file form. Every address is from 192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32.
pub const DEFAULT_ZONE: &str = r#"; minikind lab upstream: the hermetic zone tests and demos resolve.
$ORIGIN example.test.
$TTL 300
@           IN SOA   ns1.example.test. hostmaster.example.test. (
                     2026010101 ; serial
                     7200       ; refresh
                     1800       ; retry
                     86400      ; expire
                     60 )       ; negative-answer TTL
            IN NS    ns1.example.test.
            IN A     192.0.2.1
            IN MX    10 mail.example.test.
            IN TXT   "v=spf1 -all"
ns1         IN A     192.0.2.53
www         IN A     192.0.2.10
www         IN AAAA  2001:db8::10
alias       IN CNAME www.example.test.
chain       IN CNAME alias.example.test.
mail        IN A     192.0.2.25
v4only      IN A     192.0.2.4
v6only      IN AAAA  2001:db8::6
txt         IN TXT   "minikind lab upstream" "served from example.test"
_http._tcp  IN SRV   0 50 80 www.example.test.
_http._tcp  IN SRV   10 50 8080 mail.example.test.
*.wild      IN A     192.0.2.99
many        IN A     198.51.100.1
many        IN A     198.51.100.2
many        IN A     198.51.100.3
many        IN A     198.51.100.4
many        IN A     198.51.100.5
many        IN A     198.51.100.6
many        IN A     198.51.100.7
many        IN A     198.51.100.8
many        IN A     198.51.100.9
many        IN A     198.51.100.10
many        IN A     198.51.100.11
many        IN A     198.51.100.12
"#;

/// How many A records `big.example.test` carries: enough that the answer exceeds 512 bytes,
/// so UDP clients without EDNS get TC and must retry over TCP.
pub const BIG_RECORDS: u8 = 60;

/// The built-in zone's full master-file text: [`DEFAULT_ZONE`] plus `big.example.test`.
pub fn default_zone_text() -> String {
    let mut text = DEFAULT_ZONE.to_string();
    for i in 1..=BIG_RECORDS {
        text.push_str(&format!("big         IN A     203.0.113.{i}\n"));
    }
    text
}

/// Why a zone could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    #[error("reading zone file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing zone {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("zone {what} has no SOA record at its origin {origin}")]
    NoSoa { what: String, origin: String },
}

/// An authoritative zone held in memory, names compared case-insensitively.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    soa: Record,
    nodes: HashMap<Name, Vec<Record>>,
    /// Every owner name and each of its ancestors inside the zone: a name in here that has no
    /// records is an empty non-terminal (NODATA, not NXDOMAIN).
    existing: HashSet<Name>,
}

impl Zone {
    /// The built-in `example.test` zone (plus `big.example.test`, generated).
    pub fn default_zone() -> Self {
        Self::parse(&default_zone_text(), "built-in example.test", None)
            .expect("the built-in zone is valid master-file text")
    }

    /// Loads a master file from disk.
    pub fn load(path: &Path) -> Result<Self, ZoneError> {
        Self::load_with_origin(path, None)
    }

    /// Loads a master file; `origin` stands in for a missing `$ORIGIN`.
    pub fn load_with_origin(path: &Path, origin: Option<Name>) -> Result<Self, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(|source| ZoneError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_text(&text, &path.display().to_string(), Some(path), origin)
    }

    /// Parses master-file text; `what` names it in errors. Without `$ORIGIN`, names must be
    /// absolute or `origin` given.
    pub fn parse(text: &str, what: &str, origin: Option<Name>) -> Result<Self, ZoneError> {
        Self::from_text(text, what, None, origin)
    }

    /// Parses master-file text; `path` (when the text came from a file) resolves relative
    /// `$INCLUDE`s, `origin` stands in for a missing `$ORIGIN`.
    pub fn from_text(
        text: &str,
        what: &str,
        path: Option<&Path>,
        origin: Option<Name>,
    ) -> Result<Self, ZoneError> {
        let parser = Parser::new(text, path.map(Path::to_path_buf), origin);
        let (origin, sets) = parser.parse().map_err(|e| ZoneError::Parse {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        let origin = origin.to_lowercase();
        let mut nodes: HashMap<Name, Vec<Record>> = HashMap::new();
        let mut soa = None;
        for (_, set) in sets {
            for record in set.records_without_rrsigs() {
                let owner = record.name.to_lowercase();
                if record.record_type() == RecordType::SOA && owner == origin {
                    soa = Some(record.clone());
                }
                nodes.entry(owner).or_default().push(record.clone());
            }
        }
        let soa = soa.ok_or_else(|| ZoneError::NoSoa {
            what: what.to_string(),
            origin: origin.to_ascii(),
        })?;
        let mut existing = HashSet::new();
        for owner in nodes.keys() {
            let mut name = owner.clone();
            while origin.zone_of(&name) && existing.insert(name.clone()) && name != origin {
                name = name.base_name();
            }
        }
        Ok(Self {
            origin,
            soa,
            nodes,
            existing,
        })
    }

    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// True when `name` is the origin or below it.
    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    /// The SOA record as it goes into negative answers: its TTL is the smaller of the record's
    /// TTL and the SOA minimum (RFC 2308).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &soa.data {
            soa.ttl = soa.ttl.min(data.minimum);
        }
        soa
    }

    /// The SOA the lab's stand-in root zone has (this zone's servers, at `.`), for NXDOMAIN
    /// answers to names outside the zone: what a recursive resolver relays from the root.
    pub fn root_soa(&self) -> Record {
        let mut soa = self.negative_soa();
        soa.name = Name::root();
        soa
    }

    /// The records owned by exactly `name`.
    pub fn records(&self, name: &Name) -> Option<&[Record]> {
        self.nodes.get(&name.to_lowercase()).map(Vec::as_slice)
    }

    /// True when `name` exists in the zone, with records or as an empty non-terminal.
    pub fn exists(&self, name: &Name) -> bool {
        self.existing.contains(&name.to_lowercase())
    }

    /// Every record, for listing.
    pub fn all_records(&self) -> impl Iterator<Item = &Record> {
        self.nodes.values().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn documentation(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                matches!(
                    (o[0], o[1], o[2]),
                    (192, 0, 2) | (198, 51, 100) | (203, 0, 113)
                )
            }
            IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
        }
    }

    #[test]
    fn default_zone_has_the_promised_names_and_only_documentation_addresses() {
        let zone = Zone::default_zone();
        assert_eq!(zone.origin().to_ascii(), "example.test.");
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let count = |s: &str, t: RecordType| {
            zone.records(&name(s))
                .unwrap_or_default()
                .iter()
                .filter(|r| r.record_type() == t)
                .count()
        };
        assert_eq!(count("example.test.", RecordType::SOA), 1);
        assert_eq!(count("example.test.", RecordType::NS), 1);
        assert_eq!(count("example.test.", RecordType::A), 1);
        assert_eq!(count("example.test.", RecordType::MX), 1);
        assert_eq!(count("example.test.", RecordType::TXT), 1);
        assert_eq!(count("www.example.test.", RecordType::A), 1);
        assert_eq!(count("www.example.test.", RecordType::AAAA), 1);
        assert_eq!(count("alias.example.test.", RecordType::CNAME), 1);
        assert!(count("many.example.test.", RecordType::A) >= 8);
        assert_eq!(
            count("big.example.test.", RecordType::A),
            usize::from(BIG_RECORDS)
        );
        assert_eq!(count("_http._tcp.example.test.", RecordType::SRV), 2);
        let mut addresses = 0;
        for record in zone.all_records() {
            if let Some(ip) = record.data.ip_addr() {
                addresses += 1;
                assert!(
                    documentation(ip),
                    "{ip} in {record} is not a documentation address"
                );
            }
        }
        assert!(addresses > 70);
    }

    #[test]
    fn empty_non_terminals_exist_but_have_no_records() {
        let zone = Zone::default_zone();
        let tcp = Name::from_ascii("_tcp.example.test.").unwrap();
        assert!(zone.exists(&tcp));
        assert!(zone.records(&tcp).is_none());
        assert!(zone.exists(&Name::from_ascii("WWW.Example.Test.").unwrap()));
        assert!(!zone.exists(&Name::from_ascii("nope.example.test.").unwrap()));
    }

    #[test]
    fn zone_file_from_disk_with_relative_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.zone");
        std::fs::write(
            &path,
            "$ORIGIN lab.test.\n$TTL 60\n@ IN SOA ns hostmaster 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.7\nhost IN AAAA 2001:db8::7\n",
        )
        .unwrap();
        let zone = Zone::load(&path).unwrap();
        assert_eq!(zone.origin().to_ascii(), "lab.test.");
        let soa = zone.negative_soa();
        assert_eq!(soa.ttl, 5, "negative TTL is min(ttl, minimum)");
        assert!(
            zone.records(&Name::from_ascii("host.lab.test.").unwrap())
                .is_some()
        );
    }

    #[test]
    fn origin_can_be_given_for_a_file_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.zone");
        std::fs::write(
            &path,
            "$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\nhost IN A 192.0.2.8\n",
        )
        .unwrap();
        let origin = Name::from_ascii("plain.test.").unwrap();
        let zone = Zone::load_with_origin(&path, Some(origin)).unwrap();
        assert_eq!(zone.origin().to_ascii(), "plain.test.");
        assert!(
            zone.records(&Name::from_ascii("host.plain.test.").unwrap())
                .is_some()
        );
    }

    #[test]
    fn bad_zone_files_are_clear_errors() {
        let missing = Zone::load(Path::new("/nonexistent/zone")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/zone"),
            "{missing}"
        );
        let no_soa = Zone::parse(
            "$ORIGIN x.test.\n$TTL 60\nwww IN A 192.0.2.1\n",
            "test",
            None,
        )
        .unwrap_err();
        assert!(matches!(no_soa, ZoneError::NoSoa { .. }), "{no_soa}");
        let garbage = Zone::parse(
            "$ORIGIN x.test.\n$TTL 60\n@ IN SOA ns hm 1 2 3 4 5\nwww IN A not-an-ip\n",
            "test",
            None,
        )
        .unwrap_err();
        assert!(matches!(garbage, ZoneError::Parse { .. }), "{garbage}");
    }
}

//! How a DNS message travels, UDP or TCP: a module of its own because both the resolver
//! client (which sends) and the attempt lines (which record what was sent) name it.

/// How a message travels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// Lower case, as iptables rules (`-p udp`), conntrack and JSON spell it.
    pub fn as_proto(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

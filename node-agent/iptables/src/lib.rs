//! The one place a node's iptables is chosen and run: which back end (legacy or nft, KIND's
//! rule), the programs of that back end, running `iptables-save`/`iptables-restore` (and
//! `iptables -S`), and reading `iptables-save` text.
//!
//! Every component that touches a node's rules — the network magic, kube-proxy, the kubelet's
//! masquerade chain, the builtin resolver's Docker DNS rules (`minikind-dns-embedded`) — runs
//! the programs through [`save`], [`list`] and [`restore`] here, with the [`Commands`] of one
//! [`Flavour`], so the back-end choice cannot drift between them.
//!
//! This crate knows programs and text, not rules: it must not decide what a chain holds.
//! Which chains and rules to write stays with the component that owns them.

pub mod dump;
mod mode;
mod run;

pub use mode::{Flavour, Selection, choose, select};
pub use run::{Commands, RunError, flavour_of, list, restore, save};

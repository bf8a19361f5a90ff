//! A faithful reimplementation of Docker's embedded DNS resolver (127.0.0.11), and the hermetic
//! lab upstream that clusters use instead of the host's DNS in tests and demos.
//!
//! - [`cli_main`]: `minikind dns-embedded --names FILE [--servers IP[:PORT],…]
//!   [--servers-from RESOLV_CONF] [--netns PATH] [--listen-ip 127.0.0.11] [--iptables ""|legacy|nft]
//!   [--no-iptables] [--ndots-guard] [--ready-file PATH]`. The names file is JSON
//!   ([`NamesTable`]) and is re-read when it changes.
//! - [`EmbeddedResolver`]: the same as a library: start it in a namespace, read its ports,
//!   [`EmbeddedResolver::apply_rules`], update its names through [`NamesHandle::replace`].
//! - [`lab_upstream::cli_main`]: `minikind lab-upstream [--listen 0.0.0.0:53] [--zone FILE]
//!   [--origin NAME] [--record LINE]… [--ready-file PATH] [--print-zone]`;
//!   [`lab_upstream::start`]/[`lab_upstream::serve`] for tests.
//! - Both log every query on stdout in CoreDNS's `log` format ([`querylog`]).

pub mod embedded;
pub mod exchange;
pub mod lab_upstream;
pub mod querylog;
pub mod signal;
pub mod transport;
pub mod wire;

pub use embedded::cli::cli_main;
pub use embedded::names::{ContainerNames, NamesHandle, NamesTable, NetworkNames};
pub use embedded::rules::DockerDnsRules;
pub use embedded::{EmbeddedConfig, EmbeddedError, EmbeddedResolver};

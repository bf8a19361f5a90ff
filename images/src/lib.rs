//! Builds the node image with no registry: a rootfs tar made on the host, imported into Docker,
//! tagged by a hash of its content.
//!
//! The image holds the very `minikind` executable that is running (so the CLI and the node agent
//! never disagree on versions), the host's iptables suite with every shared library and xtables
//! extension it loads, busybox when the host has one, and a handful of `/etc` files. Nothing is
//! ever pulled. Node images no container uses and that are not the running executable's are
//! removed again ([`prune`]).

pub mod elf_deps;
pub mod import;
pub mod lock;
pub mod node_rootfs;
pub mod preloaded;
pub mod prune;
pub mod rootfs;

pub use import::{ImageError, NodeImage, ensure_node_image};
pub use node_rootfs::{NodeRootfsError, build_node_rootfs};
pub use prune::{Prune, remove_unused_node_images};

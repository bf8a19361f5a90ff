//! Helpers the plugins share (as CoreDNS's plugin/pkg): replies kept on the wire and patched
//! per asker ([`wire`]), and the randomly evicting map both the cache and the `kubernetes`
//! plugin's kept answers live in ([`slots`]).

pub mod slots;
pub mod wire;

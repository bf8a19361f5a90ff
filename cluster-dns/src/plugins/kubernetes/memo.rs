//! Answers the plugin has already worked out, kept on the wire until the data changes: a query
//! the cache no longer holds (more names than its capacity) is then answered by a copy with the
//! asker's id and flags, instead of parsing, looking up and encoding again. Every change to
//! the store starts a new generation, and an answer from an older one is never used.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::pkg::slots::Slots;
use crate::pkg::wire::WireEntry;

const SHARDS: usize = 64;
/// Bounds the memory a stream of distinct names can take (about 150 bytes an answer).
const CAPACITY: usize = 32 * 1024;

struct Slot {
    generation: u64,
    wire: Arc<WireEntry>,
}

pub struct Memo {
    shards: Vec<Mutex<Slots<Slot>>>,
    hasher: RandomState,
}

impl Default for Memo {
    fn default() -> Self {
        Memo {
            shards: (0..SHARDS).map(|_| Mutex::new(Slots::default())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Memo {
    /// Keyed by the name exactly as asked (case included): an answer compresses names against
    /// the question's spelling, so only the same spelling gives the same bytes.
    pub fn key(&self, qname_wire: &[u8], qtype: u16) -> u64 {
        let mut h = self.hasher.build_hasher();
        qname_wire.hash(&mut h);
        qtype.hash(&mut h);
        h.finish()
    }

    fn shard(&self, key: u64) -> &Mutex<Slots<Slot>> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// The answer for `key` if it was worked out in `generation`.
    pub fn get(&self, key: u64, generation: u64) -> Option<Arc<WireEntry>> {
        let shard = self.shard(key).lock().ok()?;
        let slot = shard.get(&key)?;
        (slot.generation == generation).then(|| slot.wire.clone())
    }

    pub fn put(&self, key: u64, generation: u64, wire: Arc<WireEntry>) {
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        if shard.len() >= CAPACITY / SHARDS && shard.get(&key).is_none() {
            // Outdated answers go first; then one at random.
            shard.retain(|s| s.generation == generation);
        }
        shard.insert(key, Slot { generation, wire }, CAPACITY / SHARDS);
    }
}

//! A bounded map from hashed keys whose eviction picks a victim uniformly at random, as CoreDNS's
//! cache does (Go randomizes map iteration). Taking "the first key" of a hash map instead is not
//! random: the entries in its lowest buckets are evicted over and over, so the names that hash
//! there miss on every query while the rest stay forever.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use rand::Rng;

/// Keys are already SipHash values: the map only spreads them (the low bits pick the shard, so
/// they are shifted out and the rest multiplied to fill both the bucket index and the tag).
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher;

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;
    fn build_hasher(&self) -> KeyHash {
        KeyHash(0)
    }
}

pub(crate) struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        (self.0 >> 6).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(crate) struct Slots<V> {
    /// key → (position in `keys`, value)
    map: HashMap<u64, (u32, V), KeyHasher>,
    keys: Vec<u64>,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            map: HashMap::with_hasher(KeyHasher),
            keys: Vec::new(),
        }
    }
}

impl<V> Slots<V> {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn get(&self, key: &u64) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        self.map.get_mut(key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &u64) -> Option<V> {
        let (pos, v) = self.map.remove(key)?;
        let pos = pos as usize;
        self.keys.swap_remove(pos);
        if let Some(moved) = self.keys.get(pos)
            && let Some(e) = self.map.get_mut(moved)
        {
            e.0 = pos as u32;
        }
        Some(v)
    }

    /// Inserts or replaces; when a new key finds `cap` entries, a random one makes room.
    /// Returns whether something was evicted.
    pub fn insert(&mut self, key: u64, v: V, cap: usize) -> bool {
        if let Some(e) = self.map.get_mut(&key) {
            e.1 = v;
            return false;
        }
        let mut evicted = false;
        if self.keys.len() >= cap.max(1) {
            let victim = self.keys[rand::rng().random_range(0..self.keys.len())];
            self.remove(&victim);
            evicted = true;
        }
        self.map.insert(key, (self.keys.len() as u32, v));
        self.keys.push(key);
        evicted
    }

    /// Keeps the entries `keep` approves of.
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let gone: Vec<u64> = self
            .keys
            .iter()
            .copied()
            .filter(|k| self.map.get(k).is_some_and(|(_, v)| !keep(v)))
            .collect();
        for k in gone {
            self.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_consistent() {
        let mut s = Slots::default();
        let mut evictions = 0;
        for k in 0..1000u64 {
            if s.insert(k.wrapping_mul(0x9e37_79b9_7f4a_7c15), k, 100) {
                evictions += 1;
            }
            assert!(s.len() <= 100);
        }
        assert_eq!(evictions, 900);
        for (i, k) in s.keys.iter().enumerate() {
            assert_eq!(s.map[k].0 as usize, i);
        }
        let first = s.keys[0];
        assert!(s.remove(&first).is_some());
        assert!(s.get(&first).is_none());
        for (i, k) in s.keys.iter().enumerate() {
            assert_eq!(s.map[k].0 as usize, i);
        }
        s.retain(|v| v % 2 == 0);
        assert!(s.keys.iter().all(|k| s.get(k).unwrap() % 2 == 0));
    }

    /// Cycling through more names than fit: every name keeps getting hits (with "first key"
    /// eviction some names missed on every pass).
    #[test]
    fn eviction_spreads_over_all_names() {
        let mut s = Slots::default();
        let keys: Vec<u64> = (0..120u64)
            .map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let mut hits = vec![0u32; keys.len()];
        for _ in 0..200 {
            for (i, k) in keys.iter().enumerate() {
                if s.get(k).is_some() {
                    hits[i] += 1;
                } else {
                    s.insert(*k, (), 100);
                }
            }
        }
        assert!(hits.iter().all(|h| *h > 0), "{hits:?}");
    }
}

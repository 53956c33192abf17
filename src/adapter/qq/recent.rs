//! A bounded memory of recent ids (messages, uploads): the newest ones kept, the oldest
//! forgotten.
//!
//! An id is kept as its 64-bit key ([`key`]), not as text. The memory holds thousands of ids
//! and every event adds one and ages one out; kept as text, each was an allocation and each
//! lookup a pointer to follow into memory long out of cache, which cost the gateway about a
//! tenth of its time per event. Two ids meet on one key with odds of about 2^-64 per pair
//! (seeded per process, so aiming for it takes knowing the seed).

use std::collections::VecDeque;

use foldhash::HashMap;

/// The key an id is remembered by.
pub fn key(id: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::event::id_hasher();
    h.write(id.as_bytes());
    h.finish()
}

/// Values by id, at most `capacity` of them; the first-seen is forgotten first.
#[derive(Debug)]
pub struct Recent<V> {
    by_key: HashMap<u64, V>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl<V> Recent<V> {
    /// An empty memory of at most `capacity` ids.
    pub fn new(capacity: usize) -> Recent<V> {
        Recent { by_key: HashMap::default(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// The value of `id`, if remembered.
    pub fn get(&self, id: &str) -> Option<&V> {
        self.get_key(key(id))
    }

    /// The value of the id whose [`key`] is `key`, if remembered.
    pub fn get_key(&self, key: u64) -> Option<&V> {
        self.by_key.get(&key)
    }

    /// The id's key and value; a new id is remembered with `value()`.
    pub fn get_or_insert(&mut self, id: &str, value: impl FnOnce() -> V) -> (u64, &mut V) {
        self.get_or_insert_with(id, value, |_, _| {})
    }

    /// [`Recent::get_or_insert`], handing `forgotten` the key and value of each id it forgets
    /// to make room.
    pub fn get_or_insert_with(
        &mut self,
        id: &str,
        value: impl FnOnce() -> V,
        mut forgotten: impl FnMut(u64, V),
    ) -> (u64, &mut V) {
        let key = key(id);
        if !self.by_key.contains_key(&key) {
            while self.order.len() >= self.capacity {
                let Some(old) = self.order.pop_front() else { break };
                if let Some(value) = self.by_key.remove(&old) {
                    forgotten(old, value);
                }
            }
            self.order.push_back(key);
        }
        (key, self.by_key.entry(key).or_insert_with(value))
    }

    /// Remembers `value` for `id`, replacing a remembered one (which keeps its age).
    pub fn insert(&mut self, id: &str, value: V) {
        let mut value = Some(value);
        let (_, slot) = self.get_or_insert(id, || value.take().expect("taken once"));
        if let Some(value) = value {
            *slot = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_ids_are_forgotten_first_and_a_known_id_keeps_its_age() {
        let mut recent = Recent::new(2);
        recent.insert("a", 1);
        recent.insert("b", 2);
        recent.insert("a", 10);
        assert_eq!(recent.get("a"), Some(&10), "replaced in place");
        recent.insert("c", 3);
        assert_eq!(recent.get("a"), None, "a was first seen, so it goes first");
        assert_eq!((recent.get("b"), recent.get("c")), (Some(&2), Some(&3)));
        let (b, value) = recent.get_or_insert("b", || 99);
        assert_eq!((b, *value), (key("b"), 2));
        *value += 1;
        assert_eq!(recent.get_key(b), Some(&3));
        let mut forgotten = Vec::new();
        recent.get_or_insert_with("d", || 4, |key, value| forgotten.push((key, value)));
        assert_eq!(forgotten, [(key("b"), 3)], "what made room is handed back");
        assert_eq!(recent.by_key.len(), recent.order.len());
        assert_ne!(key("b"), key("c"));
    }
}

//! A bounded memory of recent ids (messages, uploads): the newest ones kept, the oldest
//! forgotten, each id stored once and shared by the map and the queue that ages it out.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::Arc;

/// Values by id, at most `capacity` of them; the first-seen is forgotten first.
#[derive(Debug)]
pub struct Recent<V> {
    by_id: HashMap<Arc<str>, V>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl<V> Recent<V> {
    /// An empty memory of at most `capacity` ids.
    pub fn new(capacity: usize) -> Recent<V> {
        Recent { by_id: HashMap::default(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// The value of `id`, if remembered.
    pub fn get(&self, id: &str) -> Option<&V> {
        self.by_id.get(id)
    }

    /// The remembered id (shared) and its value; a new id is remembered with `value()`.
    pub fn get_or_insert(&mut self, id: &str, value: impl FnOnce() -> V) -> (Arc<str>, &mut V) {
        self.get_or_insert_with(id, value, |_, _| {})
    }

    /// [`Recent::get_or_insert`], handing `forgotten` each id and value it forgets to make room.
    pub fn get_or_insert_with(
        &mut self,
        id: &str,
        value: impl FnOnce() -> V,
        mut forgotten: impl FnMut(Arc<str>, V),
    ) -> (Arc<str>, &mut V) {
        let shared = match self.by_id.get_key_value(id) {
            Some((shared, _)) => shared.clone(),
            None => {
                while self.order.len() >= self.capacity {
                    let Some(old) = self.order.pop_front() else { break };
                    if let Some(value) = self.by_id.remove(&old) {
                        forgotten(old, value);
                    }
                }
                let shared: Arc<str> = id.into();
                self.by_id.insert(shared.clone(), value());
                self.order.push_back(shared.clone());
                shared
            }
        };
        let value = self.by_id.get_mut(id).expect("remembered just above");
        (shared, value)
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
        let (id, value) = recent.get_or_insert("b", || 99);
        assert_eq!((&*id, *value), ("b", 2));
        *value += 1;
        assert_eq!(recent.get("b"), Some(&3));
        let mut forgotten = Vec::new();
        recent.get_or_insert_with("d", || 4, |id, value| forgotten.push((id.to_string(), value)));
        assert_eq!(forgotten, [("b".to_owned(), 3)], "what made room is handed back");
        assert_eq!(recent.by_id.len(), recent.order.len());
    }
}

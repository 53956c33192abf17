//! Rate limits and cooldowns kept in the kv table, so they survive reloads and restarts: a key
//! holds the times (by the store's clock) of the uses within its window, as a JSON array.

use rusqlite::{OptionalExtension, params};

use super::{StorageError, Store};

/// Uses one key may allow per window at most (each is remembered until it ages out).
pub const MAX_USES: usize = 10_000;

impl Store {
    /// Whether one more use of `key` fits in `count` uses per `window_ms`; when it does, the use
    /// is recorded (checked and recorded in one transaction).
    pub fn allow(&self, ns: &str, key: &str, count: usize, window_ms: i64) -> Result<bool, StorageError> {
        let now = self.now();
        self.write(|conn| {
            let tx = conn.savepoint().map_err(|e| self.query_error(e))?;
            let held: Option<(String, Option<i64>)> = tx
                .query_row("SELECT value, expires_at FROM kv WHERE ns = ?1 AND key = ?2", params![ns, key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(|e| self.query_error(e))?;
            let mut uses: Vec<i64> = match held {
                Some((text, expires)) if expires.is_none_or(|e| e > now) => {
                    serde_json::from_str(&text).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            uses.retain(|t| *t > now - window_ms && *t <= now);
            if uses.len() >= count.min(MAX_USES) {
                return Ok(false);
            }
            uses.push(now);
            let text = serde_json::to_string(&uses).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "INSERT INTO kv (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                params![ns, key, text, now.saturating_add(window_ms)],
            )
            .map_err(|e| self.query_error(e))?;
            tx.commit().map_err(|e| self.query_error(e))?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    #[test]
    fn a_window_allows_its_count_then_refuses_until_uses_age_out() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock = now.clone();
        let store = Store::open(&dir.path().join("t.db"), Arc::new(move || clock.load(Ordering::SeqCst))).unwrap();
        let allow = || store.allow("s", "k", 2, 1000).unwrap();
        assert!(allow());
        now.fetch_add(100, Ordering::SeqCst);
        assert!(allow());
        assert!(!allow(), "a third use within the window");
        now.fetch_add(500, Ordering::SeqCst);
        assert!(!allow());
        now.fetch_add(401, Ordering::SeqCst);
        assert!(allow(), "the first use aged out");
        assert!(!allow());
        // Kept on disk: a new store on the same file sees the uses.
        drop(store);
        let clock = now.clone();
        let again = Store::open(&dir.path().join("t.db"), Arc::new(move || clock.load(Ordering::SeqCst))).unwrap();
        assert!(!again.allow("s", "k", 2, 1000).unwrap());
        assert!(again.allow("s", "other", 2, 1000).unwrap());
    }
}

//! The key-value table: values are JSON text in a namespace, optionally expiring.
//! An expired key is invisible at once (every read filters on `expires_at`) and purged later.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StorageError, Store};

/// The SQL condition for a live row, given `now` as parameter `:now`. A macro so each
/// statement is one literal (`concat!`) that the statement cache finds without formatting.
macro_rules! live {
    () => {
        "(expires_at IS NULL OR expires_at > :now)"
    };
}

/// Stores a value and its expiry under a key, replacing any row there.
const UPSERT: &str = "INSERT INTO kv (ns, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";

/// The SQL condition for an expired row, given `now` as parameter `:now`.
macro_rules! expired {
    () => {
        "(expires_at IS NOT NULL AND expires_at <= :now)"
    };
}

/// `kv::incr` as one statement (no transaction to begin and commit, one step), for the common
/// case: the stored value is an integer written the way we write one and the sum fits, or the
/// key is absent or expired. Otherwise no row comes back, nothing is written, and the checked
/// path decides (non-integers, other spellings of a number, saturation).
const INCR: &str = concat!(
    "INSERT INTO kv (ns, key, value, expires_at) VALUES (:ns, :key, :by, NULL)
     ON CONFLICT (ns, key) DO UPDATE SET
        value = CASE WHEN ",
    expired!(),
    " THEN :by ELSE CAST(value AS INTEGER) + :by END,
        expires_at = CASE WHEN ",
    expired!(),
    " THEN NULL ELSE expires_at END
     WHERE ",
    expired!(),
    " OR (CAST(CAST(value AS INTEGER) AS TEXT) = value AND CASE WHEN :by >= 0
            THEN CAST(value AS INTEGER) <= 9223372036854775807 - :by
            ELSE CAST(value AS INTEGER) >= (-9223372036854775807 - 1) - :by END)
     RETURNING CAST(value AS INTEGER)"
);

/// Removes a key, live or expired.
const DELETE_ANY: &str = "DELETE FROM kv WHERE ns = ?1 AND key = ?2";

/// A live value.
const SELECT: &str = concat!("SELECT value FROM kv WHERE ns = :ns AND key = :key AND ", live!());

/// A live value and its expiry.
const SELECT_WITH_EXPIRY: &str =
    concat!("SELECT value, expires_at FROM kv WHERE ns = :ns AND key = :key AND ", live!());

impl Store {
    /// The JSON text stored under `key`, if present and not expired.
    pub fn kv_get(&self, ns: &str, key: &str) -> Result<Option<String>, StorageError> {
        let now = self.now();
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(SELECT).map_err(|e| self.query_error(e))?;
            stmt.query_row(rusqlite::named_params! {":ns": ns, ":key": key, ":now": now}, |r| r.get(0))
                .optional()
                .map_err(|e| self.query_error(e))
        })
    }

    /// Stores `json` under `key`, expiring after `ttl_ms` when given.
    pub fn kv_set(&self, ns: &str, key: &str, json: &str, ttl_ms: Option<i64>) -> Result<(), StorageError> {
        let expires = ttl_ms.map(|t| self.now().saturating_add(t));
        self.write(|conn| {
            conn.prepare_cached(UPSERT)
                .and_then(|mut s| s.execute(params![ns, key, json, expires]))
                .map_err(|e| self.query_error(e))?;
            Ok(())
        })
    }

    /// Removes `key`; true when a live value was there.
    pub fn kv_delete(&self, ns: &str, key: &str) -> Result<bool, StorageError> {
        let now = self.now();
        self.write(|conn| {
            let n = conn
                .prepare_cached(concat!("DELETE FROM kv WHERE ns = :ns AND key = :key AND ", live!()))
                .and_then(|mut s| s.execute(rusqlite::named_params! {":ns": ns, ":key": key, ":now": now}))
                .map_err(|e| self.query_error(e))?;
            // An expired leftover goes too, so the key is really gone.
            conn.prepare_cached(DELETE_ANY)
                .and_then(|mut s| s.execute(params![ns, key]))
                .map_err(|e| self.query_error(e))?;
            Ok(n > 0)
        })
    }

    /// Adds `by` to the integer under `key` (absent counts as 0) and returns the new value,
    /// atomically. The key keeps its expiry.
    pub fn kv_incr(&self, ns: &str, key: &str, by: i64) -> Result<i64, StorageError> {
        let now = self.now();
        self.write(|conn| self.incr_on(conn, ns, key, by, now))
    }

    fn incr_on(&self, conn: &mut Connection, ns: &str, key: &str, by: i64, now: i64) -> Result<i64, StorageError> {
        let done: Option<i64> = conn
            .prepare_cached(INCR)
            .and_then(|mut s| {
                s.query_row(rusqlite::named_params! {":ns": ns, ":key": key, ":by": by, ":now": now}, |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.query_error(e))?;
        if let Some(new) = done {
            return Ok(new);
        }
        let tx = conn.savepoint().map_err(|e| self.query_error(e))?;
        let current: Option<(String, Option<i64>)> = tx
            .prepare_cached(SELECT_WITH_EXPIRY)
            .and_then(|mut s| {
                s.query_row(rusqlite::named_params! {":ns": ns, ":key": key, ":now": now}, |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| self.query_error(e))?;
        let (old, expires) = match &current {
            None => (0, None),
            Some((text, expires)) => {
                match serde_json::from_str::<serde_json::Value>(text).ok().and_then(|v| v.as_i64()) {
                    Some(n) => (n, *expires),
                    None => return Err(StorageError::NotInteger { key: key.to_owned(), found: describe_json(text) }),
                }
            }
        };
        let new = old.saturating_add(by);
        tx.prepare_cached(UPSERT)
            .and_then(|mut s| s.execute(params![ns, key, new.to_string(), expires]))
            .map_err(|e| self.query_error(e))?;
        tx.commit().map_err(|e| self.query_error(e))?;
        Ok(new)
    }

    /// Live keys starting with `prefix`, in order, after `after` (for paging), at most `limit`.
    pub fn kv_keys(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let now = self.now();
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT key FROM kv WHERE ns = :ns AND key >= :prefix AND key > :after
                 AND substr(key, 1, length(:prefix)) = :prefix AND ",
                    live!(),
                    " ORDER BY key LIMIT :limit"
                ))
                .map_err(|e| self.query_error(e))?;
            let rows = stmt
                .query_map(
                    rusqlite::named_params! {":ns": ns, ":prefix": prefix, ":after": after.unwrap_or(""),
                    ":now": now, ":limit": limit as i64},
                    |r| r.get::<_, String>(0),
                )
                .map_err(|e| self.query_error(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.query_error(e))
        })
    }

    /// Atomically checks that every key in `expected` holds exactly that JSON (`None`: absent),
    /// and if so writes every entry of `new` (`None`: delete). False when any check failed.
    pub fn kv_compare_and_set(
        &self,
        ns: &str,
        expected: &[(&str, Option<&str>)],
        new: &[(&str, Option<&str>)],
    ) -> Result<bool, StorageError> {
        let now = self.now();
        self.write(|conn| {
            let tx = conn.savepoint().map_err(|e| self.query_error(e))?;
            for (key, want) in expected {
                let have: Option<String> = tx
                    .prepare_cached(SELECT)
                    .and_then(|mut s| {
                        s.query_row(rusqlite::named_params! {":ns": ns, ":key": key, ":now": now}, |r| r.get(0))
                            .optional()
                    })
                    .map_err(|e| self.query_error(e))?;
                if have.as_deref() != *want {
                    return Ok(false);
                }
            }
            for (key, value) in new {
                match value {
                    Some(v) => tx.prepare_cached(UPSERT).and_then(|mut s| s.execute(params![ns, key, v, None::<i64>])),
                    None => tx.prepare_cached(DELETE_ANY).and_then(|mut s| s.execute(params![ns, key])),
                }
                .map_err(|e| self.query_error(e))?;
            }
            tx.commit().map_err(|e| self.query_error(e))?;
            Ok(true)
        })
    }

    /// Deletes expired rows; returns how many.
    pub fn kv_purge_expired(&self) -> Result<usize, StorageError> {
        let now = self.now();
        self.write(|conn| {
            conn.execute("DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?1", params![now])
                .map_err(|e| self.query_error(e))
        })
    }
}

fn describe_json(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => format!("a {}", crate::api::json_type(&v)),
        Err(_) => "unreadable data".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    fn store() -> (tempfile::TempDir, Store, Arc<AtomicI64>) {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicI64::new(1_000_000));
        let clock = now.clone();
        let store = Store::open(&dir.path().join("t.db"), Arc::new(move || clock.load(Ordering::SeqCst))).unwrap();
        (dir, store, now)
    }

    #[test]
    fn set_get_delete_and_namespaces_are_separate() {
        let (_d, s, _) = store();
        s.kv_set("a", "k", "1", None).unwrap();
        s.kv_set("b", "k", "\"x\"", None).unwrap();
        assert_eq!(s.kv_get("a", "k").unwrap().as_deref(), Some("1"));
        assert_eq!(s.kv_get("b", "k").unwrap().as_deref(), Some("\"x\""));
        assert!(s.kv_delete("a", "k").unwrap());
        assert!(!s.kv_delete("a", "k").unwrap());
        assert_eq!(s.kv_get("a", "k").unwrap(), None);
    }

    #[test]
    fn ttl_hides_at_once_and_purge_removes() {
        let (_d, s, now) = store();
        s.kv_set("a", "k", "1", Some(5_000)).unwrap();
        now.fetch_add(4_999, Ordering::SeqCst);
        assert!(s.kv_get("a", "k").unwrap().is_some());
        now.fetch_add(1, Ordering::SeqCst);
        assert_eq!(s.kv_get("a", "k").unwrap(), None);
        assert!(s.kv_keys("a", "", None, 10).unwrap().is_empty());
        assert_eq!(s.kv_incr("a", "k", 2).unwrap(), 2, "an expired value counts as absent");
        s.kv_set("a", "gone", "1", Some(1)).unwrap();
        now.fetch_add(10, Ordering::SeqCst);
        assert_eq!(s.kv_purge_expired().unwrap(), 1);
    }

    #[test]
    fn incr_refuses_non_integers_and_names_the_key() {
        let (_d, s, _) = store();
        s.kv_set("a", "name", "\"bob\"", None).unwrap();
        let e = s.kv_incr("a", "name", 1).unwrap_err().to_string();
        assert_eq!(e, "key `name` holds a string, not an integer");
        assert_eq!(s.kv_incr("a", "n", 5).unwrap(), 5);
        assert_eq!(s.kv_incr("a", "n", -2).unwrap(), 3);
    }

    #[test]
    fn incr_keeps_expiry_saturates_and_reads_other_spellings_as_before() {
        let (_d, s, now) = store();
        s.kv_set("a", "t", "5", Some(1_000)).unwrap();
        assert_eq!(s.kv_incr("a", "t", 1).unwrap(), 6);
        now.fetch_add(999, Ordering::SeqCst);
        assert_eq!(s.kv_get("a", "t").unwrap().as_deref(), Some("6"), "the expiry is kept");
        now.fetch_add(1, Ordering::SeqCst);
        assert_eq!(s.kv_get("a", "t").unwrap(), None);
        s.kv_set("a", "max", &(i64::MAX - 1).to_string(), None).unwrap();
        assert_eq!(s.kv_incr("a", "max", 5).unwrap(), i64::MAX, "saturates");
        assert_eq!(s.kv_incr("a", "max", 0).unwrap(), i64::MAX);
        s.kv_set("a", "min", &i64::MIN.to_string(), None).unwrap();
        assert_eq!(s.kv_incr("a", "min", -1).unwrap(), i64::MIN);
        s.kv_set("a", "spaced", " 7 ", None).unwrap();
        assert_eq!(s.kv_incr("a", "spaced", 1).unwrap(), 8, "JSON with blanks is still a number");
        for (text, found) in [("007", "unreadable data"), ("1.5", "a float"), ("\"3\"", "a string"), ("1e3", "a float")]
        {
            s.kv_set("a", "odd", text, None).unwrap();
            let e = s.kv_incr("a", "odd", 1).unwrap_err().to_string();
            assert!(e.contains(found), "{text}: {e}");
            assert_eq!(s.kv_get("a", "odd").unwrap().as_deref(), Some(text), "nothing written");
        }
        assert_eq!(s.kv_get("a", "spaced").unwrap().as_deref(), Some("8"));
        let other = Store::open(s.path(), crate::storage::system_clock()).unwrap();
        assert_eq!(other.kv_get("a", "spaced").unwrap().as_deref(), Some("8"), "committed when it returns");
    }

    #[test]
    fn keys_page_by_prefix() {
        let (_d, s, _) = store();
        for k in ["u:1", "u:2", "u:3", "v:1", "u"] {
            s.kv_set("a", k, "0", None).unwrap();
        }
        assert_eq!(s.kv_keys("a", "u:", None, 2).unwrap(), ["u:1", "u:2"]);
        assert_eq!(s.kv_keys("a", "u:", Some("u:2"), 2).unwrap(), ["u:3"]);
        assert_eq!(s.kv_keys("a", "", None, 10).unwrap().len(), 5);
    }

    #[test]
    fn compare_and_set_is_all_or_nothing() {
        let (_d, s, _) = store();
        s.kv_set("a", "x", "1", None).unwrap();
        assert!(!s.kv_compare_and_set("a", &[("x", Some("2"))], &[("x", Some("3"))]).unwrap());
        assert!(
            s.kv_compare_and_set("a", &[("x", Some("1")), ("y", None)], &[("x", Some("3")), ("y", Some("4"))]).unwrap()
        );
        assert_eq!(s.kv_get("a", "y").unwrap().as_deref(), Some("4"));
    }
}

//! `kv::` — the script's persistent key-value store.
//!
//! `kv::get/set/...` work in the script's own namespace (its file name without `.rhai`);
//! `kv::shared_space()` (and `kv::space("name")`; `shared` is a reserved word in Rhai) return a handle with the same methods on a namespace
//! every script can use. Values are any Rhai data value, stored as JSON.
//!
//! ```rhai
//! let n = kv::incr("visits:" + ev.user_id);
//! kv::set("last", #{ who: ev.user_id, at: timestamp() }, 3600);   // expires in an hour
//! kv::update("scores", |m| { let m = m ?? #{}; m[ev.user_id.to_string()] = 1; m });
//! let board = kv::shared_space();
//! board.set("motd", "hi");
//! ```

use std::sync::Arc;

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, INT, Map, Module, NativeCallContext};

use super::convert::{at_call, script_error, to_dynamic, to_json};
use super::documented;
use crate::storage::Store;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Namespace prefix of shared spaces; script namespaces never start with it.
const SHARED_PREFIX: &str = "@";
/// How many times `update` retries when another callback changed the keys meanwhile.
const UPDATE_RETRIES: usize = 64;
/// Keys returned by `keys(prefix)` without an explicit limit.
const DEFAULT_PAGE: usize = 1000;

/// A namespace of the store, as scripts hold it.
#[derive(Debug, Clone)]
pub struct KvSpace {
    store: Arc<Store>,
    ns: Arc<str>,
}

impl KvSpace {
    fn fail<T>(&self, op: &str, key: &str, e: impl std::fmt::Display) -> RhaiResult<T> {
        Err(script_error(format!("kv::{op}(\"{key}\"): {e}")))
    }

    fn encode(&self, op: &str, key: &str, value: &Dynamic) -> RhaiResult<String> {
        if key.is_empty() {
            return self.fail(op, key, "keys must not be empty");
        }
        let json = to_json(value, &format!("kv::{op}(\"{key}\")"))?;
        Ok(json.to_string())
    }

    fn decode(text: &str) -> Dynamic {
        serde_json::from_str(text).map(|v| to_dynamic(&v)).unwrap_or(Dynamic::UNIT)
    }

    fn read(&self, key: &str) -> RhaiResult<Option<String>> {
        self.store.kv_get(&self.ns, key).or_else(|e| self.fail("get", key, e))
    }

    /// The value under `key`, or `default`.
    pub fn get(&self, key: &str, default: Dynamic) -> RhaiResult<Dynamic> {
        Ok(self.read(key)?.map_or(default, |t| Self::decode(&t)))
    }

    /// Stores `value`, expiring after `ttl_secs` when given.
    pub fn set(&self, key: &str, value: &Dynamic, ttl_secs: Option<INT>) -> RhaiResult<()> {
        let json = self.encode("set", key, value)?;
        if ttl_secs.is_some_and(|t| t <= 0) {
            return self.fail("set", key, "the TTL must be a positive number of seconds");
        }
        self.store
            .kv_set(&self.ns, key, &json, ttl_secs.map(|t| t.saturating_mul(1000)))
            .or_else(|e| self.fail("set", key, e))
    }

    fn delete(&self, key: &str) -> RhaiResult<bool> {
        self.store.kv_delete(&self.ns, key).or_else(|e| self.fail("delete", key, e))
    }

    fn incr(&self, key: &str, by: INT) -> RhaiResult<INT> {
        self.store.kv_incr(&self.ns, key, by).or_else(|e| self.fail("incr", key, e))
    }

    fn keys(&self, prefix: &str, limit: INT, after: &str) -> RhaiResult<Array> {
        let limit = usize::try_from(limit).unwrap_or(0);
        let after = (!after.is_empty()).then_some(after);
        let keys = self.store.kv_keys(&self.ns, prefix, after, limit).or_else(|e| self.fail("keys", prefix, e))?;
        Ok(keys.into_iter().map(Dynamic::from).collect())
    }

    fn cas(&self, key: &str, expected: &Dynamic, new: &Dynamic) -> RhaiResult<bool> {
        let expected = if expected.is_unit() { None } else { Some(self.encode("cas", key, expected)?) };
        let new = if new.is_unit() { None } else { Some(self.encode("cas", key, new)?) };
        self.store
            .kv_compare_and_set(&self.ns, &[(key, expected.as_deref())], &[(key, new.as_deref())])
            .or_else(|e| self.fail("cas", key, e))
    }

    /// Atomically writes every entry of `map` (a `()` value deletes).
    fn set_all(&self, map: Map) -> RhaiResult<()> {
        let entries = self.encode_map("set_all", &map)?;
        let new: Vec<(&str, Option<&str>)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        self.store.kv_compare_and_set(&self.ns, &[], &new).or_else(|e| self.fail("set_all", "", e)).map(|_| ())
    }

    fn encode_map(&self, op: &str, map: &Map) -> RhaiResult<Vec<(String, Option<String>)>> {
        map.iter()
            .map(|(k, v)| Ok((k.to_string(), if v.is_unit() { None } else { Some(self.encode(op, k, v)?) })))
            .collect()
    }

    /// Optimistic read-modify-write of one key: `f(old)` returns the new value; retried when
    /// another callback wrote the key meanwhile, so no update is ever lost. No lock is held
    /// while `f` runs.
    fn update(&self, ctx: &NativeCallContext, key: &str, f: &FnPtr) -> RhaiResult<Dynamic> {
        for _ in 0..UPDATE_RETRIES {
            let old = self.read(key)?;
            let new: Dynamic = f.call_within_context(ctx, (old.as_deref().map_or(Dynamic::UNIT, Self::decode),))?;
            let new_json = if new.is_unit() { None } else { Some(self.encode("update", key, &new)?) };
            let done = self
                .store
                .kv_compare_and_set(&self.ns, &[(key, old.as_deref())], &[(key, new_json.as_deref())])
                .or_else(|e| self.fail("update", key, e))?;
            if done {
                return Ok(new);
            }
        }
        self.fail("update", key, format!("the key kept changing; gave up after {UPDATE_RETRIES} tries"))
    }

    /// Like `update` over several keys: `f(map_of_old_values)` returns a map of new values.
    fn update_all(&self, ctx: &NativeCallContext, keys: Array, f: &FnPtr) -> RhaiResult<Dynamic> {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        for _ in 0..UPDATE_RETRIES {
            let mut olds = Vec::with_capacity(keys.len());
            let mut view = Map::new();
            for k in &keys {
                let old = self.read(k)?;
                view.insert(k.as_str().into(), old.as_deref().map_or(Dynamic::UNIT, Self::decode));
                olds.push(old);
            }
            let result: Dynamic = f.call_within_context(ctx, (view,))?;
            let Some(new_map) = result.clone().try_cast::<Map>() else {
                return self.fail("update_all", "", "the callback must return a map of new values");
            };
            let entries = self.encode_map("update_all", &new_map)?;
            let expected: Vec<(&str, Option<&str>)> =
                keys.iter().map(String::as_str).zip(olds.iter().map(Option::as_deref)).collect();
            let new: Vec<(&str, Option<&str>)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            if self.store.kv_compare_and_set(&self.ns, &expected, &new).or_else(|e| self.fail("update_all", "", e))? {
                return Ok(result);
            }
        }
        self.fail("update_all", "", format!("the keys kept changing; gave up after {UPDATE_RETRIES} tries"))
    }
}

/// Every operation of a space, listed once: expanded into the `kv::` namespace functions of a
/// script and into the methods of `KvSpace` values.
macro_rules! kv_ops {
    ($reg:ident) => {
        $reg!("get", ["key: string"], "the value under `key`, `()` when none", |s, key: &str| s
            .get(key, Dynamic::UNIT));
        $reg!(
            "get",
            ["key: string", "default?: any"],
            "the value under `key`, or `default`",
            |s, key: &str, default: Dynamic| s.get(key, default)
        );
        $reg!(
            "set",
            ["key: string", "value: any"],
            "store `value` (any data) under `key`; on disk when it returns",
            |s, key: &str, value: Dynamic| s.set(key, &value, None)
        );
        $reg!(
            "set",
            ["key: string", "value: any", "ttl_secs?: int"],
            "store `value` under `key`, gone after `ttl_secs` seconds",
            |s, key: &str, value: Dynamic, ttl_secs: INT| s.set(key, &value, Some(ttl_secs))
        );
        $reg!("delete", ["key: string"], "remove `key`; true when it existed", |s, key: &str| s.delete(key));
        $reg!("exists", ["key: string"], "whether `key` holds a value", |s, key: &str| s
            .read(key)
            .map(|v| v.is_some()));
        $reg!(
            "incr",
            ["key: string"],
            "add 1 to the integer under `key` (0 when none) and return it",
            |s, key: &str| s.incr(key, 1)
        );
        $reg!(
            "incr",
            ["key: string", "by?: int"],
            "add `by` to the integer under `key` and return it",
            |s, key: &str, by: INT| s.incr(key, by)
        );
        $reg!("decr", ["key: string"], "subtract 1 from the integer under `key` and return it", |s, key: &str| s
            .incr(key, -1));
        $reg!(
            "decr",
            ["key: string", "by?: int"],
            "subtract `by` from the integer under `key` and return it",
            |s, key: &str, by: INT| s.incr(key, by.saturating_neg())
        );
        $reg!("keys", ["prefix: string"], "keys starting with `prefix`, sorted, the first 100", |s, prefix: &str| s
            .keys(prefix, DEFAULT_PAGE as INT, ""));
        $reg!(
            "keys",
            ["prefix: string", "limit: int"],
            "keys starting with `prefix`, sorted, at most `limit`",
            |s, prefix: &str, limit: INT| s.keys(prefix, limit, "")
        );
        $reg!(
            "keys",
            ["prefix: string", "limit?: int", "after?: string"],
            "the next page of keys, those sorting after `after`",
            |s, prefix: &str, limit: INT, after: &str| s.keys(prefix, limit, after)
        );
        $reg!(
            "cas",
            ["key: string", "expected: any", "new: any"],
            "set `new` only if `key` holds `expected` (`()`: absent); true when it did",
            |s, key: &str, expected: Dynamic, new: Dynamic| s.cas(key, &expected, &new)
        );
        $reg!("set_all", ["entries: map"], "store every entry of `entries` in one transaction", |s, entries: Map| s
            .set_all(entries));
    };
}

/// The `kv::` namespace of a script whose own namespace is `ns`.
pub fn namespace(store: Arc<Store>, ns: &str) -> Module {
    let own = KvSpace { store: store.clone(), ns: ns.into() };
    let mut m = Module::new();
    macro_rules! reg {
        ($name:literal, [$($p:literal),*], $doc:literal, |$s:ident $(, $a:ident : $t:ty)*| $body:expr) => {{
            let space = own.clone();
            // Namespace-qualified calls get no position from Rhai: give errors the call's own.
            documented($name, &[$($p),*], $doc).set_into_module(&mut m, move |ctx: NativeCallContext, $($a: $t),*| {
                let $s = &space;
                $body.map_err(|e| at_call(e, &ctx))
            });
        }};
    }
    kv_ops!(reg);
    // These call back into the script, so they take the call context (which must come first).
    let space = own.clone();
    documented("update", &["key: string", "callback: Fn"], UPDATE_DOC)
        .set_into_module(&mut m, move |ctx: NativeCallContext, key: &str, f: FnPtr| {
            space.update(&ctx, key, &f).map_err(|e| at_call(e, &ctx))
        });
    let space = own;
    documented("update_all", &["keys: array", "callback: Fn"], UPDATE_ALL_DOC).set_into_module(
        &mut m,
        move |ctx: NativeCallContext, keys: Array, f: FnPtr| {
            space.update_all(&ctx, keys, &f).map_err(|e| at_call(e, &ctx))
        },
    );
    let shared = store.clone();
    documented("shared_space", &[], "the namespace every script shares, as a `KvSpace` with the same methods")
        .set_into_module(&mut m, move || KvSpace {
            store: shared.clone(),
            ns: format!("{SHARED_PREFIX}shared").into(),
        });
    documented("space", &["name: string"], "a named namespace scripts can share, as a `KvSpace`").set_into_module(
        &mut m,
        move |name: &str| -> RhaiResult<KvSpace> {
            if name.is_empty() {
                return Err(script_error("kv::space(name): the name must not be empty".into()));
            }
            Ok(KvSpace { store: store.clone(), ns: format!("{SHARED_PREFIX}{name}").into() })
        },
    );
    m
}

/// The methods of `KvSpace` values, the same for every script (built once).
pub fn methods() -> Module {
    let mut m = Module::new();
    macro_rules! reg {
        ($name:literal, [$($p:literal),*], $doc:literal, |$s:ident $(, $a:ident : $t:ty)*| $body:expr) => {{
            documented($name, &["space: KvSpace", $($p),*], $doc)
                .in_global_namespace()
                .set_into_module(&mut m, |$s: &mut KvSpace $(, $a: $t)*| { let $s = &*$s; $body });
        }};
    }
    kv_ops!(reg);
    documented("update", &["space: KvSpace", "key: string", "callback: Fn"], UPDATE_DOC)
        .in_global_namespace()
        .set_into_module(&mut m, |ctx: NativeCallContext, s: &mut KvSpace, key: &str, f: FnPtr| {
            s.update(&ctx, key, &f)
        });
    documented("update_all", &["space: KvSpace", "keys: array", "callback: Fn"], UPDATE_ALL_DOC)
        .in_global_namespace()
        .set_into_module(&mut m, |ctx: NativeCallContext, s: &mut KvSpace, keys: Array, f: FnPtr| {
            s.update_all(&ctx, keys, &f)
        });
    m
}

/// What `update` does.
const UPDATE_DOC: &str =
    "replace the value under `key` with `callback(old)`, retried when another callback changed it meanwhile";
/// What `update_all` does.
const UPDATE_ALL_DOC: &str =
    "replace the values under `keys` with the map `callback(#{key: old})` returns, all or none, retried on conflict";

/// `ratelimit::allow(key, count, window_ms)`: whether one more use of `key` fits in `count` uses
/// per `window_ms` (recorded when it does), kept in the store so limits survive reloads.
pub fn ratelimit(store: Arc<Store>, script_ns: &str) -> Module {
    let mut m = Module::new();
    let ns = format!("__ratelimit:{script_ns}");
    let doc = "whether one more use of `key` fits in `count` uses per `window_ms` (the use is recorded when it does)";
    documented("allow", &["key: string", "count: int", "window_ms: int"], doc).set_into_module(
        &mut m,
        move |key: &str, count: INT, window_ms: INT| -> RhaiResult<bool> {
            if !(1..=crate::storage::MAX_RATE_USES as INT).contains(&count) || window_ms < 1 {
                return Err(crate::bindings::convert::script_error(format!(
                    "ratelimit::allow: count must be 1 to {} and window_ms at least 1, got {count} and {window_ms}",
                    crate::storage::MAX_RATE_USES
                )));
            }
            store
                .allow(&ns, key, count as usize, window_ms)
                .map_err(|e| crate::bindings::convert::script_error(format!("ratelimit::allow({key:?}): {e}")))
        },
    );
    m
}

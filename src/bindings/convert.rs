//! Conversions between Rhai values and JSON, and protocol errors as script errors.

use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde_json::Value;

use crate::adapter::CallError;

/// A script value as JSON; values that have no JSON form (functions, custom types) are a
/// clear script error naming `what`.
pub fn to_json(value: &Dynamic, what: &str) -> Result<Value, Box<EvalAltResult>> {
    rhai::serde::from_dynamic::<Value>(value)
        .map_err(|_| script_error(format!("{what}: a {} cannot be sent as JSON", value.type_name())))
}

/// A JSON value as a script value (objects become maps, integers `INT`).
pub fn to_dynamic(value: &Value) -> Dynamic {
    rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT)
}

/// A plain script error with a message.
pub fn script_error(message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into()
}

/// A failed call as a catchable script error: a map with `kind`, `action`, `code` and
/// `message`, so `catch (e) { e.code }` works and an uncaught one logs readably.
pub fn call_error(e: CallError) -> Box<EvalAltResult> {
    let kind = match &e {
        CallError::Failed { .. } => "failed",
        CallError::Timeout { .. } => "timeout",
        CallError::NotConnected { .. } => "not_connected",
        CallError::Invalid { .. } => "invalid",
        CallError::Http { .. } => "http",
    };
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("action".into(), e.action().into());
    map.insert("code".into(), e.code().into());
    map.insert("message".into(), e.to_string().into());
    EvalAltResult::ErrorRuntime(map.into(), Position::NONE).into()
}

//! Conversions between Rhai values and JSON, and protocol errors as script errors.

use rhai::{Dynamic, EvalAltResult, Map, Position};
use serde_json::Value;

use crate::bot::CallError;

/// A script value as JSON; values that have no JSON form (functions, custom types) are a
/// clear script error naming `what`.
pub fn to_json(value: &Dynamic, what: &str) -> Result<Value, Box<EvalAltResult>> {
    rhai::serde::from_dynamic::<Value>(value)
        .map_err(|_| script_error(format!("{what}: a {} cannot be sent as JSON", value.type_name())))
}

/// A JSON value as a script value: objects become maps, integers `INT`; an integer too large
/// for `INT` (a message id above 2^63) becomes its exact decimal string, never a rounded float.
pub fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into(),
            (None, Some(u)) => u.to_string().into(),
            (None, None) => n.as_f64().map_or(Dynamic::UNIT, Dynamic::from_float),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => Dynamic::from_map(map.iter().map(|(k, v)| (k.as_str().into(), to_dynamic(v))).collect()),
    }
}

/// A script error with a message, as a catchable map `#{kind: "invalid", message}`.
pub fn script_error(message: String) -> Box<EvalAltResult> {
    // A map like a failed call's, so `catch (e) { e.message }` works for every error the
    // runtime raises.
    let mut map = Map::new();
    map.insert("kind".into(), "invalid".into());
    map.insert("message".into(), message.into());
    EvalAltResult::ErrorRuntime(map.into(), Position::NONE).into()
}

/// A failed call as a catchable script error: a map with `kind`, `action`, `code` and
/// `message`, so `catch (e) { e.code }` works and an uncaught one logs readably.
pub fn call_error(e: CallError) -> Box<EvalAltResult> {
    let kind = match &e {
        CallError::Failed { .. } => "failed",
        CallError::Timeout { .. } => "timeout",
        CallError::NotConnected { .. } => "not_connected",
        CallError::Invalid { .. } => "invalid",
        CallError::NoTarget { .. } => "no_target",
        CallError::Http { .. } => "http",
    };
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("action".into(), e.action().into());
    map.insert("code".into(), e.code().into());
    map.insert("message".into(), e.to_string().into());
    map.insert("trace_id".into(), e.trace_id().map_or(Dynamic::UNIT, |t| t.to_owned().into()));
    EvalAltResult::ErrorRuntime(map.into(), Position::NONE).into()
}

/// Gives an error from a native function the position of the call, when it has none (Rhai
/// leaves namespace-qualified calls such as `onebot::send_group_msg(..)` without one).
pub fn at_call(mut e: Box<EvalAltResult>, ctx: &rhai::NativeCallContext) -> Box<EvalAltResult> {
    if e.position().is_none() {
        e.set_position(ctx.call_position());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_beyond_i64_reach_scripts_exactly() {
        let v: Value =
            serde_json::from_str(r#"{"message_id": 18446744073709551615, "n": -3, "f": 1.5, "s": "x"}"#).unwrap();
        let map = to_dynamic(&v).cast::<Map>();
        assert_eq!(map["message_id"].clone().into_string().unwrap(), "18446744073709551615");
        assert_eq!(map["n"].as_int().unwrap(), -3);
        assert_eq!(map["f"].as_float().unwrap(), 1.5);
        assert_eq!(map["s"].clone().into_string().unwrap(), "x");
    }
}

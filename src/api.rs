//! The API surface as data: an [`Action`] is a name and its parameters in documented order.
//!
//! Protocol tables (`adapter::onebot11::actions::ACTIONS`, ...) are lists of these; the script
//! bindings, `rhaibot api list` and argument checking are all driven from them, so one generic
//! call path serves every action.

use serde_json::{Map, Value};

/// The JSON type a parameter expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// An integer (a string of digits is accepted and converted: ids often arrive as text).
    Int,
    /// A string (a number is accepted and converted).
    Str,
    /// An id carried as text (whom a segment mentions, the message it quotes): text, or an
    /// integer (converted). Unlike [`Ty::Str`], a fraction or a boolean is refused.
    Id,
    /// A file: a path, or a `file://`, `http(s)://` or `base64://` URI. Text only: a number is
    /// a mistake, not a file name.
    File,
    /// A boolean.
    Bool,
    /// Any number.
    Num,
    /// An array.
    Array,
    /// An object.
    Object,
    /// A message: CQ string, one segment, or an array of segments.
    Message,
    /// Anything.
    Any,
}

impl Ty {
    /// The type's name in docs and `api list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ty::Int => "int",
            Ty::Str => "string",
            Ty::Id => "id",
            Ty::File => "file",
            Ty::Bool => "bool",
            Ty::Num => "number",
            Ty::Array => "array",
            Ty::Object => "map",
            Ty::Message => "message",
            Ty::Any => "any",
        }
    }

    /// Checks `v` against this type, converting where the conversion is lossless.
    fn check(self, v: Value) -> Result<Value, Value> {
        match (self, v) {
            (Ty::Any, v) => Ok(v),
            (Ty::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::Number(n)),
            (Ty::Int, Value::String(s)) => s.trim().parse::<i64>().map(Value::from).map_err(|_| Value::String(s)),
            (Ty::Str, Value::String(s)) => Ok(Value::String(s)),
            (Ty::Str, Value::Number(n)) => Ok(Value::String(n.to_string())),
            (Ty::Id, Value::String(s)) => Ok(Value::String(s)),
            (Ty::Id, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Value::String(n.to_string())),
            (Ty::File, Value::String(s)) => Ok(Value::String(s)),
            (Ty::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
            (Ty::Num, Value::Number(n)) => Ok(Value::Number(n)),
            (Ty::Array, v @ Value::Array(_)) => Ok(v),
            (Ty::Object, v @ Value::Object(_)) => Ok(v),
            (Ty::Message, v) if check_message(&v).is_ok() => Ok(v),
            (_, v) => Err(v),
        }
    }
}

/// Checks a cross-protocol message: text, a segment `#{type, data}`, or an array of them (a
/// map without `type`, such as `#{text: "hi"}`, is a mistake, not a message).
pub fn check_message(v: &Value) -> Result<(), String> {
    let segment = |m: &Map<String, Value>| match m.get("type") {
        Some(Value::String(_)) => Ok(()),
        _ => {
            let keys: Vec<&String> = m.keys().collect();
            Err(format!(
                "a map in a message must be a segment #{{type, data}} (msg::text(..), msg::image(..)), got one with {keys:?}"
            ))
        }
    };
    match v {
        Value::String(_) => Ok(()),
        Value::Object(m) => segment(m),
        Value::Array(items) => items.iter().try_for_each(|item| match item {
            Value::String(_) => Ok(()),
            Value::Object(m) => segment(m),
            other => Err(format!("a message array holds text and segments, not {}", json_type(other))),
        }),
        other => Err(format!("a message is text, a segment or an array of them, not {}", json_type(other))),
    }
}

/// One parameter of an action.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name on the wire.
    pub name: &'static str,
    /// Expected type.
    pub ty: Ty,
    /// Whether a call without it is rejected before sending.
    pub required: bool,
}

/// Shorthand for table rows.
pub const fn p(name: &'static str, ty: Ty, required: bool) -> Param {
    Param { name, ty, required }
}

/// One protocol action.
#[derive(Debug, Clone, Copy)]
pub struct Action {
    /// Name on the wire (OneBot `action`).
    pub name: &'static str,
    /// One-line description from the seed.
    pub doc: &'static str,
    /// Parameters in documented order.
    pub params: &'static [Param],
}

impl Action {
    /// The script function name: the wire name without characters Rhai identifiers cannot hold
    /// (`.handle_quick_operation` -> `handle_quick_operation`).
    pub fn fn_name(&self) -> &'static str {
        self.name.trim_start_matches('.')
    }

    /// Builds the JSON params object from a script's arguments: either one map with parameter
    /// names, or positional values in documented order. Checks required parameters and types.
    /// One map argument is the params map, unless the first parameter itself takes a map and
    /// the map is not spelled in parameter names.
    pub fn build_params(&self, args: Vec<Value>) -> Result<Value, String> {
        let takes_map = match (args.as_slice(), self.params.first()) {
            ([Value::Object(m)], Some(first)) if matches!(first.ty, Ty::Object | Ty::Message) => {
                m.contains_key(first.name) && m.keys().all(|k| self.params.iter().any(|p| p.name == k))
            }
            ([Value::Object(_)], _) => true,
            _ => false,
        };
        let mut map = if takes_map {
            match args.into_iter().next() {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            }
        } else {
            if args.len() > self.params.len() {
                return Err(format!(
                    "takes at most {} arguments ({}), got {}",
                    self.params.len(),
                    self.signature(),
                    args.len()
                ));
            }
            self.params.iter().zip(args).map(|(p, v)| (p.name.to_owned(), v)).collect()
        };
        for p in self.params {
            match map.remove(p.name) {
                None | Some(Value::Null) if p.required => {
                    return Err(format!("missing required parameter `{}` ({})", p.name, self.signature()));
                }
                None | Some(Value::Null) => {}
                Some(v) => {
                    let v = p.ty.check(v).map_err(|v| {
                        format!("parameter `{}` must be {}, got {}", p.name, p.ty.as_str(), json_type(&v))
                    })?;
                    map.insert(p.name.to_owned(), v);
                }
            }
        }
        Ok(Value::Object(map))
    }

    /// `name(a: int, b?: string)`, for messages and `api list`.
    pub fn signature(&self) -> String {
        let ps: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{}{}: {}", p.name, if p.required { "" } else { "?" }, p.ty.as_str()))
            .collect();
        format!("{}({})", self.fn_name(), ps.join(", "))
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SEND: Action = Action {
        name: "send_group_msg",
        doc: "",
        params: &[p("group_id", Ty::Int, true), p("message", Ty::Message, true), p("auto_escape", Ty::Bool, false)],
    };

    #[test]
    fn map_or_positional_give_the_same_params() {
        let a = SEND.build_params(vec![json!({"group_id": 1, "message": "hi"})]).unwrap();
        let b = SEND.build_params(vec![json!(1), json!("hi")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, json!({"group_id": 1, "message": "hi"}));
    }

    #[test]
    fn missing_and_mistyped_parameters_are_named() {
        let e = SEND.build_params(vec![json!({"message": "hi"})]).unwrap_err();
        assert!(e.contains("`group_id`") && e.contains("send_group_msg(group_id: int"), "{e}");
        let e = SEND.build_params(vec![json!(true), json!("hi")]).unwrap_err();
        assert_eq!(e, "parameter `group_id` must be int, got bool");
        let e = SEND.build_params(vec![json!(1), json!("x"), json!(true), json!(4)]).unwrap_err();
        assert!(e.contains("at most 3"), "{e}");
    }

    #[test]
    fn a_map_first_parameter_still_allows_the_map_form() {
        const QUICK: Action = Action {
            name: ".handle_quick_operation",
            doc: "",
            params: &[p("context", Ty::Object, true), p("operation", Ty::Object, true)],
        };
        let named = QUICK.build_params(vec![json!({"context": {"a": 1}, "operation": {"b": 2}})]).unwrap();
        let positional = QUICK.build_params(vec![json!({"a": 1}), json!({"b": 2})]).unwrap();
        assert_eq!(named, positional);
        assert!(QUICK.build_params(vec![json!({"a": 1})]).unwrap_err().contains("`operation`"));
    }

    /// A segment's id is text on every protocol (an official-platform message id is not a
    /// number); an integer is taken as its digits, a fraction or a boolean is a mistake.
    #[test]
    fn a_segment_id_is_text_or_an_integer_never_a_fraction() {
        const AT: Action = Action { name: "at", doc: "", params: &[p("qq", Ty::Id, true)] };
        assert_eq!(AT.build_params(vec![json!(10001)]).unwrap(), json!({"qq": "10001"}));
        assert_eq!(AT.build_params(vec![json!("all")]).unwrap(), json!({"qq": "all"}));
        assert_eq!(AT.build_params(vec![json!("ROBOT1.0_a-b")]).unwrap(), json!({"qq": "ROBOT1.0_a-b"}));
        assert_eq!(AT.build_params(vec![json!(3.5)]).unwrap_err(), "parameter `qq` must be id, got float");
        assert_eq!(AT.build_params(vec![json!(true)]).unwrap_err(), "parameter `qq` must be id, got bool");
    }

    #[test]
    fn digit_strings_are_ids() {
        assert_eq!(SEND.build_params(vec![json!("42"), json!("x")]).unwrap()["group_id"], 42);
    }
}

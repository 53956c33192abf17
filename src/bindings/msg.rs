//! `msg::` — message segment builders. Each returns a `#{type, data}` map; a message is one
//! segment, an array of them, or a CQ string.

use rhai::{Dynamic, FuncRegistration, Map, Module};

/// Builds a segment map.
pub fn segment(kind: &str, data: Map) -> Map {
    let mut seg = Map::new();
    seg.insert("type".into(), kind.into());
    seg.insert("data".into(), data.into());
    seg
}

fn one(kind: &'static str, key: &'static str) -> impl Fn(Dynamic) -> Map + Send + Sync + 'static {
    move |value: Dynamic| {
        let mut data = Map::new();
        // OneBot ids travel as strings inside segments (`qq`, `id`): "123" and 123 both work.
        data.insert(key.into(), value.to_string().into());
        segment(kind, data)
    }
}

/// `(function, segment type, data key)`: builders that take one value.
const SIMPLE: &[(&str, &str, &str)] = &[
    ("text", "text", "text"),
    ("at", "at", "qq"),
    ("face", "face", "id"),
    ("image", "image", "file"),
    ("record", "record", "file"),
    ("video", "video", "file"),
    ("file", "file", "file"),
    ("reply", "reply", "id"),
    ("json", "json", "data"),
    ("markdown", "markdown", "content"),
    ("forward", "forward", "id"),
];

/// Builds the `msg` module.
pub fn module() -> Module {
    let mut m = Module::new();
    for (name, kind, key) in SIMPLE {
        FuncRegistration::new(*name).with_params_info([format!("{key}: any")]).set_into_module(&mut m, one(kind, key));
    }
    FuncRegistration::new("segment")
        .with_params_info(["type: string", "data: map"])
        .set_into_module(&mut m, |kind: &str, data: Map| segment(kind, data));
    FuncRegistration::new("at_all").set_into_module(&mut m, || {
        let mut data = Map::new();
        data.insert("qq".into(), "all".into());
        segment("at", data)
    });
    m
}

/// Names and parameters of every `msg::` function, for `api list`.
pub fn function_names() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> =
        SIMPLE.iter().map(|(n, _, k)| (format!("msg::{n}"), vec![(*k).to_owned()])).collect();
    out.push(("msg::segment".into(), vec!["type".into(), "data".into()]));
    out.push(("msg::at_all".into(), vec![]));
    out
}

//! `msg::` — message segment builders, one per OneBot 11 segment type, generated from the
//! segment table. Each takes one map of `data` fields or the fields positionally in documented
//! order, checks them, and returns a `#{type, data}` map. A message is one segment, an array of
//! them, or a CQ string.
//!
//! ```rhai
//! ev.reply([msg::reply(ev.message_id), msg::at(ev.user_id), msg::text(" hi"), msg::face(14)]);
//! ev.reply(msg::image(#{ file: "https://example.com/a.png", summary: "a cat" }));
//! ```

use std::sync::Arc;

use rhai::{Dynamic, Map, Module};

use super::documented;

use super::convert::{script_error, to_dynamic, to_json};
use super::protocol::{Entry, register_table_fn};
use crate::adapter::onebot11::segments::SEGMENTS;
use crate::api::Action;

/// Builds a segment map.
pub fn segment(kind: &str, data: Map) -> Map {
    let mut seg = Map::new();
    seg.insert("type".into(), kind.into());
    seg.insert("data".into(), data.into());
    seg
}

fn build(seg: &Action, args: Vec<Dynamic>) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let what = format!("msg::{}", seg.name);
    let args = args.iter().map(|a| to_json(a, &what)).collect::<Result<Vec<_>, _>>()?;
    let data = seg.build_params(args).map_err(|e| script_error(format!("{what}: {e}")))?;
    Ok(to_dynamic(&serde_json::json!({"type": seg.name, "data": data})))
}

/// Builds the `msg` module.
pub fn module() -> Module {
    let mut m = Module::new();
    for seg in SEGMENTS {
        let entry: Entry = Arc::new(move |args| build(seg, args));
        register_table_fn(&mut m, seg, entry);
    }
    documented("segment", &["type: string", "data: map"], "a segment of any type: `#{type, data}`")
        .set_into_module(&mut m, |kind: &str, data: Map| segment(kind, data));
    documented("at_all", &[], "an @-mention of everyone in the group").set_into_module(&mut m, || {
        let mut data = Map::new();
        data.insert("qq".into(), "all".into());
        segment("at", data)
    });
    m
}

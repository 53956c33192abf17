//! The generated tables against `../shared/catalog`: drift fails here, not in production.

use std::path::PathBuf;

use rhaibot::adapter::onebot11::{actions::ACTIONS, events::EVENTS};
use serde_json::Value;

/// A file of the protocol catalog, which lives beside the project (`../shared/catalog`, as CI
/// lays it out). Missing, the drift checks cannot run: that fails, it is not skipped.
pub(crate) fn catalog(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/catalog").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the protocol catalog {} ({e}): the drift checks need ../shared/catalog beside the project",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn every_catalog_action_is_in_the_table_with_its_parameters_in_order() {
    let cat = catalog("onebot11.json");
    let actions = cat["actions"].as_array().expect("actions");
    for a in actions {
        let name = a["action"].as_str().unwrap();
        let ours = ACTIONS
            .iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("{name} missing: rerun tools/gen_onebot_actions.py"));
        let theirs: Vec<&str> = a["params"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        let mine: Vec<&str> = ours.params.iter().map(|p| p.name).take(theirs.len()).collect();
        assert_eq!(mine, theirs, "{name}: parameters drifted from the catalog");
    }
    for std in cat["standard_actions_not_in_seed"].as_array().unwrap() {
        let name = std.as_str().unwrap();
        assert!(ACTIONS.iter().any(|x| x.name == name), "standard action {name} missing");
    }
}

#[test]
fn every_catalog_event_is_listed() {
    let cat = catalog("events.json");
    let names: Vec<&str> =
        cat["onebot11"]["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    let ours: Vec<&str> = EVENTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(ours, names);
}

#[test]
fn every_milky_action_and_event_is_in_the_tables_in_order() {
    use rhaibot::adapter::milky;
    let cat = catalog("milky.json");
    let theirs: Vec<(String, Vec<String>)> = cat["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let ps = a["params"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
            (a["action"].as_str().unwrap().to_owned(), ps)
        })
        .collect();
    let mine: Vec<(String, Vec<String>)> = milky::actions::ACTIONS
        .iter()
        .map(|a| (a.name.to_owned(), a.params.iter().map(|p| p.name.to_owned()).collect()))
        .collect();
    assert_eq!(mine, theirs, "rerun tools/gen_milky.py");
    let events: Vec<String> = catalog("events.json")["milky"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("milky.{}", e["event_type"].as_str().unwrap()))
        .collect();
    let ours: Vec<String> = milky::events::EVENTS.iter().map(|(n, _)| (*n).to_owned()).take(events.len()).collect();
    assert_eq!(ours, events, "rerun tools/gen_milky.py");
}

#[test]
fn every_official_platform_event_is_in_the_table_with_its_intent() {
    let cat = catalog("events.json");
    let theirs: Vec<(String, Option<u64>)> = cat["qq_official"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (format!("qq.{}", e["t"].as_str().unwrap()), e["intent_bit"].as_u64()))
        .collect();
    let mine: Vec<(String, Option<u64>)> =
        rhaibot::adapter::qq::events::EVENTS.iter().map(|e| (e.name.to_owned(), e.intent_bit.map(u64::from))).collect();
    assert_eq!(mine, theirs, "rerun tools/gen_qq.py");
}

mod wire {
    use rhaibot::adapter::onebot11::actions::ACTIONS;
    use rhaibot::api::Ty;
    use serde_json::{Value, json};

    use super::catalog;
    use crate::support::Running;
    use crate::support::onebot::{FakeOneBot, SELF_ID, message_text};

    fn config(url: &str) -> String {
        format!("[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nurl = \"{url}\"\n")
    }

    fn sample(ty: Ty) -> (&'static str, Value) {
        match ty {
            Ty::Int | Ty::Any => ("1", json!(1)),
            Ty::Str | Ty::Id | Ty::File => ("\"s\"", json!("s")),
            Ty::Bool => ("true", json!(true)),
            Ty::Num => ("1.5", json!(1.5)),
            Ty::Array => ("[]", json!([])),
            Ty::Object => ("#{}", json!({})),
            Ty::Message => ("\"hi\"", json!([{"type": "text", "data": {"text": "hi"}}])),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_action_goes_through_its_generated_function_onto_the_wire() {
        let mut fake = FakeOneBot::start(None).await;
        // The fake's lifecycle event on connect starts the calls.
        let mut calls = String::from("on(\"meta_event.lifecycle\", |ev| {\n");
        for a in ACTIONS {
            let fields: Vec<String> = a.params.iter().map(|p| format!("\"{}\": {}", p.name, sample(p.ty).0)).collect();
            calls += &format!("    onebot::{}(#{{{}}});\n", a.fn_name(), fields.join(", "));
        }
        calls += "});\n";
        let rt = Running::start(&config(&fake.url), &[("all.rhai", &calls)]);
        fake.accept().await;
        for a in ACTIONS {
            let call = fake.next_action().await;
            assert_eq!(call.action, a.name);
            let expected: serde_json::Map<String, Value> =
                a.params.iter().map(|p| (p.name.to_owned(), sample(p.ty).1)).collect();
            assert_eq!(call.params, Value::Object(expected), "{}", a.name);
        }
        rt.stop().await;
    }

    /// An event object built from the seed's data model of `def`.
    fn event_from_model(def: &Value, n: i64) -> Value {
        let mut ev = serde_json::Map::new();
        for (i, f) in def["fields"].as_array().unwrap().iter().enumerate() {
            let name = f["name"].as_str().unwrap();
            if name.contains('.') {
                continue;
            }
            let value = match f["type"].as_str().unwrap() {
                "int" | "int|null" | "num" => json!(100 + i as i64),
                "str" | "str|null" => json!(format!("v{i}")),
                "bool" | "bool|null" => json!(true),
                "[MessageSegment]" => json!([{"type": "text", "data": {"text": "hello"}}]),
                t if t.starts_with('[') => json!([]),
                _ => json!({}),
            };
            ev.insert(name.to_owned(), value);
        }
        ev.insert("time".into(), json!(1_700_000_000 + n));
        ev.insert("self_id".into(), json!(SELF_ID));
        ev.insert("post_type".into(), def["post_type"].clone());
        ev.insert(def["detail_key"].as_str().unwrap().to_owned(), def["detail_type"].clone());
        match def["sub_types"].as_array().and_then(|s| s.first()) {
            Some(sub) => ev.insert("sub_type".into(), sub.clone()),
            None => ev.remove("sub_type"),
        };
        if ev.contains_key("interval") {
            ev.insert("interval".into(), json!(60_000)); // keep the heartbeat watchdog out of the way
        }
        Value::Object(ev)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_catalog_event_reaches_its_callback_with_its_fields() {
        let cat = catalog("events.json");
        let defs = cat["onebot11"]["events"].as_array().unwrap().clone();
        let mut script = String::new();
        for def in &defs {
            let n = def["name"].as_str().unwrap();
            script += &format!(
                "on(\"{n}\", |ev| onebot::send_private_msg(1, `{n}|${{ev.name}}|${{ev.user_id}}|${{ev.text}}`));\n"
            );
        }
        script += "on(\"message\", |ev| onebot::send_private_msg(1, `alias|${ev.name}`));\n";
        let mut fake = FakeOneBot::start(None).await;
        let rt = Running::start(&config(&fake.url), &[("events.rhai", &script)]);
        fake.accept().await;
        // The fake announces itself with a lifecycle event first.
        assert!(message_text(&fake.next_action().await.params).starts_with("meta_event.lifecycle|"));
        for (n, def) in defs.iter().enumerate() {
            let ev = event_from_model(def, n as i64);
            let name = def["name"].as_str().unwrap();
            let mut native = format!("{}.{}", ev["post_type"].as_str().unwrap(), def["detail_type"].as_str().unwrap());
            if let Some(sub) = ev.get("sub_type").and_then(Value::as_str) {
                native += &format!(".{sub}");
            }
            let user = ev.get("user_id").map_or("".into(), |u| u.to_string());
            let text = if ev["post_type"] == "message" || ev["post_type"] == "message_sent" { "hello" } else { "" };
            fake.push(ev.clone());
            assert_eq!(message_text(&fake.next_action().await.params), format!("{name}|{native}|{user}|{text}"));
            if ev["post_type"] == "message" {
                assert_eq!(message_text(&fake.next_action().await.params), format!("alias|{native}"));
            }
        }
        rt.stop().await;
    }
}

/// `rhaibot api list` is the engine's own registrations: everything a script's engine has is
/// listed with a description, and everything listed resolves when a script calls it.
mod surface {
    use std::sync::Arc;

    use rhai::{Dynamic, EvalAltResult, Scope};
    use rhaibot::bot::Bot;
    use rhaibot::catalog::{Kind, api_list, listing_engine};
    use rhaibot::event::Event;

    #[test]
    fn everything_registered_is_listed_with_a_description() {
        let engine = listing_engine();
        let list = api_list(None);
        let listed: Vec<&str> = list.functions.iter().map(|f| f.name.as_str()).collect();
        for f in &list.functions {
            assert!(!f.doc.is_empty(), "{} is registered without a description", f.name);
        }
        // Every parameter of a table can be given positionally.
        let tables = [
            ("onebot", rhaibot::adapter::onebot11::actions::ACTIONS),
            ("milky", rhaibot::adapter::milky::actions::ACTIONS),
            ("msg", rhaibot::adapter::onebot11::segments::SEGMENTS),
        ];
        for (ns, table) in tables {
            for a in table {
                let name = format!("{ns}::{}", a.fn_name());
                let f = list.functions.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} not listed"));
                assert_eq!(f.params.len(), a.params.len(), "{name}: not every parameter can be given positionally");
            }
        }
        for signature in engine.gen_fn_signatures(false) {
            // `ns::name(..)`, `name(..)`, `get$name(ev: Event)`, `name(ev: Event, ..)`
            let (name, rest) = signature.split_once('(').expect("a signature");
            let name = name.trim_start_matches("get$");
            let on_type = ["Event", "KvSpace"]
                .into_iter()
                .find(|t| rest.starts_with(&format!("ev: {t}")) || rest.starts_with(&format!("space: {t}")));
            let on_type = on_type.filter(|_| !name.contains("::"));
            let expected = match (on_type, name) {
                (Some(t), "index$get$") => format!("{t}[]"),
                (Some(t), n) => format!("{t}.{n}"),
                (None, n) => n.to_owned(),
            };
            assert!(listed.contains(&expected.as_str()), "{signature} is callable but `{expected}` is not listed");
        }
    }

    #[test]
    fn everything_listed_resolves_in_a_script() {
        let engine = listing_engine();
        let bot = Bot::detached("t", &rhaibot::adapter::onebot11::PROTOCOL);
        let ev = Event::new(bot, "message.private".into(), &[], serde_json::json!({"post_type": "message"}));
        let mut scope = Scope::new();
        scope.push("ev", Arc::new(ev));
        scope.push("space", engine.eval::<Dynamic>("kv::shared_space()").expect("kv::shared_space"));
        let dummy = |ty: &str| match ty {
            "string" | "message" => "\"\"",
            "int" => "0",
            "bool" => "false",
            "number" => "0.0",
            "array" => "[]",
            "map" => "#{}",
            "Fn" => "|a| ()",
            "Event" => "ev",
            _ => "()",
        };
        for f in api_list(None).functions {
            let args: Vec<&str> = f.types.iter().map(|t| dummy(t)).collect();
            let (receiver, name) = match f.name.split_once('.') {
                Some((ty, name)) => (if ty == "Event" { "ev" } else { "space" }, name),
                None => ("", f.name.as_str()),
            };
            let code = match f.kind {
                Kind::Function => format!("{name}({})", args.join(", ")),
                Kind::Method => format!("{receiver}.{name}({})", args.join(", ")),
                Kind::Property => format!("{receiver}.{name}"),
                Kind::Index => format!("{}[\"x\"]", if f.name.starts_with("Event") { "ev" } else { "space" }),
            };
            if let Err(e) = engine.eval_with_scope::<Dynamic>(&mut scope, &code) {
                let mut inner = &*e;
                while let EvalAltResult::ErrorInFunctionCall(_, _, next, _) = inner {
                    inner = next;
                }
                let missing = matches!(inner, EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.contains(name.trim_end_matches("[]")))
                    || matches!(inner, EvalAltResult::ErrorDotExpr(..) | EvalAltResult::ErrorPropertyNotFound(..));
                assert!(!missing, "`{}` is listed but `{code}` does not resolve: {e}", f.name);
            }
        }
    }
}

//! The generated tables against `../shared/catalog`: drift fails here, not in production.

use std::path::PathBuf;

use rhaibot::adapter::onebot11::{actions::ACTIONS, events::EVENTS};
use serde_json::Value;

fn catalog(file: &str) -> Option<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/catalog").join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("catalog is JSON")),
        Err(_) => {
            // The catalog lives beside the project (shared/); a checkout without it has nothing to compare.
            eprintln!("note: {} not found; drift check skipped", path.display());
            None
        }
    }
}

#[test]
fn every_catalog_action_is_in_the_table_with_its_parameters_in_order() {
    let Some(cat) = catalog("onebot11.json") else { return };
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
    let Some(cat) = catalog("events.json") else { return };
    let names: Vec<&str> =
        cat["onebot11"]["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    let ours: Vec<&str> = EVENTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(ours, names);
}

#!/usr/bin/env python3
"""Generates src/adapter/onebot11/{actions,events,segments}.rs from ../shared/catalog/.

usage: python3 tools/gen_onebot_actions.py [CATALOG_DIR]   (run from the project root)

The seed's own tables are the source; where the seed contradicts the OneBot 11 standard
(catalog README, "Ambiguities and contradictions"), the standard wins and the fix is listed in
OVERRIDES below with the reason. Actions the seed leaves out are added from the standard.
"""
import json
import sys
from pathlib import Path

CATALOG = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/catalog")
OUT = Path("src/adapter/onebot11/actions.rs")
EVENTS_OUT = Path("src/adapter/onebot11/events.rs")
SEGMENTS_OUT = Path("src/adapter/onebot11/segments.rs")
# Segment data types: unions and nested models are taken as they come.
SEG_TYPES = {"str": "Str", "int": "Int", "int|str": "Any", "str|[obj]": "Any", "[obj]": "Array"}

TYPES = {"int": "Int", "str": "Str", "bool": "Bool", "num": "Num", "[obj]": "Array",
         "[str]": "Array", "[int]": "Array", "obj": "Object", "any": "Any", "message": "Message"}

# (action, param) -> required. The seed marks these required; the OneBot 11 standard makes them
# optional with a default, and implementations accept them missing.
OPTIONAL_IN_STANDARD = {
    ("set_friend_add_request", "remark"), ("set_group_admin", "enable"), ("set_group_ban", "duration"),
    ("set_group_kick", "reject_add_request"), ("get_cookies", "domain"),
}
# The seed types `message` as [object] only; the standard takes a CQ string, one segment or an array.
MESSAGE_PARAMS = {"message"}
# The standard's `auto_escape` is missing from the seed's send_private_msg / send_group_msg.
EXTRA_PARAMS = {
    "send_private_msg": [("auto_escape", "bool", False)],
    "send_group_msg": [("auto_escape", "bool", False)],
}
# Standard OneBot 11 actions the seed does not document (OneBot 11 api/public.md).
STANDARD = [
    ("send_msg", [("message_type", "str", False), ("user_id", "int", False), ("group_id", "int", False),
                  ("message", "message", True), ("auto_escape", "bool", False)]),
    ("set_group_anonymous_ban", [("group_id", "int", True), ("anonymous", "obj", False),
                                 ("anonymous_flag", "str", False), ("duration", "int", False)]),
    ("set_group_anonymous", [("group_id", "int", True), ("enable", "bool", False)]),
    ("get_csrf_token", []),
    ("get_credentials", [("domain", "str", False)]),
    ("can_send_image", []),
    ("can_send_record", []),
    (".handle_quick_operation", [("context", "obj", True), ("operation", "obj", True)]),
]


def param(name, ty, required):
    kind = "Message" if name in MESSAGE_PARAMS else TYPES[ty]
    return f'p("{name}", Ty::{kind}, {"true" if required else "false"})'


def main():
    data = json.loads((CATALOG / "onebot11.json").read_text(encoding="utf-8"))
    rows = []
    for a in data["actions"]:
        ps = [(p["name"], p["type"], p["required"] and (a["action"], p["name"]) not in OPTIONAL_IN_STANDARD)
              for p in a["params"]]
        ps += EXTRA_PARAMS.get(a["action"], [])
        rows.append((a["action"], ps, a.get("title", "")))
    for name, ps in STANDARD:
        rows.append((name, ps, "OneBot 11 standard action (not in seed 001)"))
    write_table(OUT, "onebot11.json", [
        "//! Every OneBot 11 action: name, parameters in documented order, required or not.",
        "//!",
    ], "A test fails when this table drifts from the catalog.", [
        "use crate::api::{Action, Ty, p};",
        "",
        "/// The OneBot 11 action table.",
        "pub const ACTIONS: &[Action] = &[",
    ], [f'    Action {{ name: "{name}", doc: "{escape(title)}", params: &[{", ".join(param(*x) for x in ps)}] }},'
        for name, ps, title in rows])

    events = json.loads((CATALOG / "events.json").read_text(encoding="utf-8"))["onebot11"]["events"]
    write_table(EVENTS_OUT, "events.json", [
        "//! Every OneBot 11 event name (`post_type.detail_type[.sub_type]`) with its seed title.",
        "//!",
    ], "", [
        "/// `(native name, title)` of every event in the seed.",
        "pub const EVENTS: &[(&str, &str)] = &[",
    ], [f'    ("{ev["name"]}", "{escape(ev.get("title", ""))}"),' for ev in events])

    segments = json.loads((CATALOG / "segments.json").read_text(encoding="utf-8"))["onebot11"]["segments"]
    rows = []
    for seg in segments:
        fields = [f for f in seg.get("data_fields", []) if "[]" not in f["name"] and "." not in f["name"]]
        ps = ", ".join(f'p("{f["name"]}", Ty::{SEG_TYPES[f["type"]]}, {"true" if f["required"] else "false"})' for f in fields)
        rows.append(f'    Action {{ name: "{seg["type"]}", doc: "{escape(seg.get("title", ""))}", params: &[{ps}] }},')
    write_table(SEGMENTS_OUT, "segments.json", [
        "//! Every OneBot 11 message segment type with its `data` fields, in documented order.",
        "//!",
    ], "The `msg::` builders are made from this table.", [
        "use crate::api::{Action, Ty, p};",
        "",
        "/// Segment types as actions: the name is the segment `type`, the params its `data` fields.",
        "pub const SEGMENTS: &[Action] = &[",
    ], rows)


def escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


def write_table(path, source, doc, note, head, rows, tool="tools/gen_onebot_actions.py"):
    """Writes one generated Rust file: module doc, provenance, declarations, rows."""
    lines = doc + [
        f"//! Generated by `{tool}` from `../shared/catalog/{source}`;",
        "//! do not edit by hand." + (f" {note}" if note else ""),
        "",
    ] + head + rows + ["];"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(rows)} rows)")

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generates src/adapter/milky/{actions,events}.rs from ../shared/catalog/.

usage: python3 tools/gen_milky.py [CATALOG_DIR]   (run from the project root)

Milky's own tables (seed 001's `/api/...` sections) are the source. Events newer than the
seed are added from the Milky spec (EXTRA_EVENTS, with the version that added them).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_onebot_actions import escape, write_table  # noqa: E402

CATALOG = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/catalog")
TOOL = "tools/gen_milky.py"
TYPES = {"int": "Int", "str": "Str", "bool": "Bool", "int|null": "Int", "str|null": "Str", "bool|null": "Bool",
         "[OutgoingSegment]": "Message", "[OutgoingForwardedMessage]": "Array", "[int]": "Array", "[str]": "Array",
         "obj": "Object"}
# Event types the Milky spec added after the seed was taken (Milky 1.1 and 1.2); their data is
# delivered as it comes.
EXTRA_EVENTS = [
    ("peer_pin_change", "会话置顶变更 (Milky spec, newer than seed 001)"),
    ("group_disband", "群解散 (Milky spec, newer than seed 001)"),
]


def main():
    data = json.loads((CATALOG / "milky.json").read_text(encoding="utf-8"))
    rows = []
    for a in data["actions"]:
        ps = ", ".join(f'p("{x["name"]}", Ty::{TYPES[x["type"]]}, {"true" if x["required"] else "false"})'
                       for x in a["params"])
        rows.append(f'    Action {{ name: "{a["action"]}", doc: "{escape(a.get("title", ""))}", params: &[{ps}] }},')
    write_table(Path("src/adapter/milky/actions.rs"), "milky.json", [
        "//! Every Milky action (`POST /api/<action>`): name, parameters in documented order.",
        "//!",
    ], "A test fails when this table drifts from the catalog.", [
        "use crate::api::{Action, Ty, p};",
        "",
        "/// The Milky action table.",
        "pub const ACTIONS: &[Action] = &[",
    ], rows, TOOL)

    events = json.loads((CATALOG / "events.json").read_text(encoding="utf-8"))["milky"]["events"]
    rows = [f'    ("milky.{ev["event_type"]}", "{escape(ev.get("title", ""))}"),' for ev in events]
    rows += [f'    ("milky.{name}", "{escape(title)}"),' for name, title in EXTRA_EVENTS]
    write_table(Path("src/adapter/milky/events.rs"), "events.json", [
        "//! Every Milky event name (`milky.<event_type>`) with its seed title.",
        "//!",
    ], "", [
        "/// `(native name, title)` of every Milky event.",
        "pub const EVENTS: &[(&str, &str)] = &[",
    ], rows, TOOL)


if __name__ == "__main__":
    main()

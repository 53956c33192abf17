#!/usr/bin/env python3
"""Generates src/adapter/qq/{actions,events}.rs from ../shared/catalog/ (qq_official).

usage: python3 tools/gen_qq.py [CATALOG_DIR]   (run from the project root)
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_onebot_actions import escape, write_table  # noqa: E402

CATALOG = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/catalog")
TOOL = "tools/gen_qq.py"
TYPES = {"str": "Str", "str|None": "Str", "int": "Int", "int|None": "Int", "bool": "Bool", "bool|None": "Bool",
         "list|None": "Array", "list[str]": "Array", "list[{str: str/list[str]}]|None": "Array", "dict|None": "Object",
         "list[Model. AnnounceRecommendChannels]|None": "Array",
         # A path to a local file (the SDK also takes bytes, which a script does not have).
         "bytes|BinaryIO|str|PathLike[str]|None": "Str",
         # Text, or one of the SDK's message models (a map here).
         "str|None|BaseMessageApiModel": "Any",
         "Scope|Iterable[Scope]": "Any", "BotCommandObject": "Any"}
# Where the seed's type is not what the SDK sends: `mute_members` takes a list of user ids
# (sent as `user_ids`; one id is accepted too); `create_role`'s colour may be "#RRGGBB" or a
# number, and `hoist` a bool or 0/1.
OVERRIDES = {("mute_members", "user_id"): "Any", ("create_role", "color"): "Any", ("patch_role", "color"): "Any",
             ("create_role", "hoist"): "Any", ("patch_role", "hoist"): "Any",
             ("create_thread", "content"): "Any", ("create_thread", "format_"): "Int"}
# Functions newer than seed 000 (the platform's api-v2 docs and qg_botsdk after the seed):
# recalling the bot's own group and C2C messages, within 2 minutes of sending them.
EXTRA = [
    ("delete_group_msg", "撤回 QQ 群聊消息 (api-v2 docs, newer than seed 000)",
     "DELETE /v2/groups/{group_openid}/messages/{message_id}", [("group_openid", "Str"), ("message_id", "Str")]),
    ("delete_c2c_msg", "撤回 QQ 单聊消息 (api-v2 docs, newer than seed 000)",
     "DELETE /v2/users/{user_openid}/messages/{message_id}", [("user_openid", "Str"), ("message_id", "Str")]),
]


def actions():
    data = json.loads((CATALOG / "qq_official.json").read_text(encoding="utf-8"))
    rows, routes = [], []
    for a in data["actions"]:
        ps = []
        for x in a["params"]:
            # The seed marks optional parameters required ("无，必选参数"); the SDK's signature decides.
            required = x.get("required_in_sdk_source", x["required"])
            ty = OVERRIDES.get((a["action"], x["name"]), TYPES[x["type"]])
            ps.append(f'p("{x["name"]}", Ty::{ty}, {"true" if required else "false"})')
        rows.append(f'    Action {{ name: "{a["action"]}", doc: "{escape(a.get("title", ""))}", params: &[{", ".join(ps)}] }},')
        routes.append(f'    ("{a["action"]}", "{a.get("rest") or ""}"),')
    for name, title, rest, params in EXTRA:
        ps = ", ".join(f'p("{n}", Ty::{t}, true)' for n, t in params)
        rows.append(f'    Action {{ name: "{name}", doc: "{escape(title)}", params: &[{ps}] }},')
        routes.append(f'    ("{name}", "{rest}"),')
    write_table(Path("src/adapter/qq/actions.rs"), "qq_official.json", [
        "//! Every official-platform function (`qq::<name>`, qg_botsdk's names and parameters) and",
        "//! its REST route (`METHOD /path`, empty for the SDK-local ones).",
        "//!",
    ], "A test fails when this table drifts from the catalog.", [
        "use crate::api::{Action, Ty, p};",
        "",
        "/// `(function, \"METHOD /path\")` of every function, in table order (`upload_media` has two).",
        "pub const ROUTES: &[(&str, &str)] = &[",
    ] + routes + [
        "];",
        "",
        "/// The function table.",
        "pub const ACTIONS: &[Action] = &[",
    ], rows, TOOL)


def main():
    actions()
    events = json.loads((CATALOG / "events.json").read_text(encoding="utf-8"))["qq_official"]["events"]
    rows = []
    names = [f'    ("qq.{ev["t"]}", "{escape(ev.get("title", ""))}"),' for ev in events]
    for ev in events:
        bit = ev.get("intent_bit")
        bit = "None" if bit is None else f"Some({bit})"
        rows.append(f'    QqEvent {{ name: "qq.{ev["t"]}", title: "{escape(ev.get("title", ""))}", intent_bit: {bit} }},')
    write_table(Path("src/adapter/qq/events.rs"), "events.json", [
        "//! Every official-platform dispatch event (`qq.<t>`) with its title and intent bit.",
        "//!",
    ], "", [
        "/// One dispatch event.",
        "#[derive(Debug, Clone, Copy)]",
        "pub struct QqEvent {",
        "    /// `qq.<t>`.",
        "    pub name: &'static str,",
        "    /// The docs' title.",
        "    pub title: &'static str,",
        "    /// The intent bit that subscribes to it (`None`: always delivered).",
        "    pub intent_bit: Option<u32>,",
        "}",
        "",
        "/// `(native name, title)` of every dispatch event (the adapter's event table).",
        "pub const NAMES: &[(&str, &str)] = &[",
    ] + names + [
        "];",
        "",
        "/// Every dispatch event.",
        "pub const EVENTS: &[QqEvent] = &[",
    ], rows, TOOL)


if __name__ == "__main__":
    main()

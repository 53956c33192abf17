#!/usr/bin/env python3
"""Generates src/adapter/qq/events.rs from ../shared/catalog/events.json (qq_official).

usage: python3 tools/gen_qq.py [CATALOG_DIR]   (run from the project root)
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_onebot_actions import escape, write_table  # noqa: E402

CATALOG = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/catalog")


def main():
    events = json.loads((CATALOG / "events.json").read_text(encoding="utf-8"))["qq_official"]["events"]
    rows = []
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
        "/// Every dispatch event.",
        "pub const EVENTS: &[QqEvent] = &[",
    ], rows, "tools/gen_qq.py")


if __name__ == "__main__":
    main()

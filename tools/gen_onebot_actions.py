#!/usr/bin/env python3
"""Generates src/adapter/onebot11/{actions,events,segments}.rs from ../shared/catalog/.

usage: python3 tools/gen_onebot_actions.py [CATALOG_DIR]   (run from the project root)

The seed's own tables are the source; where the seed contradicts the OneBot 11 standard
(catalog README, "Ambiguities and contradictions"), the standard wins and the fix is listed in
OVERRIDES below with the reason. Actions the seed leaves out are added from the standard.
"""
import json
import re
import sys
from pathlib import Path

CATALOG = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/catalog")
OUT = Path("src/adapter/onebot11/actions.rs")
EVENTS_OUT = Path("src/adapter/onebot11/events.rs")
SEGMENTS_OUT = Path("src/adapter/onebot11/segments.rs")
# Segment data types: unions and nested models are taken as they come.
SEG_TYPES = {"str": "Str", "int": "Int", "int|str": "Any", "str|[obj]": "Any", "[obj]": "Array"}
# Fields the seed types as strings that are not free text: ids (a number is taken as its
# digits, a fraction or a boolean refused) and files (a path or URI: a number is a mistake).
SEG_FIELD_TYPES = {("at", "qq"): "Id", ("reply", "id"): "Id", ("face", "id"): "Id"}
SEG_FILE_FIELDS = {"file", "url", "path", "thumb"}
MEDIA_SEGMENTS = {"image", "record", "video", "file"}

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

# What every action does, in English: one line each, written from the seed's section (title,
# parameters, notes, examples), LLBot's implementation and the OneBot 11 standard. The seed's
# Chinese titles are not used; where a title is wrong (send_private_msg / send_group_msg are
# titled "send a JSON card message" after their only example), the action's real behaviour is
# described. Every action must have one: `described` raises otherwise.
ACTION_DOCS = {
    # Users and friends
    "send_like": "like a user's profile card `times` times",
    "get_friend_list": "the bot's friend list",
    "get_friends_with_category": "the bot's friends, grouped by friend category",
    "delete_friend": "remove a friend",
    "set_friend_add_request": "accept (with a `remark`) or reject a friend request (`flag` from the request event)",
    "set_friend_remark": "set a friend's remark",
    "get_stranger_info": "a user's public profile",
    "set_qq_avatar": "set the bot's avatar (`file`: file://, http:// or base64://)",
    "friend_poke": "poke a friend (double-click their avatar)",
    "get_profile_like": "the users whose profile cards the bot liked, a page at a time",
    "get_profile_like_me": "the users who liked the bot's profile card, a page at a time",
    "get_robot_uin_range": "the QQ number ranges of official bots",
    "set_friend_category": "move a friend to another friend category",
    "get_qq_avatar": "the avatar URL of a user (`user_id`) or a group (`group_id`)",
    "get_doubt_friends_add_request": "friend requests QQ filtered out as suspicious",
    "set_doubt_friends_add_request": "accept a filtered friend request (`flag` from get_doubt_friends_add_request)",
    "set_qq_profile": "set the bot's nickname and personal note",
    # Groups
    "get_group_list": "the groups the bot is in",
    "get_group_info": "a group's details",
    "get_group_member_list": "a group's member list",
    "get_group_member_info": "a group member's details",
    "group_poke": "poke a group member (double-click their avatar)",
    "get_group_system_msg": "the bot's group system messages: join requests and invitations to groups",
    "set_group_add_request": "accept or reject a group join request or invitation (`flag` from the request event)",
    "set_group_leave": "leave a group",
    "set_group_admin": "make a group member an admin, or with `enable` false remove them as admin",
    "set_group_card": "set a member's group card (name in the group); empty clears it",
    "set_group_ban": "mute a group member for `duration` seconds (0 unmutes)",
    "set_group_whole_ban": "mute or unmute the whole group",
    "get_group_shut_list": "the muted members of a group",
    "set_group_name": "rename a group",
    "batch_delete_group_member": "kick several members from a group at once",
    "set_group_kick": "kick a member from a group, optionally rejecting their future join requests",
    "set_group_special_title": "set a member's special title in a group; empty removes it",
    "get_group_honor_info": "a group's honours (talkative, performer, legend, strong newbie, emotion, or all)",
    "get_essence_msg_list": "a group's essence messages",
    "set_essence_msg": "make a message a group essence message",
    "delete_essence_msg": "remove a message from a group's essence messages",
    "get_group_at_all_remain": "whether the bot can @everyone in a group, and how many such mentions are left",
    "_send_group_notice": "publish a group announcement, optionally with an image",
    "_get_group_notice": "a group's announcements",
    "send_group_sign": "check in (sign in) to a group",
    "set_group_msg_mask":
        "set how the bot receives a group's messages (`mask`: 1 notify, 2 group assistant, 3 block, 4 silent)",
    "set_group_remark": "set the bot's remark for a group; empty clears it",
    "get_group_ignore_add_request": "filtered join requests of a group (newer LLBot: use get_group_system_msg)",
    "upload_group_album": "upload images to a group album",
    "get_group_album_list": "a group's albums",
    "create_group_album": "create a group album",
    "delete_group_album": "delete a group album",
    "_delete_group_notice": "delete a group announcement",
    # Messages
    "forward_friend_single_msg": "forward one message to a friend",
    "forward_group_single_msg": "forward one message to a group",
    "get_msg": "a message, by `message_id`",
    "delete_msg": "recall a message",
    "get_file": "a received file's details (path, URL, size, name), downloading it unless `download` is false",
    "get_image": "a received image's details (path, URL, size, name)",
    "get_record": "a received voice message, converted to `out_format` (mp3 by default)",
    "set_msg_emoji_like": "add an emoji reaction to a group message",
    "unset_msg_emoji_like": "remove the bot's emoji reaction from a group message",
    "get_friend_msg_history": "a friend chat's message history, `count` messages from `message_seq`",
    "get_group_msg_history": "a group's message history, `count` messages from `message_seq` (0: the latest)",
    "get_forward_msg": "the messages inside a merged-forward message",
    "mark_msg_as_read": "mark a message's chat as read up to that message",
    "voice_msg_to_text": "transcribe a voice message to text",
    "send_group_ai_record": "send `text` to a group as an AI voice message in voice `character`",
    "get_ai_characters": "the AI voices available in a group",
    "send_private_msg": "send a private message to `user_id`",
    "send_private_forward_msg": "send a merged-forward message (nodes) to a friend",
    "send_group_msg": "send a message to a group",
    "send_group_forward_msg": "send a merged-forward message (nodes) to a group",
    # Files
    "upload_group_file": "upload a file to a group's files (into `folder_id`, or the root folder)",
    "set_group_file_forever": "make a temporary group file permanent",
    "delete_group_file": "delete a group file",
    "move_group_file": "move a group file to another folder",
    "create_group_file_folder": "create a folder in a group's files",
    "delete_group_folder": "delete a folder from a group's files",
    "get_group_file_system_info": "a group's file count, file limit and used and total space",
    "get_group_root_files": "the files and folders in a group's root folder",
    "get_group_files_by_folder": "the files and folders in a group folder",
    "rename_group_file_folder": "rename a folder in a group's files",
    "get_group_file_url": "the download URL of a group file",
    "get_private_file_url": "the download URL of a file sent in a private chat",
    "upload_private_file": "send a file to a friend",
    "upload_flash_file": "upload files to QQ flash transfer, returning the file set id and share link",
    "download_flash_file": "download a flash-transfer file set (by share link or id)",
    "get_flash_file_info": "a flash-transfer file set's details (by share link or id)",
    "download_file": "download a URL (or save base64 data) into the implementation's cache, returning the path",
    # System
    "get_login_info": "the bot's QQ number and nickname",
    "get_version_info": "the implementation's name and version, and the OneBot version",
    "get_status": "the bot's status (online, good)",
    "clean_cache": "clear the implementation's cache (no effect in LLOneBot 5.0+)",
    "get_cookies": "the cookies for `domain`, and the bkn (CSRF token)",
    "set_online_status": "set the bot's online status, extended status and battery level",
    "set_restart": "restart the OneBot implementation",
    "scan_qrcode": "decode the QR codes in an image",
    "ocr_image": "recognize the text in an image (OCR)",
    "get_rkey": "the rkeys that authorize private and group image URLs",
    "get_recommend_face": "sticker URLs QQ recommends for a word",
    "fetch_custom_face": "the URLs of the bot's saved stickers",
    "send_pb": "send a raw protobuf packet (`cmd`, hex body) and return the reply",
    # OneBot 11 standard actions the seed leaves out (STANDARD)
    "send_msg": "send a private or group message (`message_type`, or whichever id is given)",
    "set_group_anonymous_ban":
        "mute an anonymous group member (`anonymous` or `anonymous_flag`) for `duration` seconds",
    "set_group_anonymous": "allow or forbid anonymous chat in a group",
    "get_csrf_token": "the CSRF token for QQ web APIs",
    "get_credentials": "the cookies and CSRF token for `domain`",
    "can_send_image": "whether images can be sent",
    "can_send_record": "whether voice messages can be sent",
    ".handle_quick_operation": "apply a quick operation (reply, recall, kick, mute, approve) to an event",
}

# What every `msg::` segment builder makes, in English (segments.json; LLBot's outgoing
# transform and the OneBot 11 message segment docs).
SEGMENT_DOCS = {
    "text": "plain text",
    "image": "an image (`file`: file://, http(s):// or base64://)",
    "video": "a video (`file`: file://, http(s):// or base64://)",
    "record": "a voice message (`file`: file://, http(s):// or base64://)",
    "file": "a file (`file`: file://, http(s):// or base64://)",
    "flash_file": "a QQ flash-transfer file set, by `file_set_id`",
    "at": "an @-mention of `qq` (\"all\": everyone)",
    "reply": "a reply to (quote of) message `id`",
    "json": "a JSON card (`data`: the card as JSON text; QQ only shows signed cards)",
    "xml": "an XML card (`data`: the card as XML text)",
    "face": "a QQ face (built-in emoji), by `id`",
    "mface": "a QQ sticker-store sticker",
    "markdown": "markdown content",
    "node": "a merged-forward node: message `id`, or `content` shown as from `user_id`/`nickname`",
    "forward": "a merged-forward message, by forward `id`",
    "music": "a music share card (`type` and `id`, or custom with `url`, `audio`, `title`)",
    "poke": "a poke at `qq` (`id`: the kind of poke)",
    "dice": "a dice roll (`result` 1-6)",
    "rps": "rock-paper-scissors (`result`: 1 rock, 2 scissors, 3 paper)",
    "contact": "a recommended contact card: a user (`type` \"qq\") or a group (`type` \"group\")",
    "shake": "a window shake",
    "keyboard": "a keyboard of buttons (`rows`)",
}

# Chinese, Japanese and Korean characters and full-width punctuation: a doc string has none.
NOT_ENGLISH = re.compile(
    r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


# English one-liners of the OneBot 11 events (seed 001's data models, by event name).
EVENT_DOCS = {
    "message.private": "a private message to the bot (a friend's or a temporary chat's)",
    "message.group": "a message in a group the bot is in",
    "message_sent.private": "a private message the bot's own account sent (LLBot extension)",
    "message_sent.group": "a group message the bot's own account sent (LLBot extension)",
    "notice.notify.poke": "someone poked someone (the bot, or another member)",
    "notice.notify.poke_recall": "a poke was taken back",
    "notice.friend_recall": "a friend recalled a private message",
    "request.friend": "someone asks to be the bot's friend (answer with its flag)",
    "notice.friend_add": "a new friend was added",
    "notice.notify.profile_like": "someone liked the bot's profile",
    "notice.group_upload": "a file was uploaded to a group",
    "request.group": "someone asks to join a group, or invites the bot to one (answer with its flag)",
    "notice.group_dismiss": "a group was disbanded",
    "notice.group_increase": "a member joined a group",
    "notice.group_decrease": "a member left a group or was removed",
    "notice.notify.title": "a member's special title changed",
    "notice.group_msg_emoji_like": "someone reacted to a group message with an emoji",
    "notice.group_recall": "a group message was recalled",
    "notice.group_admin": "a member became or stopped being a group admin",
    "notice.group_ban": "a member was muted or unmuted",
    "notice.essence": "a message was added to or removed from a group's essence list",
    "notice.flash_file": "a flash file transfer event (LLBot extension)",
    "meta_event.heartbeat": "the implementation's periodic heartbeat, with its status",
    "meta_event.lifecycle": "the implementation connected, enabled or disabled",
}


def described(docs, names, what):
    """`docs` checked against the table's `names`: raises unless every name has a non-empty English
    one-liner and every description belongs to a name (so a new catalog entry cannot slip in
    untranslated, nor a stale one linger)."""
    problems = []
    missing = [n for n in names if n not in docs]
    if missing:
        problems.append(f"no English description for {len(missing)} {what}: {', '.join(missing)}")
    unused = sorted(set(docs) - set(names))
    if unused:
        problems.append(f"descriptions for {what} not in the table: {', '.join(unused)}")
    for n in names:
        text = docs.get(n)
        if text is not None and (not text.strip() or "\n" in text or NOT_ENGLISH.search(text)):
            problems.append(f"{what} {n}: the description must be one non-empty line of English, got {text!r}")
    if problems:
        raise ValueError("\n".join(problems) + "\n(the generator's description table must match the catalog)")
    return docs


def param(name, ty, required):
    kind = "Message" if name in MESSAGE_PARAMS else TYPES[ty]
    return f'p("{name}", Ty::{kind}, {"true" if required else "false"})'


def seg_type(segment, field):
    """The `Ty` of a segment's data field."""
    if (segment, field["name"]) in SEG_FIELD_TYPES:
        return SEG_FIELD_TYPES[(segment, field["name"])]
    if segment in MEDIA_SEGMENTS and field["name"] in SEG_FILE_FIELDS and field["type"] == "str":
        return "File"
    return SEG_TYPES[field["type"]]


def main():
    data = json.loads((CATALOG / "onebot11.json").read_text(encoding="utf-8"))
    rows = []
    for a in data["actions"]:
        ps = [(p["name"], p["type"], p["required"] and (a["action"], p["name"]) not in OPTIONAL_IN_STANDARD)
              for p in a["params"]]
        ps += EXTRA_PARAMS.get(a["action"], [])
        rows.append((a["action"], ps))
    rows += STANDARD
    docs = described(ACTION_DOCS, [name for name, _ in rows], "OneBot 11 actions")
    write_table(OUT, "onebot11.json", [
        "//! Every OneBot 11 action: name, parameters in documented order, required or not.",
        "//!",
    ], "A test fails when this table drifts from the catalog.", [
        "use crate::api::{Action, Ty, p};",
        "",
        "/// The OneBot 11 action table.",
        "pub const ACTIONS: &[Action] = &[",
    ], [f'    Action {{ name: "{name}", doc: "{escape(docs[name])}", params: &[{", ".join(param(*x) for x in ps)}] }},'
        for name, ps in rows])

    events = json.loads((CATALOG / "events.json").read_text(encoding="utf-8"))["onebot11"]["events"]
    event_docs = described(EVENT_DOCS, [ev["name"] for ev in events], "OneBot 11 events")
    write_table(EVENTS_OUT, "events.json", [
        "//! Every OneBot 11 event name (`post_type.detail_type[.sub_type]`) with its description.",
        "//!",
    ], "", [
        "/// `(native name, description)` of every event in the seed.",
        "pub const EVENTS: &[(&str, &str)] = &[",
    ], [f'    ("{ev["name"]}", "{escape(event_docs[ev["name"]])}"),' for ev in events])

    segments = json.loads((CATALOG / "segments.json").read_text(encoding="utf-8"))["onebot11"]["segments"]
    docs = described(SEGMENT_DOCS, [seg["type"] for seg in segments], "OneBot 11 message segments")
    rows = []
    for seg in segments:
        fields = [f for f in seg.get("data_fields", []) if "[]" not in f["name"] and "." not in f["name"]]
        ps = ", ".join(f'p("{f["name"]}", Ty::{seg_type(seg["type"], f)}, {"true" if f["required"] else "false"})' for f in fields)
        rows.append(f'    Action {{ name: "{seg["type"]}", doc: "{escape(docs[seg["type"]])}", params: &[{ps}] }},')
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

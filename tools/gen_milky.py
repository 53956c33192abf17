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
from gen_onebot_actions import described, escape, write_table  # noqa: E402

CATALOG = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/catalog")
TOOL = "tools/gen_milky.py"
TYPES = {"int": "Int", "str": "Str", "bool": "Bool", "int|null": "Int", "str|null": "Str", "bool|null": "Bool",
         "[OutgoingSegment]": "Message", "[OutgoingForwardedMessage]": "Array", "[int]": "Array", "[str]": "Array",
         "obj": "Object"}
# Event types the Milky spec added after the seed was taken (Milky 1.1 and 1.2); their data is
# delivered as it comes.
EXTRA_EVENTS = ["peer_pin_change", "group_disband"]

# What every action does, in English: one line each, written from the seed's `/api/<action>`
# section and its `Api_<action>_input` / `_output` models (milky.json) and the Milky docs. The
# seed's Chinese titles are not used. Every action must have one: `described` raises otherwise.
ACTION_DOCS = {
    # System
    "get_login_info": "the bot's QQ number and nickname",
    "get_impl_info": "the implementation's name and version, its QQ protocol version and type, and the Milky version",
    "get_user_profile": "a user's profile (nickname, QID, age, sex, remark, bio, level, country, city, school)",
    "get_friend_list": "the bot's friend list",
    "get_friend_info": "a friend's details",
    "get_group_list": "the groups the bot is in",
    "get_group_info": "a group's details",
    "get_group_member_list": "a group's member list",
    "get_group_member_info": "a group member's details",
    "set_avatar": "set the bot's avatar (`uri`: file://, http(s):// or base64://)",
    "set_nickname": "set the bot's nickname",
    "set_bio": "set the bot's bio (personal signature)",
    "get_custom_face_url_list": "the URLs of the bot's saved stickers",
    "get_cookies": "the cookies for `domain`",
    "get_csrf_token": "the CSRF token for QQ web APIs",
    # Messages
    "send_private_message": "send a message to a friend",
    "send_group_message": "send a message to a group",
    "recall_private_message": "recall a message in a friend chat, by `message_seq`",
    "recall_group_message": "recall a message in a group, by `message_seq`",
    "get_message": "a message, by scene (friend, group, temp), peer and `message_seq`",
    "get_history_messages": "a chat's messages, newest first from `start_message_seq` (at most 30)",
    "get_resource_temp_url": "a temporary download URL for a resource (image, voice, video) by `resource_id`",
    "get_forwarded_messages": "the messages inside a merged-forward message, by `forward_id`",
    "mark_message_as_read": "mark a chat as read up to `message_seq`",
    # Friends
    "send_friend_nudge": "poke a friend (`is_self`: poke the bot itself in that chat)",
    "send_profile_like": "like a user's profile card `count` times",
    "delete_friend": "remove a friend",
    "get_friend_requests": "friend requests, filtered (risky accounts) or not",
    "accept_friend_request": "accept a friend request, by the requester's `initiator_uid`",
    "reject_friend_request": "reject a friend request, by the requester's `initiator_uid`, with an optional `reason`",
    # Groups
    "set_group_name": "rename a group",
    "set_group_avatar": "set a group's avatar (`image_uri`: file://, http(s):// or base64://)",
    "set_group_member_card": "set a member's group card (name in the group)",
    "set_group_member_special_title": "set a member's special title in a group",
    "set_group_member_admin": "make a group member an admin, or with `is_set` false remove them as admin",
    "set_group_member_mute": "mute a group member for `duration` seconds (0 unmutes)",
    "set_group_whole_mute": "mute the whole group, or with `is_mute` false unmute it",
    "kick_group_member": "kick a member from a group, optionally rejecting their future join requests",
    "get_group_announcements": "a group's announcements",
    "send_group_announcement": "publish a group announcement, optionally with an image",
    "delete_group_announcement": "delete a group announcement",
    "get_group_essence_messages": "a page of a group's essence messages",
    "set_group_essence_message": "make a message a group essence message, or with `is_set` false remove it",
    "quit_group": "leave a group",
    "send_group_message_reaction": "add an emoji reaction to a group message, or with `is_add` false remove it",
    "send_group_nudge": "poke a group member",
    "get_group_notifications":
        "group notifications: join requests, members' invitations, admin changes, kicks and quits",
    "accept_group_request": "accept a join request or a member's invitation of someone, by notification",
    "reject_group_request":
        "reject a join request or a member's invitation of someone, with an optional `reason`",
    "accept_group_invitation": "accept an invitation for the bot to join a group",
    "reject_group_invitation": "decline an invitation for the bot to join a group",
    # Files
    "upload_private_file": "send a file to a friend (`file_uri`: file://, http(s):// or base64://)",
    "upload_group_file": "upload a file to a group's files (`file_uri`: file://, http(s):// or base64://)",
    "get_private_file_download_url": "the download URL of a file sent in a friend chat",
    "get_group_file_download_url": "the download URL of a group file",
    "get_group_files": "the files and folders in a group folder (the root folder by default)",
    "move_group_file": "move a group file to another folder",
    "rename_group_file": "rename a group file",
    "delete_group_file": "delete a group file",
    "create_group_folder": "create a folder in a group's files",
    "rename_group_folder": "rename a folder in a group's files",
    "delete_group_folder": "delete a folder from a group's files",
}

# What every event means, in English (events.json's Milky `Event` union, the data fields of each
# type, and the Milky spec for EXTRA_EVENTS).
EVENT_DOCS = {
    "bot_offline": "the bot went offline (`reason`)",
    "message_receive": "a message arrived (friend, group or temp chat)",
    "message_recall": "a message was recalled",
    "friend_request": "someone asked to be the bot's friend",
    "group_join_request": "someone asked to join a group",
    "group_invited_join_request": "a group member invited someone to join the group",
    "group_invitation": "someone invited the bot to join a group",
    "friend_nudge": "a poke in a friend chat, sent or received by the bot",
    "friend_file_upload": "a file was sent in a friend chat",
    "group_admin_change": "a group member was made an admin or removed as admin",
    "group_essence_message_change": "a group message was made an essence message or removed from them",
    "group_member_increase": "someone joined a group",
    "group_member_decrease": "someone left a group or was kicked",
    "group_name_change": "a group was renamed",
    "group_message_reaction": "an emoji reaction was added to or removed from a group message",
    "group_mute": "a group member was muted or unmuted",
    "group_whole_mute": "whole-group mute was turned on or off",
    "group_nudge": "a poke in a group",
    "group_file_upload": "a file was uploaded to a group",
    "peer_pin_change": "a friend or group chat was pinned or unpinned",
    "group_disband": "a group was disbanded",
}


def main():
    data = json.loads((CATALOG / "milky.json").read_text(encoding="utf-8"))
    docs = described(ACTION_DOCS, [a["action"] for a in data["actions"]], "Milky actions")
    rows = []
    for a in data["actions"]:
        ps = ", ".join(f'p("{x["name"]}", Ty::{TYPES[x["type"]]}, {"true" if x["required"] else "false"})'
                       for x in a["params"])
        rows.append(f'    Action {{ name: "{a["action"]}", doc: "{escape(docs[a["action"]])}", params: &[{ps}] }},')
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
    names = [ev["event_type"] for ev in events] + EXTRA_EVENTS
    docs = described(EVENT_DOCS, names, "Milky events")
    rows = [f'    ("milky.{name}", "{escape(docs[name])}"),' for name in names]
    write_table(Path("src/adapter/milky/events.rs"), "events.json", [
        "//! Every Milky event name (`milky.<event_type>`) with what it means.",
        "//!",
    ], "", [
        "/// `(native name, description)` of every Milky event.",
        "pub const EVENTS: &[(&str, &str)] = &[",
    ], rows, TOOL)


if __name__ == "__main__":
    main()

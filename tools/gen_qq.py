#!/usr/bin/env python3
"""Generates src/adapter/qq/{actions,events}.rs from ../shared/catalog/ (qq_official).

usage: python3 tools/gen_qq.py [CATALOG_DIR]   (run from the project root)
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gen_onebot_actions import described, escape, write_table  # noqa: E402

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
    ("delete_group_msg", "DELETE /v2/groups/{group_openid}/messages/{message_id}",
     [("group_openid", "Str"), ("message_id", "Str")]),
    ("delete_c2c_msg", "DELETE /v2/users/{user_openid}/messages/{message_id}",
     [("user_openid", "Str"), ("message_id", "Str")]),
]

# What every function does, in English: one line each, written from the seed's section (the
# "用于..." line, parameters and notes), the catalog's REST route and notes, and the platform's
# docs. "Guild" is a QQ channel (频道), "channel" a sub-channel (子频道). The seed's Chinese
# titles are not used. Every function must have one: `described` raises otherwise.
ACTION_DOCS = {
    # Bot (SDK-local and user)
    "wait_for": "wait for the next message in `scope` that matches a command (at most `timeout` seconds)",
    "get_bot_id": "the bot's own user id (deprecated in qg_botsdk)",
    "get_bot_info": "the bot's own user details (id, username, avatar)",
    "get_bot_guilds": "every guild the bot has joined",
    # Guilds and channels
    "get_guild_info": "a guild's details",
    "get_guild_channels": "the channels of a guild",
    "get_channels_info": "a channel's details",
    "create_channels": "create a channel in a guild (the bot needs channel management permission)",
    "patch_channels": "change a channel's name, position, group, privacy or speak permission",
    "delete_channels": "delete a channel",
    "get_online_nums": "how many users are online in a voice or live channel",
    # Members
    "get_guild_members": "every member of a guild",
    "get_role_members": "every member of a guild who has role `role_id`",
    "get_member_info": "a guild member's details",
    "delete_member": "remove a member from a guild, optionally blacklisting them and recalling their recent messages",
    # Roles
    "get_guild_roles": "a guild's roles",
    "create_role": "create a guild role (name, colour, shown separately in the member list)",
    "patch_role": "change a guild role's name, colour or separate display",
    "delete_role": "delete a guild role",
    "create_role_member": "give a guild member a role (role 5, channel admin, needs `channel_id`)",
    "delete_role_member": "take a role from a guild member (role 5, channel admin, needs `channel_id`)",
    # Channel permissions
    "get_channel_member_permission": "a member's permissions in a channel",
    "put_channel_member_permission": "grant (`add`) or revoke (`remove`) a member's permissions in a channel",
    "get_channel_role_permission": "a role's permissions in a channel",
    "put_channel_role_permission": "grant (`add`) or revoke (`remove`) a role's permissions in a channel",
    # Guild messages
    "get_message_info": "a message in a channel, by id",
    "send_msg": "send a message to a guild channel (a reply when `message_id` or `event_id` is given)",
    "send_embed": "send an embed message to a channel (deprecated: send_msg with an embed)",
    "send_ark_23": "send an ark template 23 message (lines of text with links) to a channel (deprecated)",
    "send_ark_24": "send an ark template 24 message (text with a thumbnail) to a channel (deprecated)",
    "send_ark_37": "send an ark template 37 message (a large picture) to a channel (deprecated)",
    "send_markdown": "send a markdown message (template or native, optionally a keyboard) to a channel (deprecated)",
    "delete_msg": "recall a message in a channel (as admin, members' messages too)",
    "get_guild_setting": "the bot's message frequency settings in a guild",
    # Direct messages
    "create_dm_guild": "open a direct-message session with a member of a shared guild, returning its `guild_id`",
    "send_dm": "send a direct message in a session (`guild_id` from create_dm_guild or a DM event)",
    "delete_dm_msg": "recall a direct message the bot sent",
    # Muting
    "mute_all_member": "mute every non-admin member of a guild, until a timestamp or for some seconds (0 unmutes)",
    "mute_member": "mute a guild member, until a timestamp or for some seconds (0 unmutes)",
    "mute_members": "mute several guild members, until a timestamp or for some seconds (0 unmutes)",
    # Announcements and pins
    "create_announce": "create a guild announcement: a message (`message_id`), or recommended channels",
    "delete_announce": "delete a guild announcement (`message_id` \"all\": without checking the id)",
    "create_pinmsg": "pin a message in a channel (at most 20 per channel)",
    "delete_pinmsg": "unpin a message in a channel (`message_id` \"all\": every one)",
    "get_pinmsg": "the pinned messages of a channel",
    # Schedules
    "get_schedules": "a schedule channel's schedules for today, or those ending after `since`",
    "get_schedule_info": "a schedule's details",
    "create_schedule": "create a schedule in a schedule channel",
    "patch_schedule": "change a schedule",
    "delete_schedule": "delete a schedule",
    # Reactions
    "create_reaction": "add an emoji reaction to a message",
    "delete_reaction": "remove the bot's emoji reaction from a message",
    "get_reaction_users": "the users who reacted to a message with an emoji",
    # Audio
    "control_audio": "control audio in a voice channel (`status`: 0 start, 1 pause, 2 resume, 3 stop)",
    "bot_on_mic": "put the bot on the mic in a voice channel",
    "bot_off_mic": "take the bot off the mic in a voice channel",
    # Forums
    "get_threads": "the threads of a forum channel",
    "get_thread_info": "a forum thread's details",
    "create_thread": "publish a thread in a forum channel (`format_`: 1 text, 2 HTML, 3 markdown, 4 JSON)",
    "delete_thread": "delete a forum thread",
    # API permissions
    "get_guild_permissions": "the APIs the bot can use in a guild, with their authorization status",
    "create_permission_demand": "post a link in a channel asking the guild's admins to grant the bot an API permission",
    # QQ users and groups (api-v2)
    "upload_media": "upload an image, video, voice or file for a QQ user or group chat, returning its `file_info`",
    "send_qq_dm": "send a message to a QQ user",
    "send_group_msg": "send a message to a QQ group",
    "callback_interactions": "answer a button interaction (`code`: 0 success, 1 failed, 2 too frequent, 3 repeated, "
                             "4 no permission, 5 admins only)",
    # EXTRA
    "delete_group_msg": "recall a message the bot sent to a QQ group (within 2 minutes)",
    "delete_c2c_msg": "recall a message the bot sent to a QQ user (within 2 minutes)",
}

# What every dispatch event means, in English (events.json: the gateway docs' and SDKs' event
# lists, payloads and intents).
EVENT_DOCS = {
    "READY": "the gateway accepted the bot's identify; the session is ready",
    "RESUMED": "a resumed session finished replaying the events it missed",
    "GUILD_CREATE": "the bot joined a guild",
    "GUILD_UPDATE": "a guild's details changed",
    "GUILD_DELETE": "a guild was disbanded or the bot was removed from it",
    "CHANNEL_CREATE": "a channel was created",
    "CHANNEL_UPDATE": "a channel was changed",
    "CHANNEL_DELETE": "a channel was deleted",
    "GUILD_MEMBER_ADD": "a user joined a guild",
    "GUILD_MEMBER_UPDATE": "a guild member's details changed",
    "GUILD_MEMBER_REMOVE": "a member left or was removed from a guild",
    "MESSAGE_CREATE": "any message in a guild channel (private-domain bots)",
    "MESSAGE_DELETE": "a message in a guild channel was recalled (private-domain bots)",
    "MESSAGE_REACTION_ADD": "a user added an emoji reaction to a message",
    "MESSAGE_REACTION_REMOVE": "a user removed an emoji reaction from a message",
    "DIRECT_MESSAGE_CREATE": "a user sent the bot a guild direct message",
    "DIRECT_MESSAGE_DELETE": "a guild direct message was recalled",
    "OPEN_FORUM_THREAD_CREATE": "a thread was created in a forum (public-domain bots)",
    "OPEN_FORUM_THREAD_UPDATE": "a forum thread was changed (public-domain bots)",
    "OPEN_FORUM_THREAD_DELETE": "a forum thread was deleted (public-domain bots)",
    "OPEN_FORUM_POST_CREATE": "a post was made on a forum thread (public-domain bots)",
    "OPEN_FORUM_POST_DELETE": "a forum post was deleted (public-domain bots)",
    "OPEN_FORUM_REPLY_CREATE": "a reply was made to a forum post (public-domain bots)",
    "OPEN_FORUM_REPLY_DELETE": "a forum reply was deleted (public-domain bots)",
    "AUDIO_OR_LIVE_CHANNEL_MEMBER_ENTER": "a user entered a voice or live channel",
    "AUDIO_OR_LIVE_CHANNEL_MEMBER_EXIT": "a user left a voice or live channel",
    "ENTER_AIO": "a user opened the chat window (AIO) with the bot (botgo only; payload undocumented)",
    "GROUP_MEMBER_ADD": "a user joined a QQ group the bot is in",
    "GROUP_MEMBER_REMOVE": "a member left a QQ group the bot is in",
    "GROUP_JOIN_REQUEST": "a user asked to join a QQ group in which the bot is an admin",
    "C2C_MESSAGE_CREATE": "a QQ user sent the bot a message",
    "GROUP_AT_MESSAGE_CREATE": "a QQ group message that @-mentions the bot",
    "GROUP_MESSAGE_CREATE": "any QQ group message (when the group owner lets the bot receive all messages)",
    "FRIEND_ADD": "a user added the bot as a friend",
    "FRIEND_DEL": "a user removed the bot from their friends",
    "C2C_MSG_REJECT": "a user turned off the bot's proactive messages",
    "C2C_MSG_RECEIVE": "a user turned on the bot's proactive messages",
    "GROUP_ADD_ROBOT": "the bot was added to a QQ group",
    "GROUP_DEL_ROBOT": "the bot was removed from a QQ group",
    "GROUP_MSG_REJECT": "a group admin turned off the bot's proactive messages in the group",
    "GROUP_MSG_RECEIVE": "a group admin turned on the bot's proactive messages in the group",
    "SUBSCRIBE_MESSAGE_STATUS": "a user's or group's authorization of subscription messages changed",
    "INTERACTION_CREATE": "an interaction: a button click, quick menu, feedback or authorization",
    "MESSAGE_AUDIT_PASS": "a message the bot sent passed review",
    "MESSAGE_AUDIT_REJECT": "a message the bot sent failed review",
    "FORUM_THREAD_CREATE": "a thread was created in a forum",
    "FORUM_THREAD_UPDATE": "a forum thread was changed",
    "FORUM_THREAD_DELETE": "a forum thread was deleted",
    "FORUM_POST_CREATE": "a post was made on a forum thread",
    "FORUM_POST_DELETE": "a forum post was deleted",
    "FORUM_REPLY_CREATE": "a reply was made to a forum post",
    "FORUM_REPLY_DELETE": "a forum reply was deleted",
    "FORUM_PUBLISH_AUDIT_RESULT": "the review result of a forum thread, post or reply the bot published",
    "AUDIO_START": "audio started playing in a voice channel",
    "AUDIO_FINISH": "audio finished playing in a voice channel",
    "AUDIO_ON_MIC": "the bot went on the mic in a voice channel",
    "AUDIO_OFF_MIC": "the bot went off the mic in a voice channel",
    "AT_MESSAGE_CREATE": "a guild channel message that @-mentions the bot (public-domain bots)",
    "PUBLIC_MESSAGE_DELETE": "a guild channel message was deleted (public-domain bots)",
}


def actions():
    data = json.loads((CATALOG / "qq_official.json").read_text(encoding="utf-8"))
    docs = described(ACTION_DOCS, [a["action"] for a in data["actions"]] + [name for name, _, _ in EXTRA],
                     "QQ official functions")
    rows, routes = [], []
    for a in data["actions"]:
        ps = []
        for x in a["params"]:
            # The seed marks optional parameters required ("无，必选参数"); the SDK's signature decides.
            required = x.get("required_in_sdk_source", x["required"])
            ty = OVERRIDES.get((a["action"], x["name"]), TYPES[x["type"]])
            ps.append(f'p("{x["name"]}", Ty::{ty}, {"true" if required else "false"})')
        doc = escape(docs[a["action"]])
        rows.append(f'    Action {{ name: "{a["action"]}", doc: "{doc}", params: &[{", ".join(ps)}] }},')
        routes.append(f'    ("{a["action"]}", "{a.get("rest") or ""}"),')
    for name, rest, params in EXTRA:
        ps = ", ".join(f'p("{n}", Ty::{t}, true)' for n, t in params)
        rows.append(f'    Action {{ name: "{name}", doc: "{escape(docs[name])}", params: &[{ps}] }},')
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
    docs = described(EVENT_DOCS, [ev["t"] for ev in events], "QQ official dispatch events")
    rows = []
    names = [f'    ("qq.{ev["t"]}", "{escape(docs[ev["t"]])}"),' for ev in events]
    for ev in events:
        bit = ev.get("intent_bit")
        bit = "None" if bit is None else f"Some({bit})"
        doc = escape(docs[ev["t"]])
        rows.append(f'    QqEvent {{ name: "qq.{ev["t"]}", title: "{doc}", intent_bit: {bit} }},')
    write_table(Path("src/adapter/qq/events.rs"), "events.json", [
        "//! Every official-platform dispatch event (`qq.<t>`) with what it means and its intent bit.",
        "//!",
    ], "", [
        "/// One dispatch event.",
        "#[derive(Debug, Clone, Copy)]",
        "pub struct QqEvent {",
        "    /// `qq.<t>`.",
        "    pub name: &'static str,",
        "    /// What the event means, in English.",
        "    pub title: &'static str,",
        "    /// The intent bit that subscribes to it (`None`: always delivered).",
        "    pub intent_bit: Option<u32>,",
        "}",
        "",
        "/// `(native name, description)` of every dispatch event (the adapter's event table).",
        "pub const NAMES: &[(&str, &str)] = &[",
    ] + names + [
        "];",
        "",
        "/// Every dispatch event.",
        "pub const EVENTS: &[QqEvent] = &[",
    ], rows, TOOL)


if __name__ == "__main__":
    main()

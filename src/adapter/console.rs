//! The embedded console backend: a person at the terminal chats with the bot.
//!
//! Each typed line is a message from a simulated user, shaped exactly like a OneBot 11 message
//! event, so scripts written for OneBot run here unchanged. Lines starting with `:` are console
//! commands (`:group 123`, `:private`, `:user 42`, `:help`, `:quit`). Whatever the bot sends is
//! printed as a chat line on stdout. With piped input the console ends at EOF, and the runtime
//! then lets the last callbacks finish before it exits.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::onebot11::decode_event;
use super::{Adapter, EventSink, Opened, Start};
use crate::bot::{Bot, CallError, InProcess, Link, Protocol};

/// The console: its events and actions are OneBot 11's, so it accepts `onebot::` calls.
pub static PROTOCOL: Protocol = Protocol { name: "console", namespace: "onebot" };

/// The console adapter (its events are OneBot 11 message events; OneBot's table lists them).
pub static ADAPTER: Adapter = Adapter {
    protocol: &PROTOCOL,
    actions: &[],
    events: &[],
    reply: super::onebot11::reply_call,
    verb: super::onebot11::verb_call,
};

/// The console imitating Milky: its events and actions are Milky's (`milky::` calls).
pub static MILKY_PROTOCOL: Protocol = Protocol { name: "console", namespace: "milky" };

/// The Milky-flavoured console adapter.
pub static MILKY_ADAPTER: Adapter = Adapter {
    protocol: &MILKY_PROTOCOL,
    actions: &[],
    events: &[],
    reply: super::milky::reply_call,
    verb: super::milky::verb_call,
};

/// Creates the console bot (imitating Milky when `milky`); starting it starts reading stdin.
pub fn open(name: &str, call_timeout: std::time::Duration, milky: bool) -> Opened {
    let output = Arc::new(Output::default());
    let protocol = if milky { &MILKY_PROTOCOL } else { &PROTOCOL };
    let bot = Bot::new(name, protocol, call_timeout, Link::InProcess(output.clone()));
    Opened::new(
        bot,
        Box::new(move |bot, s: Start<'_>| {
            // What is still held when the runtime stops (answers of the last callbacks) is
            // printed then, after the callbacks finished.
            let (held, stop) = (output.clone(), s.shutdown.clone());
            s.tasks.spawn(async move {
                stop.cancelled().await;
                held.flush(false);
            });
            spawn_reader(bot, s.sink, s.input_done, output, s.idle);
            Ok(())
        }),
    )
}

/// The bot's own user id on the console.
pub const SELF_ID: i64 = 10000;
const HELP: &str = "console commands: :group <id>  :private  :user <id>  :role member|admin|owner  :name <nick>  \
                    :poke  :join [user]  :leave [user]  :friend [comment]  :request [comment]  :recall <id>  :help  :quit\n\
                    anything else is a message: [CQ:face,id=14] codes are segments, a leading @bot mentions the bot";

/// Prints what the bot sends; answers the OneBot actions that make sense on a terminal. With
/// piped input, the lines the bot sends for one input line are held until the scripts are idle
/// and then printed ordered by script (in each script's own order), so a transcript is the
/// same every run.
#[derive(Debug, Default)]
pub struct Output {
    next_message_id: AtomicI64,
    held: std::sync::Mutex<Option<Vec<(String, String)>>>,
}

impl Output {
    /// Holds what is sent from now on, until [`Output::flush`].
    fn hold(&self) {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert_with(Vec::new);
    }

    /// Prints what was held, ordered by script, and keeps holding when `again`.
    fn flush(&self, again: bool) {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lines = held.take().unwrap_or_default();
        if again {
            *held = Some(Vec::new());
        }
        drop(held);
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = std::io::stdout().lock();
        for (_, line) in lines {
            let _ = out.write_all(line.as_bytes());
        }
        let _ = out.flush();
    }
}

impl InProcess for Output {
    /// Executes a OneBot 11 action locally.
    fn call(&self, action: &str, params: &Value) -> Result<Value, CallError> {
        let message = || render(&params["message"]);
        let pokes = || format!("pokes {}", params["user_id"]);
        let (target, said, answer) = match action {
            "send_private_msg" => (format!("private {}", params["user_id"]), message(), Answer::MessageId),
            "send_group_msg" => (format!("group {}", params["group_id"]), message(), Answer::MessageId),
            "send_msg" if params.get("group_id").is_some_and(|g| !g.is_null()) => {
                (format!("group {}", params["group_id"]), message(), Answer::MessageId)
            }
            "send_msg" => (format!("private {}", params["user_id"]), message(), Answer::MessageId),
            // The Milky flavour's sends, answered as Milky answers them.
            "send_group_message" => (format!("group {}", params["group_id"]), message(), Answer::MessageSeq),
            "send_private_message" => (format!("private {}", params["user_id"]), message(), Answer::MessageSeq),
            // Pokes (OneBot's extension, Milky's nudges) are shown as what they do.
            "group_poke" | "send_group_nudge" => (format!("group {}", params["group_id"]), pokes(), Answer::Empty),
            // Milky's `is_self` has the bot poke itself in the friend's chat.
            "send_friend_nudge" if params["is_self"] == true => {
                (format!("private {}", params["user_id"]), "pokes itself".to_owned(), Answer::Empty)
            }
            "friend_poke" | "send_friend_nudge" => (format!("private {}", params["user_id"]), pokes(), Answer::Empty),
            "get_login_info" => return Ok(json!({"user_id": SELF_ID, "nickname": "rhaibot"})),
            "get_status" => return Ok(json!({"online": true, "good": true})),
            "get_version_info" => {
                return Ok(
                    json!({"app_name": "rhaibot-console", "app_version": env!("CARGO_PKG_VERSION"), "protocol_version": "v11"}),
                );
            }
            "can_send_image" | "can_send_record" => return Ok(json!({"yes": false})),
            _ => {
                return Err(CallError::Failed {
                    action: action.to_owned(),
                    code: 1404,
                    message: "not available on the console backend".into(),
                    trace_id: None,
                    answer: None,
                });
            }
        };
        let line = if answer == Answer::Empty {
            format!("[{target}] bot {said}\n")
        } else {
            format!("[{target}] bot: {said}\n")
        };
        let answer = match answer {
            Answer::MessageId => json!({"message_id": self.next_message_id.fetch_add(1, Ordering::Relaxed) + 1}),
            Answer::MessageSeq => json!({
                "message_seq": self.next_message_id.fetch_add(1, Ordering::Relaxed) + 1,
                "time": crate::bindings::time::now_ms() / 1000,
            }),
            Answer::Empty => json!({}),
        };
        {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(held) = held.as_mut() {
                // The script's name first: the callback's label follows it.
                let who = crate::script::context::who().map(|w| w.split(' ').next().unwrap_or_default().to_owned());
                held.push((who.unwrap_or_default(), line));
                return Ok(answer);
            }
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader went away) is not the script's failure.
        let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
        Ok(answer)
    }
}

/// What an action the console carries out answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A OneBot send: `{message_id}`.
    MessageId,
    /// A Milky send: `{message_seq, time}`.
    MessageSeq,
    /// `{}` (pokes).
    Empty,
}

/// A message as a chat line: text as is, other segments as `[type:key=value]`.
pub fn render(message: &Value) -> String {
    let segments = match super::onebot11::normalize_message(message.clone()) {
        Value::Array(a) => a,
        other => return other.to_string(),
    };
    let mut out = String::new();
    for seg in &segments {
        let kind = seg["type"].as_str().unwrap_or("?");
        if kind == "text" {
            out.push_str(seg["data"]["text"].as_str().unwrap_or_default());
            continue;
        }
        out.push('[');
        out.push_str(kind);
        let mut sep = ':';
        for (k, v) in seg["data"].as_object().into_iter().flatten() {
            out.push(sep);
            sep = ',';
            out.push_str(k);
            out.push('=');
            out.push_str(&v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
        }
        out.push(']');
    }
    out
}

/// Reads stdin on its own thread until EOF or `:quit`, then cancels `done`.
pub fn spawn_reader(bot: Arc<Bot>, sink: EventSink, done: CancellationToken, output: Arc<Output>, idle: super::Idle) {
    let spawned = std::thread::Builder::new().name("rhaibot-console".into()).spawn(move || {
        let piped = !std::io::stdin().is_terminal();
        if piped {
            output.hold();
        }
        // Piped: each line's answers are printed before the next line is read.
        let settle = || {
            if piped {
                // At most 2 s: an answer that takes longer comes with a later line (a
                // conversation waiting for the next line counts as idle).
                crate::script::ScriptHost::settle(&*idle, std::time::Duration::from_secs(2));
                output.flush(true);
            }
        };
        read_lines(&bot, &sink, std::io::stdin().lock(), &settle);
        settle();
        output.flush(false);
        done.cancel();
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the console reader: {e}");
    }
}

fn read_lines(bot: &Arc<Bot>, sink: &EventSink, input: impl BufRead, settle: &dyn Fn()) {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("rhaibot console: you are user 10001 in a private chat with the bot.\n{HELP}");
    }
    let mut chat = Chat { group: None, user: 10001, next_id: 1, role: "member".into(), nickname: None, interactive };
    let via = crate::bot::connection_id();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let line = line.trim_end_matches('\r');
        let event = if let Some(command) = line.strip_prefix(':') {
            match chat.command(command) {
                Command::Quit => break,
                Command::Done => continue,
                Command::Event(ev) => ev,
            }
        } else if line.is_empty() {
            continue;
        } else {
            chat.message(line)
        };
        let decoded = if bot.protocol.namespace == "milky" {
            super::milky::decode_event(bot, to_milky(&event), via).map_err(|e| e.to_string())
        } else {
            decode_event(bot, event, via).map_err(|e| e.to_string())
        };
        match decoded {
            Ok(ev) => sink(ev),
            Err(e) => tracing::warn!("{e}"),
        }
        settle();
    }
}

/// What a console command comes to.
enum Command {
    /// Stop reading.
    Quit,
    /// Nothing to deliver (the chat changed, or help was shown).
    Done,
    /// An event to deliver.
    Event(Value),
}

struct Chat {
    group: Option<i64>,
    user: i64,
    next_id: i64,
    role: String,
    nickname: Option<String>,
    interactive: bool,
}

impl Chat {
    /// Applies a console command.
    fn command(&mut self, command: &str) -> Command {
        let (verb, rest) = command.trim().split_once(char::is_whitespace).unwrap_or((command.trim(), ""));
        let rest = rest.trim();
        let number = || rest.split_whitespace().next().map(str::parse::<i64>);
        let fail = |why: String| {
            println!("{why}\n{HELP}");
            Command::Done
        };
        match verb {
            "quit" | "q" => return Command::Quit,
            "help" | "h" | "?" => return fail(String::new()),
            "group" | "g" => match number() {
                Some(Ok(id)) => self.group = Some(id),
                Some(Err(_)) => return fail(format!("`:group` takes a group number, e.g. `:group 123`, not {rest:?}")),
                None => self.group = Some(self.group.unwrap_or(20000)),
            },
            "private" | "p" => self.group = None,
            "user" | "u" => match number() {
                Some(Ok(id)) => self.user = id,
                _ => return fail(format!("`:user` takes a user number, e.g. `:user 42`, not {rest:?}")),
            },
            "role" => match rest {
                "member" | "admin" | "owner" => self.role = rest.to_owned(),
                _ => return fail(format!("`:role` is member, admin or owner, not {rest:?}")),
            },
            "name" if !rest.is_empty() => self.nickname = Some(rest.to_owned()),
            "poke" => return Command::Event(self.notice("notify", "poke", json!({"target_id": SELF_ID}))),
            "join" | "leave" => {
                let Some(group) = self.group else {
                    return fail(format!("`:{verb}` happens in a group: `:group 123` first"));
                };
                let user = match number() {
                    Some(Ok(id)) => id,
                    Some(Err(_)) => return fail(format!("`:{verb}` takes a user number, not {rest:?}")),
                    None => self.user,
                };
                let (kind, sub) =
                    if verb == "join" { ("group_increase", "approve") } else { ("group_decrease", "leave") };
                return Command::Event(json!({"time": now_secs(), "self_id": SELF_ID, "post_type": "notice",
                    "notice_type": kind, "sub_type": sub, "group_id": group, "user_id": user, "operator_id": user}));
            }
            "friend" => {
                return Command::Event(json!({"time": now_secs(), "self_id": SELF_ID, "post_type": "request",
                    "request_type": "friend", "user_id": self.user, "comment": rest, "flag": format!("friend-{}", self.user)}));
            }
            "request" => {
                let Some(group) = self.group else {
                    return fail("`:request` asks to join a group: `:group 123` first".into());
                };
                return Command::Event(json!({"time": now_secs(), "self_id": SELF_ID, "post_type": "request",
                    "request_type": "group", "sub_type": "add", "group_id": group, "user_id": self.user, "comment": rest,
                    "flag": format!("join-{group}-{}", self.user)}));
            }
            "recall" => match number() {
                Some(Ok(id)) => {
                    let kind = if self.group.is_some() { "group_recall" } else { "friend_recall" };
                    return Command::Event(self.notice(kind, "", json!({"message_id": id, "operator_id": self.user})));
                }
                _ => return fail(format!("`:recall` takes a message id, not {rest:?}")),
            },
            other => return fail(format!("unknown console command `:{other}`")),
        }
        if self.interactive {
            let who = format!("user {} ({})", self.user, self.role);
            match self.group {
                Some(g) => println!("(now {who} in group {g})"),
                None => println!("(now {who} in a private chat)"),
            }
        }
        Command::Done
    }

    /// A notice of `kind` (and `sub`) in the current chat, with `extra` fields.
    fn notice(&self, kind: &str, sub: &str, extra: Value) -> Value {
        let mut ev = json!({"time": now_secs(), "self_id": SELF_ID, "post_type": "notice", "notice_type": kind, "user_id": self.user});
        if !sub.is_empty() {
            ev["sub_type"] = json!(sub);
        }
        if let Some(g) = self.group {
            ev["group_id"] = json!(g);
        }
        if let (Value::Object(ev), Value::Object(extra)) = (&mut ev, extra) {
            ev.extend(extra);
        }
        ev
    }

    /// A OneBot 11 message event for `text` in the current chat: CQ codes are segments, and a
    /// leading `@bot` @-mentions the bot.
    fn message(&mut self, text: &str) -> Value {
        self.next_id += 1;
        let (at_bot, body) = match text.strip_prefix("@bot") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, text),
        };
        let mut segments = super::onebot11::cq::parse(body);
        if at_bot {
            segments.insert(0, json!({"type": "at", "data": {"qq": SELF_ID.to_string()}}));
        }
        let nickname = self.nickname.clone().unwrap_or_else(|| format!("user{}", self.user));
        let mut ev = json!({
            "time": now_secs(),
            "self_id": SELF_ID,
            "post_type": "message",
            "message_type": "private",
            "sub_type": "friend",
            "message_id": self.next_id,
            "user_id": self.user,
            "message": segments,
            "raw_message": text,
            "font": 0,
            "sender": {"user_id": self.user, "nickname": nickname},
        });
        if let Some(group) = self.group {
            ev["message_type"] = json!("group");
            ev["sub_type"] = json!("normal");
            ev["group_id"] = json!(group);
            ev["sender"]["role"] = json!(self.role);
        }
        ev
    }
}

/// A console event (OneBot-shaped) as the Milky flavour delivers it.
fn to_milky(ev: &Value) -> Value {
    let g = |k: &str| ev.get(k).cloned().unwrap_or(Value::Null);
    let group = g("group_id");
    let scene = if group.is_null() { "friend" } else { "group" };
    let peer = if group.is_null() { g("user_id") } else { group.clone() };
    let (kind, data) = match (ev["post_type"].as_str(), ev.get("notice_type").and_then(Value::as_str)) {
        (Some("message"), _) => {
            // OneBot segments as Milky's: a mention is `mention`, the rest keep their shape.
            let segments: Vec<Value> = g("message")
                .as_array()
                .into_iter()
                .flatten()
                .map(|seg| match seg["type"].as_str() {
                    Some("at") => json!({"type": "mention", "data": {"user_id": seg["data"]["qq"].as_str()
                        .and_then(|q| q.parse::<i64>().ok()).unwrap_or_default()}}),
                    _ => seg.clone(),
                })
                .collect();
            let mut data = json!({"message_scene": scene, "peer_id": peer, "message_seq": g("message_id"),
                                  "sender_id": g("user_id"), "time": g("time"), "segments": segments});
            let who = json!({"user_id": g("user_id"), "nickname": ev["sender"]["nickname"], "card": "",
                             "role": ev["sender"]["role"]});
            data[if group.is_null() { "friend" } else { "group_member" }] = who;
            ("message_receive", data)
        }
        (Some("notice"), Some("notify")) if group.is_null() => {
            ("friend_nudge", json!({"user_id": g("user_id"), "is_self_send": false, "is_self_receive": true}))
        }
        (Some("notice"), Some("notify")) => {
            ("group_nudge", json!({"group_id": group, "sender_id": g("user_id"), "receiver_id": g("target_id")}))
        }
        (Some("notice"), Some("group_increase")) => (
            "group_member_increase",
            json!({"group_id": group,
            "user_id": g("user_id"), "operator_id": g("operator_id"), "invitor_id": null}),
        ),
        (Some("notice"), Some("group_decrease")) => (
            "group_member_decrease",
            json!({"group_id": group,
            "user_id": g("user_id"), "operator_id": g("operator_id")}),
        ),
        (Some("notice"), Some(_)) => (
            "message_recall",
            json!({"message_scene": scene, "peer_id": peer,
            "message_seq": g("message_id"), "sender_id": g("user_id"), "operator_id": g("operator_id"),
            "display_suffix": ""}),
        ),
        (Some("request"), _) if group.is_null() => (
            "friend_request",
            json!({"initiator_id": g("user_id"),
            "initiator_uid": format!("u_{}", g("user_id")), "comment": g("comment"), "via": "console"}),
        ),
        _ => (
            "group_join_request",
            json!({"group_id": group, "notification_seq": g("time"), "is_filtered": false,
            "initiator_id": g("user_id"), "comment": g("comment")}),
        ),
    };
    json!({"time": g("time"), "self_id": SELF_ID, "event_type": kind, "data": data})
}

fn now_secs() -> i64 {
    crate::bindings::time::now_ms() / 1000
}

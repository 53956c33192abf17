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

/// Creates the console bot; starting it starts reading stdin.
pub fn open(name: &str, call_timeout: std::time::Duration) -> Opened {
    let bot = Bot::new(name, &PROTOCOL, call_timeout, Link::InProcess(Arc::new(Output::default())));
    Opened::new(
        bot,
        Box::new(|bot, s: Start<'_>| {
            spawn_reader(bot, s.sink, s.input_done);
            Ok(())
        }),
    )
}

/// The bot's own user id on the console.
pub const SELF_ID: i64 = 10000;
const HELP: &str = "console commands: :group <id>  :private  :user <id>  :help  :quit  (anything else is a message)";

/// Prints what the bot sends; answers the OneBot actions that make sense on a terminal.
#[derive(Debug, Default)]
pub struct Output {
    next_message_id: AtomicI64,
}

impl InProcess for Output {
    /// Executes a OneBot 11 action locally.
    fn call(&self, action: &str, params: &Value) -> Result<Value, CallError> {
        let target = match action {
            "send_private_msg" => format!("private {}", params["user_id"]),
            "send_group_msg" => format!("group {}", params["group_id"]),
            "send_msg" if params.get("group_id").is_some_and(|g| !g.is_null()) => {
                format!("group {}", params["group_id"])
            }
            "send_msg" => format!("private {}", params["user_id"]),
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
        let line = format!("[{target}] bot: {}\n", render(&params["message"]));
        let mut out = std::io::stdout().lock();
        // A closed stdout (the reader went away) is not the script's failure.
        let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
        Ok(json!({"message_id": self.next_message_id.fetch_add(1, Ordering::Relaxed) + 1}))
    }
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
pub fn spawn_reader(bot: Arc<Bot>, sink: EventSink, done: CancellationToken) {
    let spawned = std::thread::Builder::new().name("rhaibot-console".into()).spawn(move || {
        read_lines(&bot, &sink, std::io::stdin().lock());
        done.cancel();
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the console reader: {e}");
    }
}

fn read_lines(bot: &Arc<Bot>, sink: &EventSink, input: impl BufRead) {
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("rhaibot console: you are user 10001 in a private chat with the bot.\n{HELP}");
    }
    let mut chat = Chat { group: None, user: 10001, next_id: 1 };
    let via = crate::bot::connection_id();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let line = line.trim_end_matches('\r');
        if let Some(command) = line.strip_prefix(':') {
            if !chat.command(command) {
                break;
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        match decode_event(bot, chat.message(line), via) {
            Ok(ev) => sink(ev),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

struct Chat {
    group: Option<i64>,
    user: i64,
    next_id: i64,
}

impl Chat {
    /// Applies a console command; false means quit.
    fn command(&mut self, command: &str) -> bool {
        let mut words = command.split_whitespace();
        let (verb, arg) = (words.next().unwrap_or_default(), words.next().and_then(|w| w.parse::<i64>().ok()));
        match (verb, arg) {
            ("quit" | "q", _) => return false,
            ("group" | "g", Some(id)) => self.group = Some(id),
            ("group" | "g", None) => self.group = Some(self.group.unwrap_or(20000)),
            ("private" | "p", _) => self.group = None,
            ("user" | "u", Some(id)) => self.user = id,
            _ => {
                println!("{HELP}");
                return true;
            }
        }
        match self.group {
            Some(g) => println!("(now user {} in group {g})", self.user),
            None => println!("(now user {} in a private chat)", self.user),
        }
        true
    }

    /// A OneBot 11 message event for `text` in the current chat.
    fn message(&mut self, text: &str) -> Value {
        self.next_id += 1;
        let mut ev = json!({
            "time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "self_id": SELF_ID,
            "post_type": "message",
            "message_type": "private",
            "sub_type": "friend",
            "message_id": self.next_id,
            "user_id": self.user,
            "message": [{"type": "text", "data": {"text": text}}],
            "raw_message": super::onebot11::cq::escape_text(text),
            "font": 0,
            "sender": {"user_id": self.user, "nickname": format!("user{}", self.user)},
        });
        if let Some(group) = self.group {
            ev["message_type"] = json!("group");
            ev["sub_type"] = json!("normal");
            ev["group_id"] = json!(group);
            ev["sender"]["role"] = json!("member");
        }
        ev
    }
}

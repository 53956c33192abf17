//! The official QQ bot platform (seed 000: qg_botsdk's 66 functions; seeds 002–004: messages,
//! ark and embed): calls over its OpenAPI with an AccessToken ([`token`], [`rest`], [`api`]),
//! events from the WebSocket gateway ([`gateway`], [`gateway_socket`], sharded as
//! `/gateway/bot` says) or from a signed webhook ([`sign`], [`webhook`]), read into events with
//! the cross-protocol aliases ([`payload`], [`decode`]), and replies that obey the platform's rules
//! ([`reply`]).
//!
//! Functions are `qq::<name>` with qg_botsdk's names and parameters ([`actions`], generated
//! from the catalog), plus `delete_group_msg` and `delete_c2c_msg` (newer than the seed).

pub mod actions;
pub mod api;
pub mod config;
pub mod decode;
pub mod events;
pub mod functions;
pub mod gateway;
pub mod gateway_socket;
pub mod message;
pub mod payload;
pub mod recent;
pub mod reply;
pub mod rest;
pub mod sign;
pub mod token;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tracing::{info, warn};

use super::{Adapter, EventSink, Opened, Start, Verb, object};
use crate::bot::{Bot, BotId, CallError, Link, Params, Protocol, Requests};
use crate::event::Event;
use api::Api;
use config::{Events, QqConfig};
use reply::Noted;

/// The official platform: its bots accept the `qq::` functions.
pub static PROTOCOL: Protocol = Protocol { name: "qq", namespace: "qq" };

/// The official-platform adapter.
pub static ADAPTER: Adapter = Adapter {
    protocol: &PROTOCOL,
    actions: actions::ACTIONS,
    events: events::NAMES,
    reply: reply_call,
    verb: verb_call,
};

/// The function that answers `ev`: a message by its id (`msg_id`), any other event that
/// names a chat by its event id (`event_id`), as the platform's passive replies require.
pub fn reply_call(ev: &Event, message: Value) -> Result<(&'static str, Value), CallError> {
    let kind = ev.name.strip_prefix("qq.").unwrap_or_default();
    let by_message = !ev.message_id.is_null();
    let mut params = object([("message", message)]);
    // A message is answered from the fields the event keeps; only other events (rarer) parse
    // the whole of it for their event id and chat.
    if by_message {
        params["message_id"] = ev.message_id.clone();
    } else if let Some(id) = ev.raw().get("id").filter(|v| v.is_string()) {
        params["event_id"] = id.clone();
    }
    let field = |k: &str| ev.raw().get("d").and_then(|d| d.get(k)).filter(|v| v.is_string()).cloned();
    let action = match kind {
        "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE" => {
            params["group_openid"] = ev.group_id.clone();
            "send_group_msg"
        }
        "C2C_MESSAGE_CREATE" => {
            params["user_openid"] = ev.user_id.clone();
            "send_qq_dm"
        }
        // A guild channel message's channel is its group_id (decoding took it from d.channel_id).
        "AT_MESSAGE_CREATE" | "MESSAGE_CREATE" => {
            let channel = Some(&ev.group_id).filter(|v| v.is_string()).cloned();
            params["channel_id"] = channel.ok_or_else(|| CallError::NoTarget { event: ev.name.clone() })?;
            "send_msg"
        }
        "DIRECT_MESSAGE_CREATE" => {
            let guild = Some(&ev.place).filter(|v| v.is_string()).cloned();
            params["guild_id"] = guild.ok_or_else(|| CallError::NoTarget { event: ev.name.clone() })?;
            "send_dm"
        }
        _ => match (field("group_openid"), field("openid").or_else(|| field("user_openid")), field("channel_id")) {
            (Some(group), _, _) => {
                params["group_openid"] = group;
                "send_group_msg"
            }
            (None, Some(user), _) => {
                params["user_openid"] = user;
                "send_qq_dm"
            }
            (None, None, Some(channel)) => {
                params["channel_id"] = channel;
                "send_msg"
            }
            _ => return Err(CallError::NoTarget { event: ev.name.clone() }),
        },
    };
    Ok((action, params))
}

/// The function of each cross-protocol verb, where the platform has one.
pub fn verb_call(verb: &Verb<'_>) -> Result<(&'static str, Value), CallError> {
    Ok(match verb {
        Verb::SendGroup { group, message } => ("send_group_msg", json!({"group_openid": group, "message": message})),
        Verb::SendPrivate { user, message } => ("send_qq_dm", json!({"user_openid": user, "message": message})),
        Verb::RecallGroup { group, id } => ("delete_group_msg", json!({"group_openid": group, "message_id": id})),
        Verb::RecallPrivate { user, id } => ("delete_c2c_msg", json!({"user_openid": user, "message_id": id})),
        Verb::Mute { .. } | Verb::Kick { .. } | Verb::MemberInfo { .. } => {
            return Err(verb.unsupported(
                &PROTOCOL,
                "bots cannot manage QQ group members there (guilds can: qq::mute_member, qq::delete_member, \
                 qq::get_member_info)",
            ));
        }
        Verb::Answer { .. } => {
            return Err(verb.unsupported(&PROTOCOL, "the platform has no friend or group requests to answer"));
        }
    })
}

/// Creates the handle of an official-platform bot and what starts its events.
pub fn open(name: &str, cfg: &QqConfig, call_timeout: Duration, data_dir: &Path) -> Opened {
    let client = crate::tls::http_client(&cfg.tls);
    let tokens = Arc::new(token::Tokens::new(client.clone(), &cfg.token_url, &cfg.app_id, cfg.secret.clone()));
    let api =
        Arc::new(Api::new(rest::Rest::new(name, client, &cfg.tls, &cfg.api_url, tokens.clone(), cfg.max_in_flight)));
    let bot = Bot::new(name, &PROTOCOL, call_timeout, Link::Requests(api.clone()));
    let (cfg, data_dir) = (cfg.clone(), data_dir.to_owned());
    Opened::new(bot, Box::new(move |bot, s: Start<'_>| start(bot, api, tokens, cfg, &data_dir, s)))
}

/// Wraps `sink` so the reply rules see every event first, READY names the bot, and a group
/// message the platform sends twice (as `GROUP_AT_MESSAGE_CREATE` and `GROUP_MESSAGE_CREATE`)
/// reaches `message.group` once: the second copy carries only its native name.
fn noting(bot: &Arc<Bot>, api: &Arc<Api>, sink: EventSink) -> EventSink {
    let (bot, api) = (Arc::downgrade(bot), api.clone());
    Arc::new(move |mut ev: Event| {
        if ev.name == "qq.READY"
            && let Some(id) = ev.raw().pointer("/d/user/id").and_then(Value::as_str)
        {
            api.set_me(id);
            if let Some(bot) = bot.upgrade() {
                bot.set_self_id(BotId::Text(id.into()));
            }
        }
        if api.note_event(&ev) == Noted::SecondCopy {
            ev = ev.without_aliases();
        }
        sink(ev)
    })
}

fn start(
    bot: Arc<Bot>,
    api: Arc<Api>,
    tokens: Arc<token::Tokens>,
    cfg: QqConfig,
    data_dir: &Path,
    s: Start<'_>,
) -> std::io::Result<()> {
    let sink = noting(&bot, &api, s.sink);
    match cfg.events.clone() {
        Events::None => Ok(()),
        Events::Webhook { listen, path, guard, tls } => {
            let key = sign::WebhookKey::from_secret(&cfg.secret.0)
                .ok_or_else(|| std::io::Error::other("the webhook needs the bot's secret to verify signatures"))?;
            let tls = match tls {
                Some((cert, key)) => Some(crate::tls::server(&cert, &key).map_err(std::io::Error::other)?),
                None => None,
            };
            let listen = webhook::Listen { addr: listen, path, guard, tls };
            webhook::serve(bot.clone(), key, listen, cfg.max_frame_bytes, sink, s.shutdown.clone(), s.tasks)?;
            // No READY comes over a webhook: the bot's own id is asked for.
            let (shutdown, backoff) = (s.shutdown, cfg.backoff);
            s.tasks.spawn(async move {
                let mut retry = super::backoff::Retry::new(backoff);
                loop {
                    match api.me().await {
                        Ok(id) => return bot.set_self_id(BotId::Text(id.into())),
                        Err(e) => warn!(bot = %bot.name, "cannot learn the bot's own id yet: {e}"),
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry.next_delay()) => {}
                    }
                }
            });
            Ok(())
        }
        Events::Gateway { intents, shards } => {
            let subscribed = s.subscribed;
            let intents: Arc<dyn Fn() -> u32 + Send + Sync> = match intents {
                Some(fixed) => Arc::new(move || fixed),
                None => {
                    let name = bot.name.clone();
                    Arc::new(move || {
                        let (bits, left_out) = decode::intents_for(&subscribed());
                        if !left_out.is_empty() {
                            tracing::info!(bot = %name, events = ?left_out,
                                "not subscribing to events only some bots may ask for (private-domain bots, or with \
                                 the platform's leave); a handler that names one (on(\"qq.MESSAGE_CREATE\")) or \
                                 `intents` in the bot's config asks for it");
                        }
                        // Nothing handled yet: GUILDS (bit 0), which every bot may ask for.
                        if bits == 0 { 1 } else { bits }
                    })
                }
            };
            let shared = Shards {
                bot,
                api,
                tokens,
                cfg,
                intents,
                sessions: data_dir.to_owned(),
                shards,
                shutdown: s.shutdown,
                sink,
            };
            s.tasks.spawn(shared.run(s.tasks.clone()));
            Ok(())
        }
    }
}

/// What `/gateway/bot` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayInfo {
    /// The `wss://` URL.
    pub url: String,
    /// The recommended shard count.
    pub shards: u32,
    /// Sessions that may start per 5 seconds.
    pub max_concurrency: u32,
    /// Milliseconds to wait first, when no session may start now (`remaining` is 0).
    pub wait_ms: u64,
}

impl GatewayInfo {
    /// Reads `/gateway/bot`'s answer.
    pub fn from_answer(data: &Value) -> Option<GatewayInfo> {
        let limit = data.get("session_start_limit");
        let n = |k: &str| limit.and_then(|l| l.get(k)).and_then(Value::as_u64);
        Some(GatewayInfo {
            url: data.get("url")?.as_str()?.to_owned(),
            shards: data.get("shards").and_then(Value::as_u64).unwrap_or(1).clamp(1, 1024) as u32,
            max_concurrency: n("max_concurrency").unwrap_or(1).clamp(1, 1024) as u32,
            wait_ms: if n("remaining") == Some(0) { n("reset_after").unwrap_or(0).min(24 * 3600 * 1000) } else { 0 },
        })
    }

    /// When shard `i` may identify, after the first: `max_concurrency` shards per 5 seconds.
    pub fn start_delay(&self, shard: u32) -> Duration {
        Duration::from_millis(self.wait_ms) + Duration::from_secs(5) * (shard / self.max_concurrency)
    }
}

/// The gateway connections of one bot: one per shard, started as `/gateway/bot` allows.
struct Shards {
    bot: Arc<Bot>,
    api: Arc<Api>,
    tokens: Arc<token::Tokens>,
    cfg: QqConfig,
    intents: Arc<dyn Fn() -> u32 + Send + Sync>,
    sessions: PathBuf,
    shards: Option<u32>,
    shutdown: tokio_util::sync::CancellationToken,
    sink: EventSink,
}

impl Shards {
    async fn run(self, tasks: tokio_util::task::TaskTracker) {
        let mut retry = super::backoff::Retry::new(self.cfg.backoff);
        let info = loop {
            let asked = match self.api.call("GET /gateway/bot", Params::Given(json!({})), true).await {
                Ok(answer) => {
                    GatewayInfo::from_answer(&answer["data"]).ok_or_else(|| "the answer has no url".to_owned())
                }
                Err(e) => Err(e.to_string()),
            };
            match asked {
                Ok(info) => break info,
                Err(e) => warn!(bot = %self.bot.name, "cannot get the gateway from /gateway/bot: {e}"),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(retry.next_delay()) => {}
            }
        };
        let count = self.shards.unwrap_or(info.shards);
        info!(bot = %self.bot.name, url = %info.url, shards = count, "official gateway");
        let started = tokio::time::Instant::now();
        for shard in 0..count {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(started + info.start_delay(shard)) => {}
            }
            let file = self.sessions.join(format!("qq-{}-shard-{shard}-of-{count}.json", file_name(&self.bot.name)));
            let gateway = gateway_socket::Gateway {
                bot: self.bot.clone(),
                url: info.url.clone(),
                tokens: self.tokens.clone(),
                intents: self.intents.clone(),
                shard: [shard, count],
                session_file: Some(file),
                backoff: self.cfg.backoff,
                tls: self.cfg.tls.clone(),
                max_frame_bytes: self.cfg.max_frame_bytes,
            };
            tasks.spawn(gateway.run(self.sink.clone(), self.shutdown.clone()));
        }
    }
}

/// `name` with only characters safe in a file name.
fn file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API whose OpenAPI is never reached: the reply rules alone.
    fn offline_api() -> Api {
        let tls = crate::tls::client(None).unwrap();
        let client = crate::tls::http_client(&tls);
        let tokens =
            Arc::new(token::Tokens::new(client.clone(), "http://127.0.0.1:9", "1", crate::config::Secret("s".into())));
        Api::new(rest::Rest::new("qq", client, &tls, "http://127.0.0.1:9", tokens, 1))
    }

    /// `payload` read and decoded as the gateway reads and decodes a frame.
    fn decoded(bot: &Arc<Bot>, payload: &Value) -> Event {
        let text = bytes::Bytes::from(payload.to_string());
        let head = payload::read_head(&text).unwrap().unwrap();
        decode::decode(bot, head, crate::event::Raw::text(&text), 1).unwrap()
    }

    #[test]
    fn the_second_copy_of_a_group_message_is_told_whatever_its_group_id_is() {
        let (api, bot) = (offline_api(), Bot::detached("qq", &PROTOCOL));
        for group in [json!("G"), json!(123), Value::Null] {
            let noted: Vec<Noted> = ["GROUP_AT_MESSAGE_CREATE", "GROUP_MESSAGE_CREATE", "GROUP_AT_MESSAGE_CREATE"]
                .iter()
                .map(|t| {
                    let payload = json!({"op": 0, "s": 1, "id": "E", "t": t, "d": {
                        "id": format!("M-{group}"), "content": "hi", "group_openid": group, "author": {"member_openid": "U"}}});
                    api.note_event(&decoded(&bot, &payload))
                })
                .collect();
            assert_eq!(noted, [Noted::First, Noted::SecondCopy, Noted::First], "group {group}");
        }
    }

    #[test]
    fn noting_and_answering_a_message_never_parse_the_whole_event() {
        let (api, bot) = (offline_api(), Bot::detached("qq", &PROTOCOL));
        for (t, d) in [
            ("GROUP_AT_MESSAGE_CREATE", json!({"group_openid": "G", "author": {"member_openid": "M"}})),
            ("C2C_MESSAGE_CREATE", json!({"author": {"user_openid": "U"}})),
            ("AT_MESSAGE_CREATE", json!({"channel_id": "C", "guild_id": "G", "author": {"id": "U"}})),
            ("DIRECT_MESSAGE_CREATE", json!({"channel_id": "C", "guild_id": "DG", "author": {"id": "U"}})),
        ] {
            let mut payload = json!({"op": 0, "s": 1, "id": "E", "t": t, "d": d});
            payload["d"]["id"] = json!("M1");
            payload["d"]["content"] = json!("hi");
            payload["d"]["timestamp"] = json!("2026-11-30T00:00:01+08:00");
            let ev = decoded(&bot, &payload);
            api.note_event(&ev);
            reply_call(&ev, json!("pong")).unwrap();
            assert!(!ev.raw_is_built(), "{t}");
        }
    }

    #[test]
    fn shards_start_max_concurrency_at_a_time_every_five_seconds() {
        let data = json!({"url": "wss://x", "shards": 4, "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 5, "max_concurrency": 2}});
        let info = GatewayInfo::from_answer(&data).unwrap();
        let delays: Vec<u64> = (0..4).map(|i| info.start_delay(i).as_secs()).collect();
        assert_eq!(delays, [0, 0, 5, 5]);
        let spent = json!({"url": "wss://x", "session_start_limit": {"remaining": 0, "reset_after": 7000, "max_concurrency": 1}});
        let info = GatewayInfo::from_answer(&spent).unwrap();
        assert_eq!(
            (info.shards, info.start_delay(0), info.start_delay(1)),
            (1, Duration::from_secs(7), Duration::from_secs(12))
        );
        assert!(GatewayInfo::from_answer(&json!({"shards": 1})).is_none());
    }
}

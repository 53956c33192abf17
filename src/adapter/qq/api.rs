//! The official platform's functions as a bot's [`Requests`] link: each `qq::<name>` call (and
//! each reply and cross-protocol verb) becomes its request ([`functions`](super::functions),
//! [`message`](super::message)), goes through the [`Rest`] client, and comes back in qg_botsdk's
//! shape `{data, http_code, trace_id, result}`. A failure the platform reports is a
//! [`CallError::Failed`] carrying that answer, so `qq::` calls return it as a value (as the SDK
//! does) while replies and verbs see an error.
//!
//! Sends obey the reply rules ([`reply`](super::reply)) before anything goes out: group and
//! C2C messages answer a message within its window and budget, with a fresh `msg_seq`; guild
//! channel sends are paced at 5 per second per channel; media is uploaded to the chat it is
//! sent in, and a `file_info` uploaded for another chat is refused.
//!
//! Where qg_botsdk and the platform's docs disagree, this follows the docs (and says so):
//! unset optional fields are left out instead of sent as `null`; `get_reaction_users` pages
//! with `cookie` (the SDK sends `cookies`); a 2xx answer is a success whatever its body (the
//! SDK reports some successes as failures: `mute_members`, `control_audio`, ...).

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::functions::{self, MAX_PAGES, Paging};
use super::message::{self, Composed, Media, Place};
use super::recent::Recent;
use super::reply::{Delivery, Noted, Pacer, Replies, ReplyError, Scene};
use super::rest::{Answer, Body, Request, Rest, encode_segment as segment, push_segment};
use crate::bot::{CallError, CallFuture, Params, Requests};
use crate::event::Event;

/// Largest local file a message carries (the platform's own cap on images is lower).
const MAX_FILE: u64 = 20 << 20;

/// Uploaded `file_info`s remembered, with the chat each belongs to.
const UPLOADS_REMEMBERED: usize = 4096;

/// A bot's OpenAPI link.
#[derive(Debug)]
pub struct Api {
    rest: Rest,
    rules: Mutex<Rules>,
    pacer: Mutex<Pacer>,
    me: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Rules {
    replies: Replies,
    /// `file_info` -> the chat it was uploaded for (a group upload only works in that group).
    uploads: Recent<String>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules { replies: Replies::default(), uploads: Recent::new(UPLOADS_REMEMBERED) }
    }
}

impl Rules {
    fn uploaded(&mut self, file_info: &str, chat: &str) {
        self.uploads.insert(file_info, chat.to_owned());
    }
}

/// A QQ chat of the v2 API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chat {
    Group,
    User,
}

impl Chat {
    fn scene(self) -> Scene {
        match self {
            Chat::Group => Scene::Group,
            Chat::User => Scene::C2c,
        }
    }

    fn path(self, id: &str, rest: &str) -> String {
        let chats = match self {
            Chat::Group => "/v2/groups/",
            Chat::User => "/v2/users/",
        };
        let mut path = String::with_capacity(chats.len() + id.len() + 1 + rest.len());
        path.push_str(chats);
        push_segment(&mut path, id);
        path.push('/');
        path.push_str(rest);
        path
    }

    /// The chat's key in the reply rules, made without formatting its name.
    fn hashed(self, id: &str) -> u64 {
        use std::hash::Hasher;
        let mut h = crate::event::id_hasher();
        h.write_u8(self as u8);
        h.write(id.as_bytes());
        h.finish()
    }

    fn key(self, id: &str) -> String {
        match self {
            Chat::Group => format!("group:{id}"),
            Chat::User => format!("user:{id}"),
        }
    }
}

impl Api {
    /// A link over `rest`.
    pub fn new(rest: Rest) -> Api {
        Api { rest, rules: Mutex::default(), pacer: Mutex::new(Pacer::new(5)), me: Mutex::new(None) }
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes an event that replies may answer: a message by its id, any other event by its event
    /// id (the platform lets some events be answered with `event_id`). Tells the second copy of
    /// a group message from the first.
    pub fn note_event(&self, ev: &Event) -> Noted {
        let now = sent_at(ev).unwrap_or_else(Instant::now);
        let kind = ev.name.strip_prefix("qq.").unwrap_or_default();
        let mut rules = self.rules();
        match kind {
            "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE" | "C2C_MESSAGE_CREATE" => {
                let Some(id) = ev.message_id.as_str() else { return Noted::First };
                // A chat whose id is not text is still a chat; only sends that name no message
                // cannot find it.
                let (scene, chat, delivery) = match kind {
                    "C2C_MESSAGE_CREATE" => {
                        (Scene::C2c, ev.user_id.as_str().map(|u| Chat::User.hashed(u)), Delivery::Only)
                    }
                    _ => {
                        let delivery = if kind == "GROUP_AT_MESSAGE_CREATE" { Delivery::At } else { Delivery::Plain };
                        (Scene::Group, ev.group_id.as_str().map(|g| Chat::Group.hashed(g)), delivery)
                    }
                };
                return rules.replies.received(id, scene, chat, delivery, now);
            }
            "AT_MESSAGE_CREATE" | "MESSAGE_CREATE" | "DIRECT_MESSAGE_CREATE" => {
                if let Some(id) = ev.message_id.as_str() {
                    rules.replies.received(id, Scene::Guild, None, Delivery::Only, now);
                }
            }
            // Not a message: rarer, and read from the whole event (messages never parse it).
            _ => {
                let Some(event_id) = ev.raw().get("id").and_then(Value::as_str) else { return Noted::First };
                let d = ev.raw().get("d");
                let s = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str);
                let scene = if s("group_openid").is_some() {
                    Scene::Group
                } else if s("openid").is_some() || s("user_openid").is_some() {
                    Scene::C2c
                } else {
                    Scene::Guild
                };
                rules.replies.received(event_id, scene, None, Delivery::Only, now);
            }
        }
        Noted::First
    }

    /// Records the bot's own id (from the gateway's READY).
    pub fn set_me(&self, id: &str) {
        *self.me.lock().unwrap_or_else(PoisonError::into_inner) = Some(id.to_owned());
    }

    /// The bot's own id: from READY, or fetched from `/users/@me` (webhook bots have no READY).
    pub async fn me(&self) -> Result<String, CallError> {
        if let Some(id) = self.me.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(id);
        }
        let request =
            Request { method: reqwest::Method::GET, path: "/users/@me".into(), query: vec![], body: Body::None };
        let answer = finish("get_bot_info", self.rest.send("get_bot_info", &request).await?)?;
        match answer["data"]["id"].as_str() {
            Some(id) => {
                self.set_me(id);
                Ok(id.to_owned())
            }
            None => Err(invalid("get_bot_info", "the answer has no id")),
        }
    }

    /// Makes the call `action`; `answered` is false when nobody reads a success (a detached
    /// call), and a group or C2C send then answers it with `Null` instead of building
    /// qg_botsdk's shape.
    async fn run(&self, action: &str, params: Value, answered: bool) -> Result<Value, CallError> {
        let Value::Object(params) = params else { return Err(invalid(action, "parameters must be a map")) };
        match action {
            "get_bot_id" => {
                let id = self.me().await?;
                Ok(json!({"data": id, "http_code": 200, "trace_id": "", "result": true}))
            }
            "wait_for" => Err(invalid(action, "qq::wait_for waits inside a script callback; call it from one")),
            "send_group_msg" => self.send_chat(action, Chat::Group, params, answered).await,
            "send_qq_dm" => self.send_chat(action, Chat::User, params, answered).await,
            "send_msg" | "send_dm" | "send_embed" | "send_ark_23" | "send_ark_24" | "send_ark_37" | "send_markdown" => {
                self.send_guild(action, params).await
            }
            "delete_group_msg" | "delete_c2c_msg" => {
                if let Some(id) = params.get("message_id").and_then(Value::as_str) {
                    self.rules().replies.recall(id, Instant::now()).map_err(|e| invalid(action, &e.to_string()))?;
                }
                self.simple(action, Value::Object(params)).await
            }
            "upload_media" => {
                let chat = match (params.get("group_openid"), params.get("user_openid")) {
                    (Some(Value::String(g)), None) => Chat::Group.key(g),
                    (None, Some(Value::String(u))) => Chat::User.key(u),
                    _ => return Err(invalid(action, "give exactly one of `user_openid` and `group_openid`")),
                };
                let answer = self.simple(action, Value::Object(params)).await?;
                if let Some(info) = answer["data"]["file_info"].as_str() {
                    self.rules().uploaded(info, &chat);
                }
                Ok(answer)
            }
            "create_permission_demand" => self.simple(action, Value::Object(demand(params)?)).await,
            "get_guild_permissions" => {
                let mut answer = self.simple(action, Value::Object(params)).await?;
                name_apis(&mut answer["data"]);
                Ok(answer)
            }
            "create_thread" => {
                let mut params = params;
                if let Some(content @ (Value::Object(_) | Value::Array(_))) = params.get("content") {
                    // The platform takes a JSON thread's content as a string.
                    let text = content.to_string();
                    params.insert("content".into(), Value::String(text));
                }
                self.simple(action, Value::Object(params)).await
            }
            "create_role" | "patch_role" => self.simple(action, Value::Object(role(params)?)).await,
            "delete_member" => {
                let mut params = params;
                let days = params.get("delete_history_msg_days").and_then(Value::as_i64).unwrap_or(0);
                if ![3, 7, 15, 30, 0, -1].contains(&days) {
                    return Err(invalid(action, "delete_history_msg_days must be 3, 7, 15, 30, 0 or -1"));
                }
                params.entry("add_blacklist").or_insert(json!(false));
                params.insert("delete_history_msg_days".into(), json!(days));
                self.simple(action, Value::Object(params)).await
            }
            "delete_msg" | "delete_dm_msg" => {
                let mut params = params;
                params.entry("hidetip").or_insert(json!(false));
                self.simple(action, Value::Object(params)).await
            }
            "put_channel_member_permission" | "put_channel_role_permission" => {
                let mut params = params;
                for key in ["add", "remove"] {
                    // Bit sets as strings, "0" when not given (the platform wants both).
                    let v = params.remove(key).unwrap_or(json!("0"));
                    params.insert(key.into(), Value::String(text(&v)));
                }
                self.simple(action, Value::Object(params)).await
            }
            _ => match functions::paging(action) {
                Some(paging) => {
                    let request = functions::request(action, Value::Object(params)).map_err(|e| invalid(action, &e))?;
                    self.pages(action, request, paging).await
                }
                None if functions::route(action).is_some() => self.simple(action, Value::Object(params)).await,
                None => self.custom(action, params).await,
            },
        }
    }

    /// One request built from the table.
    async fn simple(&self, action: &str, params: Value) -> Result<Value, CallError> {
        let request = functions::request(action, params).map_err(|e| invalid(action, &e))?;
        finish(action, self.rest.send(action, &request).await?)
    }

    /// `qq::call("METHOD /path", params)`: any route the table lacks (query for GET and DELETE,
    /// JSON body otherwise).
    async fn custom(&self, action: &str, mut params: Map<String, Value>) -> Result<Value, CallError> {
        let unknown = || invalid(action, "no such function; `qq::call` also takes a route, e.g. \"GET /users/@me\"");
        let (method, route) = action.split_once(' ').ok_or_else(unknown)?;
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| unknown())?;
        if !route.starts_with('/') {
            return Err(unknown());
        }
        let path = super::rest::fill_route(route, &mut params).map_err(|e| invalid(action, &e))?;
        let (query, body) = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            (params.into_iter().map(|(k, v)| (k, text(&v))).collect(), Body::None)
        } else {
            (Vec::new(), Body::Json(Value::Object(params)))
        };
        finish(action, self.rest.send(action, &Request { method, path, query, body }).await?)
    }

    /// A list fetched whole: `data` holds every item, `http_code`, `trace_id` and `result` one
    /// entry per page (qg_botsdk's shape for paged lists).
    async fn pages(&self, action: &str, first: Request, paging: Paging) -> Result<Value, CallError> {
        let mut items: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let (mut codes, mut traces, mut results) = (Vec::new(), Vec::new(), Vec::new());
        let mut request = first;
        match paging {
            Paging::After { limit, .. } => request.query.push(("limit".into(), limit.to_string())),
            Paging::StartIndex => {
                request.query.extend([("limit".into(), "400".into()), ("start_index".into(), "0".into())])
            }
            Paging::Cookie => request.query.extend([("limit".into(), "50".into())]),
            Paging::UntilFinished => {}
        }
        let base_query = request.query.clone();
        let max_pages = if paging == Paging::UntilFinished { 100 } else { MAX_PAGES };
        for _ in 0..max_pages {
            let answer = self.rest.send(action, &request).await?;
            codes.push(json!(answer.http_code));
            traces.push(json!(answer.trace_id));
            results.push(json!(answer.result));
            if !answer.result {
                let wrapped = json!({"data": answer.data, "http_code": codes, "trace_id": traces, "result": results});
                return Err(failed(action, &answer, wrapped));
            }
            let page = answer.data;
            let (list, next): (Vec<Value>, Option<(String, String)>) = match paging {
                Paging::After { limit, id_at, short_ends } => {
                    let list = page.as_array().cloned().unwrap_or_default();
                    let last = list.last().and_then(|i| i.pointer(id_at)).map(text);
                    let more = if short_ends { list.len() >= limit as usize } else { !list.is_empty() };
                    (list, last.filter(|_| more).map(|id| ("after".to_owned(), id)))
                }
                Paging::StartIndex => {
                    let list = page["data"].as_array().cloned().unwrap_or_default();
                    let next = page["next"].as_str().filter(|n| !n.is_empty() && !list.is_empty());
                    (list, next.map(|n| ("start_index".to_owned(), n.to_owned())))
                }
                Paging::Cookie => {
                    let list = page["users"].as_array().cloned().unwrap_or_default();
                    let end = page["is_end"].as_bool().unwrap_or(true);
                    let cookie = page["cookie"].as_str().filter(|c| !end && !c.is_empty());
                    (list, cookie.map(|c| ("cookie".to_owned(), c.to_owned())))
                }
                Paging::UntilFinished => {
                    // The same request again until `is_finish` (1 or true); the platform has no cursor.
                    let list = page["threads"].as_array().cloned().unwrap_or_default();
                    let finished = page["is_finish"] == 1 || page["is_finish"] == true || page["is_finish"].is_null();
                    (list, (!finished).then(|| (String::new(), String::new())))
                }
            };
            let mut fresh = 0;
            for item in list {
                let id = match paging {
                    Paging::After { id_at, .. } => item.pointer(id_at).map(text),
                    Paging::StartIndex => item.pointer("/user/id").map(text),
                    Paging::Cookie => item.get("id").map(text),
                    Paging::UntilFinished => item.pointer("/thread_info/thread_id").map(text),
                };
                // Pages may repeat items (the docs say so for members): each is kept once.
                if id.is_none_or(|id| seen.insert(id)) {
                    items.push(item);
                    fresh += 1;
                }
            }
            let Some((key, value)) = next else { break };
            if fresh == 0 {
                break; // a page with nothing new: the server is not moving on
            }
            if items.len() >= functions::MAX_ITEMS {
                tracing::warn!(action, items = items.len(), "a paged list stopped at its item cap");
                break;
            }
            request.query = base_query.clone();
            if !key.is_empty() {
                request.query.retain(|(k, _)| *k != key);
                request.query.push((key, value));
            }
        }
        Ok(json!({"data": items, "http_code": codes, "trace_id": traces, "result": results}))
    }

    /// A group or C2C message: composed, its media uploaded to the same chat, sent as a reply.
    async fn send_chat(
        &self,
        action: &str,
        chat: Chat,
        mut params: Map<String, Value>,
        answered: bool,
    ) -> Result<Value, CallError> {
        let id_key = if chat == Chat::Group { "group_openid" } else { "user_openid" };
        let target = match params.remove(id_key) {
            Some(v @ (Value::String(_) | Value::Number(_))) => text(&v),
            _ => return Err(invalid(action, &format!("missing required parameter `{id_key}`"))),
        };
        let mut composed = compose_params(action, &mut params, Place::Chat)?;
        if let Some(info) = params.remove("media_file_info").filter(|v| !v.is_null()) {
            let info = text(&info);
            if let Some(owner) = self.rules().uploads.get(&info)
                && *owner != chat.key(&target)
            {
                return Err(invalid(
                    action,
                    &format!(
                        "this file was uploaded for {owner}; an upload only works in the chat it was uploaded for"
                    ),
                ));
            }
            composed.body.insert("media".into(), json!({ "file_info": info }));
        }
        // The reply rules, before anything is sent.
        let message_id = params.remove("message_id").filter(|v| !v.is_null()).map(|v| text(&v));
        let event_id = params.remove("event_id").filter(|v| !v.is_null()).map(|v| text(&v));
        let refused = |e: ReplyError| invalid(action, &e.to_string());
        let media = composed.media.take();
        // A send with media is checked before its upload and takes its reply after it: a
        // failure before sending costs no reply. Any other takes it at once.
        let (answering, taken) = {
            let now = Instant::now();
            let mut rules = self.rules();
            let answering = match (&message_id, &event_id) {
                (Some(id), _) | (None, Some(id)) => Some(id.clone()),
                (None, None) => rules.replies.answerable(chat.hashed(&target), now).map(str::to_owned),
            };
            let taken = match media {
                None => Some(rules.replies.reply(chat.scene(), answering.as_deref(), now).map_err(refused)?),
                Some(_) => {
                    rules.replies.check(chat.scene(), answering.as_deref(), now).map_err(refused)?;
                    None
                }
            };
            (answering, taken)
        };
        let seq = match taken {
            Some(seq) => seq,
            None => {
                if let Some(media) = media {
                    // Boxed: an upload's future is most of this one, which is copied whole when
                    // the call is boxed, and most messages carry no media.
                    let info = Box::pin(self.upload(action, chat, &target, &media)).await?;
                    composed.body.insert("media".into(), json!({ "file_info": info }));
                }
                self.rules().replies.reply(chat.scene(), answering.as_deref(), Instant::now()).map_err(refused)?
            }
        };
        // Moved in, not copied as `json!` would.
        if message_id.is_none() && event_id.is_none() {
            composed.body.insert("msg_id".into(), Value::from(answering));
        }
        if let Some(id) = message_id {
            composed.body.insert("msg_id".into(), Value::String(id));
        }
        if let Some(id) = event_id {
            composed.body.insert("event_id".into(), Value::String(id));
        }
        let msg_type = composed.msg_type();
        if msg_type == 7 && !composed.body.contains_key("content") {
            // The docs ask for some content with media ("a space, for example").
            composed.body.insert("content".into(), json!(" "));
        }
        let seq = params.remove("msg_seq").and_then(|v| v.as_u64()).unwrap_or(u64::from(seq));
        composed.body.insert("msg_seq".into(), json!(seq));
        composed.body.insert("msg_type".into(), json!(msg_type));
        let request = Request {
            method: reqwest::Method::POST,
            path: chat.path(&target, "messages"),
            query: vec![],
            body: Body::Json(Value::Object(composed.body)),
        };
        let answer = if answered {
            self.rest.send(action, &request).await?
        } else {
            self.rest.send_detached(action, &request).await?
        };
        if answer.result
            && let Some(id) = answer.data.get("id").and_then(Value::as_str)
        {
            self.rules().replies.sent(id, Instant::now());
        }
        if answer.result && !answered {
            return Ok(Value::Null);
        }
        finish(action, answer)
    }

    /// Uploads `media` for one chat and returns its `file_info`.
    async fn upload(&self, action: &str, chat: Chat, target: &str, media: &Media) -> Result<String, CallError> {
        let body = match media {
            Media::Url { file_type, url } => json!({"file_type": file_type, "url": url, "srv_send_msg": false}),
            Media::Data { file_type, source, base64 } => {
                let bytes = message::media_bytes(source, *base64, MAX_FILE).await.map_err(|e| invalid(action, &e))?;
                use base64::Engine;
                let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                json!({"file_type": file_type, "file_data": data, "srv_send_msg": false})
            }
        };
        let request = Request {
            method: reqwest::Method::POST,
            path: chat.path(target, "files"),
            query: vec![],
            body: Body::Json(body),
        };
        let answer = finish("upload_media", self.rest.send("upload_media", &request).await?)?;
        let info = answer["data"]["file_info"]
            .as_str()
            .ok_or_else(|| invalid(action, "the upload's answer has no file_info"))?
            .to_owned();
        self.rules().uploaded(&info, &chat.key(target));
        Ok(info)
    }

    /// A guild channel or DM message (and the deprecated kinds, built as qg_botsdk builds them).
    async fn send_guild(&self, action: &str, mut params: Map<String, Value>) -> Result<Value, CallError> {
        let need = |params: &mut Map<String, Value>, key: &str| match params.remove(key) {
            Some(v @ (Value::String(_) | Value::Number(_))) => Ok(text(&v)),
            _ => Err(invalid(action, &format!("missing required parameter `{key}`"))),
        };
        let (path, channel) = if action == "send_dm" {
            (format!("/dms/{}/messages", segment(&need(&mut params, "guild_id")?)), None)
        } else {
            let channel = need(&mut params, "channel_id")?;
            (format!("/channels/{}/messages", segment(&channel)), Some(channel))
        };
        let take = |params: &Map<String, Value>, k: &str| params.get(k).cloned().unwrap_or(Value::Null);
        let lines = |v: &Value| match v {
            Value::Array(a) => a.clone(),
            Value::Null => Vec::new(),
            other => vec![other.clone()],
        };
        let mut composed = match action {
            "send_embed" => {
                let e = message::embed(
                    &take(&params, "title"),
                    &take(&params, "prompt"),
                    &take(&params, "image"),
                    &lines(&take(&params, "content")),
                );
                Composed { body: Map::from_iter([("embed".to_owned(), e)]), media: None }
            }
            "send_ark_23" => {
                let (content, link) = (lines(&take(&params, "content")), lines(&take(&params, "link")));
                if content.len() != link.len() {
                    return Err(invalid(action, "`content` and `link` must be lists of the same length"));
                }
                let ark = message::ark_23(&take(&params, "desc"), &take(&params, "prompt"), &content, &link);
                Composed { body: Map::from_iter([("ark".to_owned(), ark)]), media: None }
            }
            "send_ark_24" => {
                Composed { body: Map::from_iter([("ark".to_owned(), message::ark_24(&params))]), media: None }
            }
            "send_ark_37" => {
                Composed { body: Map::from_iter([("ark".to_owned(), message::ark_37(&params))]), media: None }
            }
            "send_markdown" => {
                let md = message::markdown(
                    &take(&params, "template_id"),
                    &take(&params, "key_values"),
                    &take(&params, "content"),
                )
                .map_err(|e| invalid(action, &e))?;
                let mut body = Map::from_iter([("markdown".to_owned(), md)]);
                match (take(&params, "keyboard_content"), take(&params, "keyboard_id")) {
                    (content @ Value::Object(_), _) => body.insert("keyboard".into(), json!({ "content": content })),
                    (_, Value::Null) => None,
                    (_, id) => body.insert("keyboard".into(), json!({ "id": id })),
                };
                Composed { body, media: None }
            }
            _ => {
                let mut composed = compose_params(action, &mut params, Place::Guild)?;
                if let Some(url) = params.remove("image").filter(|v| !v.is_null()) {
                    composed.body.insert("image".into(), url);
                }
                if let Some(file) = params.remove("file_image").filter(|v| !v.is_null()) {
                    if composed.media.is_some() {
                        return Err(invalid(action, "one image per message"));
                    }
                    composed.media = Some(Media::Data { file_type: 1, source: text(&file), base64: false });
                }
                composed
            }
        };
        let message_id = params.remove("message_id").filter(|v| !v.is_null()).map(|v| text(&v));
        if let Some(id) = &message_id {
            self.rules()
                .replies
                .check(Scene::Guild, Some(id), Instant::now())
                .map_err(|e| invalid(action, &e.to_string()))?;
            composed.body.insert("msg_id".into(), json!(id));
        }
        if let Some(id) = params.remove("event_id").filter(|v| !v.is_null()) {
            composed.body.insert("event_id".into(), json!(text(&id)));
        }
        let body = match composed.media.take() {
            None => Body::Json(Value::Object(std::mem::take(&mut composed.body))),
            Some(Media::Url { url, .. }) => {
                composed.body.insert("image".into(), json!(url));
                Body::Json(Value::Object(std::mem::take(&mut composed.body)))
            }
            Some(Media::Data { source, base64, .. }) => {
                let bytes = message::media_bytes(&source, base64, MAX_FILE).await.map_err(|e| invalid(action, &e))?;
                // In a form, objects travel as JSON strings (the docs say so).
                let fields = std::mem::take(&mut composed.body).into_iter().map(|(k, v)| (k, text(&v))).collect();
                Body::Form { fields, file: ("file_image".into(), "file_image".into(), bytes) }
            }
        };
        if let Some(id) = &message_id {
            // A reply to a guild message, within its window and budget, taken once the file is read.
            self.rules()
                .replies
                .reply(Scene::Guild, Some(id), Instant::now())
                .map_err(|e| invalid(action, &e.to_string()))?;
        }
        if let Some(channel) = channel {
            // 5 sends per second per channel: later ones wait their turn.
            let at = self.pacer.lock().unwrap_or_else(PoisonError::into_inner).reserve(&channel, Instant::now());
            tokio::time::sleep_until(at.into()).await;
        }
        finish(
            action,
            self.rest.send(action, &Request { method: reqwest::Method::POST, path, query: vec![], body }).await?,
        )
    }
}

impl Requests for Api {
    fn call<'a>(&'a self, action: &'a str, params: Params, answered: bool) -> CallFuture<'a> {
        match params {
            Params::Given(params) => Box::pin(self.run(action, params, answered)),
            // This link keeps the default `encode`: its reply rules number a chat's replies in
            // the order they are sent, so it builds each request when its turn comes.
            Params::Encoded(_) => Box::pin(std::future::ready(Err(invalid(action, "encoded parameters")))),
        }
    }
}

/// When the platform says the event happened (`d.timestamp`, kept as [`Event::time`]), as an
/// instant: a message replayed after a resume keeps the window it had. `None` when absent, odd,
/// or in the future.
fn sent_at(ev: &Event) -> Option<Instant> {
    let secs = ev.time?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
    let age = now - secs;
    // Clocks differ a little; only an age that makes sense moves the start of the window.
    if !(0.0..=86_400.0).contains(&age) {
        return None;
    }
    Instant::now().checked_sub(std::time::Duration::from_secs_f64(age))
}

/// The message of a send: `content` (text, segments or message fields), the
/// cross-protocol `message` (what `ev.reply` and `chat::` pass), and `message_reference_id`.
fn compose_params(action: &str, params: &mut Map<String, Value>, place: Place) -> Result<Composed, CallError> {
    let content = params.remove("content").unwrap_or(Value::Null);
    let message = params.remove("message").unwrap_or(Value::Null);
    let mut composed =
        message::compose(&Value::Array(vec![content, message]), place).map_err(|e| invalid(action, &e))?;
    if let Some(id) = params.remove("message_reference_id").filter(|v| !v.is_null()) {
        let ignore = params.remove("ignore_message_reference_error").and_then(|v| v.as_bool()).unwrap_or(false);
        composed
            .body
            .insert("message_reference".into(), json!({"message_id": text(&id), "ignore_get_message_error": ignore}));
    }
    Ok(composed)
}

/// `create_permission_demand`'s `api`: a function name (`create_role`), its route as
/// `"METHOD /path"`, or the platform's own `{path, method}`.
fn demand(mut params: Map<String, Value>) -> Result<Map<String, Value>, CallError> {
    let action = "create_permission_demand";
    let identify = match params.remove("api") {
        Some(Value::Object(m)) => Value::Object(m),
        Some(Value::String(name)) => {
            let name = name.trim().trim_end_matches("()").trim_end_matches("（）");
            let route = functions::route(name).filter(|r| !r.is_empty()).unwrap_or(name);
            match route.split_once(' ') {
                Some((method, path)) if path.starts_with('/') => json!({"path": path, "method": method.to_uppercase()}),
                _ => {
                    return Err(invalid(
                        action,
                        &format!("`{name}` is neither a function with a route nor \"METHOD /path\""),
                    ));
                }
            }
        }
        _ => return Err(invalid(action, "missing required parameter `api`")),
    };
    params.insert("api".into(), identify);
    Ok(params)
}

/// Names each API of `get_guild_permissions`' answer by its function (`apis[i].api`), as
/// qg_botsdk does.
fn name_apis(data: &mut Value) {
    let Some(apis) = data.get_mut("apis").and_then(Value::as_array_mut) else { return };
    for api in apis {
        let (Some(method), Some(path)) = (api["method"].as_str(), api["path"].as_str()) else { continue };
        let route = format!("{} {path}", method.to_uppercase());
        let name = super::actions::ROUTES.iter().find(|(_, r)| *r == route).map(|(n, _)| *n);
        api["api"] = json!(name);
    }
}

/// `create_role` / `patch_role`: `hoist` as 1 or 0, `color` a number (`"#RRGGBB"` or
/// `"#AARRGGBB"` converted as the docs say: the ARGB hex value as a decimal).
fn role(mut params: Map<String, Value>) -> Result<Map<String, Value>, CallError> {
    if let Some(hoist) = params.remove("hoist") {
        let on = match &hoist {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64() != Some(0),
            Value::String(s) => !matches!(s.trim(), "" | "0" | "false"),
            _ => false,
        };
        params.insert("hoist".into(), json!(i32::from(on)));
    }
    if let Some(Value::String(colour)) = params.get("color") {
        let hex = colour.trim().trim_start_matches('#');
        let value = u32::from_str_radix(hex, 16)
            .ok()
            .filter(|_| matches!(hex.len(), 6 | 8))
            .map(|v| if hex.len() == 6 { v | 0xFF00_0000 } else { v })
            .ok_or_else(|| invalid("create_role", &format!("color must be a number or \"#RRGGBB\", not {colour:?}")))?;
        params.insert("color".into(), json!(value));
    }
    Ok(params)
}

/// An answer as a script value, or the platform's failure as an error carrying it.
fn finish(action: &str, answer: Answer) -> Result<Value, CallError> {
    if answer.result {
        return Ok(answer.into_value());
    }
    let wrapped = answer.clone().into_value();
    Err(failed(action, &answer, wrapped))
}

fn failed(action: &str, answer: &Answer, wrapped: Value) -> CallError {
    let code = answer.data.get("code").and_then(Value::as_i64).unwrap_or(i64::from(answer.http_code));
    let message = answer
        .data
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {}", answer.http_code), str::to_owned);
    let trace_id = (!answer.trace_id.is_empty()).then(|| answer.trace_id.clone());
    CallError::Failed { action: action.to_owned(), code, message, trace_id, answer: Some(Box::new(wrapped)) }
}

fn invalid(action: &str, reason: &str) -> CallError {
    CallError::Invalid { action: action.to_owned(), reason: reason.to_owned() }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::adapter::qq::reply::RECALL_WINDOW;
    use crate::adapter::qq::token::Tokens;
    use crate::bot::Params;

    /// An OpenAPI on loopback: tokens, and group message sends answered with ids `R1`, `R2`...
    async fn openapi() -> String {
        let sent = Arc::new(AtomicU64::new(0));
        let send = move || {
            let id = sent.fetch_add(1, Ordering::SeqCst) + 1;
            async move { axum::Json(json!({"id": format!("R{id}"), "timestamp": "2026-12-01T08:00:00+08:00"})) }
        };
        let token = || async { axum::Json(json!({"access_token": "t", "expires_in": "7200"})) };
        let app = axum::Router::new()
            .route("/app/getAppAccessToken", axum::routing::post(token))
            .route("/v2/groups/{group}/messages", axum::routing::post(send));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    #[tokio::test]
    async fn a_detached_send_is_answered_with_null_and_still_counts_as_the_bots_own() {
        let base = openapi().await;
        let tls = crate::tls::client(None).unwrap();
        let client = crate::tls::http_client(&tls);
        let tokens = Arc::new(Tokens::new(client.clone(), &base, "1", crate::config::Secret("s".into())));
        let api = Api::new(Rest::new("qq", client, &tls, &base, tokens, 4));
        api.rules().replies.received("M1", Scene::Group, None, Delivery::Only, Instant::now());
        let params = json!({"group_openid": "G", "content": "hi", "message_id": "M1"});

        let waited = api.call("send_group_msg", Params::Given(params.clone()), true).await.unwrap();
        assert_eq!(
            (&waited["data"]["id"], &waited["http_code"], &waited["result"]),
            (&json!("R1"), &json!(200), &json!(true))
        );
        let detached = api.call("send_group_msg", Params::Given(params), false).await.unwrap();
        assert_eq!(detached, Value::Null, "nobody reads it");

        // Both are the bot's own sends: recalling either after the window is refused.
        let late = Instant::now() + RECALL_WINDOW + Duration::from_secs(1);
        for id in ["R1", "R2"] {
            assert!(api.rules().replies.recall(id, late).is_err(), "{id} was noted as sent");
        }
    }
}

//! Messages on the official platform (seeds 002–004, qg_botsdk's models): a script's message
//! (text, `msg::` segments, the `qq::` builders, or a map of the platform's own fields) composed
//! into a send's body, and the kinds the deprecated guild functions build (embed, ark 23/24/37,
//! markdown).
//!
//! What maps where:
//!
//! | script | guild channel / DM | group / C2C |
//! |---|---|---|
//! | text | `content` | `content` |
//! | `msg::at(id)` | `<@id>` in `content` (`all`: `@everyone`) | not available: refused |
//! | `msg::face(id)` | `<emoji:id>` in `content` | not available: refused |
//! | `msg::image(url or path)` | `image` (a URL) or multipart `file_image` (a file) | uploaded to the chat, sent as `media` (`msg_type` 7) |
//! | `msg::record` / `msg::video` | not available: refused | uploaded (file type 3 / 2), sent as `media` |
//! | `msg::reply(id)`, `qq::reference(id)` | `message_reference` | `message_reference` |
//! | `qq::markdown`, `qq::keyboard`, `qq::ark_*`, `qq::embed`, `qq::media` | the same field | the same field, `msg_type` 2 / 3 / 4 / 7 |

use serde_json::{Map, Value, json};

/// Where a message goes: the platform's rules differ between guilds and QQ chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A guild channel or a guild direct message.
    Guild,
    /// A QQ group or a one-to-one (C2C) chat.
    Chat,
}

/// A file that goes with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// At a URL the platform fetches.
    Url {
        /// The platform's file type: 1 image, 2 video, 3 voice, 4 file.
        file_type: u8,
        /// The URL.
        url: String,
    },
    /// A local file (`file://` or a path), or base64 data (`base64://`), read by the runtime.
    Data {
        /// The platform's file type.
        file_type: u8,
        /// The path, or the data after `base64://`.
        source: String,
        /// Whether `source` is base64 data.
        base64: bool,
    },
}

/// A message composed into a send's body fields, plus the file still to upload or attach.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Composed {
    /// `content`, `markdown`, `keyboard`, `ark`, `embed`, `media`, `message_reference`.
    pub body: Map<String, Value>,
    /// A file to upload (group/C2C) or attach (guild).
    pub media: Option<Media>,
}

impl Composed {
    /// The v2 `msg_type` of the body: 7 media, 2 markdown, 3 ark, 4 embed, 0 text.
    pub fn msg_type(&self) -> u8 {
        let has = |k: &str| self.body.contains_key(k);
        if self.media.is_some() || has("media") {
            7
        } else if has("markdown") {
            2
        } else if has("ark") {
            3
        } else if has("embed") {
            4
        } else {
            0
        }
    }
}

/// Composes a script's message for `place`: a string is text; a map with `type` is a segment; a
/// map without one holds the platform's own fields; an array is any of these in order.
pub fn compose(message: &Value, place: Place) -> Result<Composed, String> {
    let mut out = Composed::default();
    let mut content = String::new();
    add(message, place, &mut out, &mut content)?;
    if !content.is_empty() {
        out.body.insert("content".into(), Value::String(content));
    }
    Ok(out)
}

fn add(message: &Value, place: Place, out: &mut Composed, content: &mut String) -> Result<(), String> {
    match message {
        Value::Null => Ok(()),
        Value::String(text) => {
            content.push_str(text);
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|item| add(item, place, out, content)),
        Value::Object(map) if map.contains_key("type") => segment(map, place, out, content),
        Value::Object(fields) => {
            for (key, value) in fields {
                match key.as_str() {
                    "content" => add(value, place, out, content)?,
                    "image" => set_media(out, media_from(1, value)?)?,
                    "markdown" | "keyboard" | "ark" | "embed" | "media" | "message_reference" => {
                        out.body.insert(key.clone(), value.clone());
                    }
                    other => {
                        return Err(format!(
                            "`{other}` is not a message field (content, image, markdown, keyboard, ark, embed, media, message_reference)"
                        ));
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("a message is text, a segment, a map of message fields or an array of them, not {other}")),
    }
}

fn segment(seg: &Map<String, Value>, place: Place, out: &mut Composed, content: &mut String) -> Result<(), String> {
    let kind = seg.get("type").and_then(Value::as_str).unwrap_or_default();
    let empty = Map::new();
    let data = seg.get("data").and_then(Value::as_object).unwrap_or(&empty);
    let get = |keys: &[&str]| keys.iter().find_map(|k| data.get(*k).filter(|v| !v.is_null()));
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let need = |what: &str, keys: &[&str]| get(keys).ok_or_else(|| format!("a `{kind}` segment needs `{what}`"));
    let not_here = |what: &str| {
        Err(format!("{what} cannot be sent to a QQ group or C2C chat on the official platform (guilds only)"))
    };
    match kind {
        "text" => content.push_str(&text(need("text", &["text"])?)),
        "at" | "mention" => match (place, text(need("qq", &["qq", "user_id"])?)) {
            (Place::Guild, all) if all == "all" => content.push_str("@everyone"),
            (Place::Guild, id) => content.push_str(&format!("<@{id}>")),
            (Place::Chat, _) => return not_here("an @-mention"),
        },
        "face" => match place {
            Place::Guild => content.push_str(&format!("<emoji:{}>", text(need("id", &["id", "face_id"])?))),
            Place::Chat => return not_here("a QQ face"),
        },
        "reply" | "reference" => {
            let id = text(need("id", &["id", "message_id"])?);
            out.body.insert("message_reference".into(), json!({"message_id": id, "ignore_get_message_error": true}));
        }
        "image" => set_media(out, media_from(1, need("file", &["file", "url", "uri"])?)?)?,
        "record" | "video" if place == Place::Guild => {
            return Err(format!("a `{kind}` cannot be sent to a guild on the official platform (images only)"));
        }
        "record" => set_media(out, media_from(3, need("file", &["file", "url", "uri"])?)?)?,
        "video" => set_media(out, media_from(2, need("file", &["file", "url", "uri"])?)?)?,
        "markdown" | "keyboard" | "ark" | "embed" | "media" => {
            out.body.insert(kind.to_owned(), Value::Object(data.clone()));
        }
        other => {
            return Err(format!(
                "a `{other}` segment cannot be sent on the official platform (it has text, at and face in guilds, \
                 reply, image, record, video, markdown, keyboard, ark, embed and media)"
            ));
        }
    }
    Ok(())
}

fn set_media(out: &mut Composed, media: Media) -> Result<(), String> {
    if out.media.is_some() || out.body.contains_key("media") {
        return Err("the official platform takes one image or file per message; send the others separately".into());
    }
    out.media = Some(media);
    Ok(())
}

/// A file reference as scripts write it: a URL, `file://` or a path, or `base64://`.
fn media_from(file_type: u8, value: &Value) -> Result<Media, String> {
    let Some(s) = value.as_str().filter(|s| !s.is_empty()) else {
        return Err(format!("a file must be a URL, a path or base64:// data, not {value}"));
    };
    Ok(if s.starts_with("http://") || s.starts_with("https://") {
        Media::Url { file_type, url: s.to_owned() }
    } else if let Some(data) = s.strip_prefix("base64://") {
        Media::Data { file_type, source: data.to_owned(), base64: true }
    } else {
        Media::Data { file_type, source: s.strip_prefix("file://").unwrap_or(s).to_owned(), base64: false }
    })
}

/// Reads a [`Media::Data`]'s bytes (a path is read on a blocking thread; at most `max` bytes).
pub async fn media_bytes(source: &str, base64: bool, max: u64) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if base64 {
        return base64::engine::general_purpose::STANDARD
            .decode(source.trim())
            .map_err(|e| format!("bad base64 data: {e}"));
    }
    let path = std::path::PathBuf::from(source);
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.len() > max {
            return Err(format!("{} is {} bytes, more than the {max} a message may carry", path.display(), meta.len()));
        }
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// An ark message's `{key, value}` row.
fn kv(key: &str, value: &Value) -> Option<Value> {
    (!value.is_null()).then(|| json!({"key": key, "value": value}))
}

/// Ark template 23 (a description, a prompt and a list of lines with optional links).
pub fn ark_23(desc: &Value, prompt: &Value, lines: &[Value], links: &[Value]) -> Value {
    let list: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut obj_kv = vec![json!({"key": "desc", "value": line})];
            if let Some(link) = links.get(i).filter(|l| !l.is_null() && l.as_str() != Some("")) {
                obj_kv.push(json!({"key": "link", "value": link}));
            }
            json!({ "obj_kv": obj_kv })
        })
        .collect();
    let mut rows: Vec<Value> = [kv("#DESC#", desc), kv("#PROMPT#", prompt)].into_iter().flatten().collect();
    rows.push(json!({"key": "#LIST#", "obj": list}));
    json!({"template_id": 23, "kv": rows})
}

/// Ark template 24 (text with a thumbnail).
pub fn ark_24(f: &Map<String, Value>) -> Value {
    let g = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
    let rows: Vec<Value> = [
        kv("#DESC#", &g("desc")),
        kv("#PROMPT#", &g("prompt")),
        kv("#TITLE#", &g("title")),
        kv("#METADESC#", &g("content")),
        kv("#IMG#", &g("image")),
        kv("#LINK#", &g("link")),
        // qg_botsdk's keyword is spelt `subtitile`; `subtitle` is accepted too.
        kv("#SUBTITLE#", &f.get("subtitile").or_else(|| f.get("subtitle")).cloned().unwrap_or(Value::Null)),
    ]
    .into_iter()
    .flatten()
    .collect();
    json!({"template_id": 24, "kv": rows})
}

/// Ark template 37 (a large picture).
pub fn ark_37(f: &Map<String, Value>) -> Value {
    let g = |k: &str| f.get(k).cloned().unwrap_or(Value::Null);
    let rows: Vec<Value> = [
        kv("#PROMPT#", &g("prompt")),
        kv("#METATITLE#", &g("title")),
        kv("#METASUBTITLE#", &g("content")),
        kv("#METACOVER#", &g("image")),
        kv("#METAURL#", &g("link")),
    ]
    .into_iter()
    .flatten()
    .collect();
    json!({"template_id": 37, "kv": rows})
}

/// An embed: a title, a prompt, a thumbnail and one field per line.
pub fn embed(title: &Value, prompt: &Value, image: &Value, lines: &[Value]) -> Value {
    let mut e = Map::new();
    if !title.is_null() {
        e.insert("title".into(), title.clone());
    }
    if !prompt.is_null() {
        e.insert("prompt".into(), prompt.clone());
    }
    if !image.is_null() {
        e.insert("thumbnail".into(), json!({ "url": image }));
    }
    e.insert("fields".into(), lines.iter().map(|l| json!({ "name": l })).collect());
    Value::Object(e)
}

/// A markdown body: native `content`, or a template with `{key: value or [values]}` params.
pub fn markdown(template_id: &Value, params: &Value, content: &Value) -> Result<Value, String> {
    if !content.is_null() {
        return Ok(json!({ "content": content }));
    }
    if template_id.is_null() {
        return Err("a markdown needs `content` or a `template_id`".into());
    }
    let mut rows = Vec::new();
    match params {
        Value::Null => {}
        Value::Object(m) => rows.extend(m.iter().map(|(k, v)| json!({"key": k, "values": values(v)}))),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if m.contains_key("key") => rows.push(
                        json!({"key": m["key"], "values": values(m.get("values").or(m.get("value")).unwrap_or(&Value::Null))}),
                    ),
                    Value::Object(m) => rows.extend(m.iter().map(|(k, v)| json!({"key": k, "values": values(v)}))),
                    other => return Err(format!("markdown parameters are maps of key and values, not {other}")),
                }
            }
        }
        other => return Err(format!("markdown parameters are a map or an array, not {other}")),
    }
    Ok(json!({"custom_template_id": template_id, "params": rows}))
}

fn values(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(|x| Value::String(string(x))).collect()),
        other => json!([string(other)]),
    }
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_protocol_segments_map_onto_the_platforms_fields() {
        let msg = json!([{"type": "reply", "data": {"id": "M1"}}, "hi ",
                         {"type": "image", "data": {"file": "https://x/y.png"}}]);
        let c = compose(&msg, Place::Chat).unwrap();
        assert_eq!(c.body["content"], "hi ");
        assert_eq!(c.body["message_reference"]["message_id"], "M1");
        assert_eq!(c.media, Some(Media::Url { file_type: 1, url: "https://x/y.png".into() }));
        assert_eq!(c.msg_type(), 7);
        let g = compose(
            &json!([{"type": "at", "data": {"qq": "U"}}, {"type": "text", "data": {"text": " yo"}}]),
            Place::Guild,
        );
        assert_eq!(g.unwrap().body["content"], "<@U> yo");
    }

    #[test]
    fn what_the_platform_cannot_carry_is_refused_clearly() {
        let at = compose(&json!({"type": "at", "data": {"qq": "U"}}), Place::Chat).unwrap_err();
        assert!(at.contains("guilds only"), "{at}");
        let two = compose(
            &json!([{"type": "image", "data": {"file": "a.png"}}, {"type": "image", "data": {"file": "b.png"}}]),
            Place::Chat,
        );
        assert!(two.unwrap_err().contains("one image"));
        assert!(compose(&json!({"type": "poke", "data": {}}), Place::Chat).unwrap_err().contains("`poke`"));
        assert!(compose(&json!({"colour": 1}), Place::Chat).unwrap_err().contains("`colour`"));
    }

    #[test]
    fn native_kinds_set_the_msg_type() {
        let md = markdown(&Value::Null, &Value::Null, &json!("**hi**")).unwrap();
        let c = compose(&json!({"markdown": md, "keyboard": {"id": "K"}}), Place::Chat).unwrap();
        assert_eq!((c.msg_type(), &c.body["markdown"]["content"]), (2, &json!("**hi**")));
        let t = markdown(&json!("T"), &json!({"name": "x", "list": ["a", 1]}), &Value::Null).unwrap();
        assert_eq!(t["params"], json!([{"key": "list", "values": ["a", "1"]}, {"key": "name", "values": ["x"]}]));
        let ark = ark_23(&json!("d"), &json!("p"), &[json!("l1"), json!("l2")], &[json!("https://a")]);
        assert_eq!(ark["kv"][2]["obj"][0]["obj_kv"][1]["value"], "https://a");
        assert_eq!(ark["kv"][2]["obj"][1]["obj_kv"].as_array().unwrap().len(), 1);
        assert_eq!(compose(&json!({"ark": ark}), Place::Chat).unwrap().msg_type(), 3);
    }
}

//! The one event type every protocol produces.
//!
//! An [`Event`] keeps the protocol's own name (`notice.group_ban.ban`), cross-protocol aliases
//! (`message.group`), the fields most handlers read (`text`, `user_id`, ...) and the raw JSON
//! exactly as it came off the wire.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::bot::Bot;

/// One event from a bot, ready for dispatch.
pub struct Event {
    /// The bot that delivered it; replies and calls inside the callback go here.
    pub bot: Arc<Bot>,
    /// Native dotted name, e.g. `message.group.normal` or `notice.group_ban.ban`.
    pub name: String,
    /// Plain text of a message (empty for other events).
    pub text: String,
    /// Sender or subject user id, `Null` when the event has none.
    pub user_id: Value,
    /// Group id, `Null` outside groups.
    pub group_id: Value,
    /// Message id, `Null` when the event has none.
    pub message_id: Value,
    /// Whether the message @-mentions the bot.
    pub at_me: bool,
    /// The id of the message this one replies to, `Null` when none.
    pub reply_to: Value,
    /// Where the event happened beyond `group_id` and `user_id`, as the protocol names it: a
    /// Milky event's peer (`data.peer_id`), a QQ platform event's guild (`d.guild_id`); `Null`
    /// when it does not say. Kept so replies (and `qq::wait_for`) never parse `raw`.
    pub place: Value,
    /// When the protocol says the event happened, in seconds since the Unix epoch: the QQ
    /// platform's `d.timestamp` (its reply windows count from it); `None` when it does not say.
    pub time: Option<f64>,
    /// How to recognise this event when it arrives again (two transports, a resend).
    pub identity: Identity,
    /// The connection that delivered it (see [`crate::adapter::connection_id`]).
    pub via: u64,
    /// Segments parsed from a string message; `None` when `raw` already holds them as an array
    /// or [`Event::segments_from`] builds them.
    pub parsed_segments: Option<Value>,
    /// Builds the segments from the event when a script first asks, for protocols whose
    /// segments are converted: built and freed on the worker that reads them, not built on the
    /// reactor for every event and freed on another thread.
    pub segments_from: Option<fn(&Event) -> Value>,
    /// What [`Event::segments_from`] built.
    built_segments: OnceLock<Value>,
    /// JSON pointer to the segment array inside `raw` (read lazily: most handlers never look).
    pub segments_at: &'static str,
    /// JSON pointer to the sender object inside `raw`.
    pub sender_at: &'static str,
    /// The event exactly as received (see [`Event::raw`]).
    raw: Raw,
    /// Normalised names handlers can subscribe to: every dotted prefix of `name` plus aliases.
    keys: Keys,
    /// State the protocol attaches to an event it produced and reads back when a script
    /// answers it (OneBot's quick-operation slot); dropped with the last handle to the event.
    pub state: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("name", &self.name).field("bot", &self.bot.name).finish_non_exhaustive()
    }
}

impl Event {
    /// The same event under its native name only, without its cross-protocol aliases (a
    /// protocol's second copy of something already delivered under them).
    pub fn without_aliases(mut self) -> Event {
        let native = self.name.to_ascii_lowercase().replace('.', "_");
        let kept = self.keys.iter().filter(|k| native == **k || native.starts_with(&format!("{k}_")));
        self.keys = kept.cloned().collect();
        self
    }

    /// Builds an event; `aliases` are cross-protocol names beyond the dotted prefixes of `name`.
    /// Decoders check names with [`is_name_part`] first (see [`build_keys`] for long names).
    pub fn new(bot: Arc<Bot>, name: String, aliases: &[&str], raw: impl Into<Raw>) -> Event {
        let keys = keys_of(&name, aliases);
        Event {
            bot,
            name,
            text: String::new(),
            user_id: Value::Null,
            group_id: Value::Null,
            message_id: Value::Null,
            at_me: false,
            reply_to: Value::Null,
            place: Value::Null,
            time: None,
            identity: Identity::None,
            via: 0,
            parsed_segments: None,
            segments_from: None,
            built_segments: OnceLock::new(),
            segments_at: "",
            sender_at: "",
            raw: raw.into(),
            keys,
            state: None,
        }
    }

    /// The event exactly as received, as JSON (parsed now if it was kept as text).
    pub fn raw(&self) -> &Value {
        self.raw.tree()
    }

    /// Whether [`Event::raw`] has been built (tests check that a path never needs it).
    #[cfg(test)]
    pub fn raw_is_built(&self) -> bool {
        self.raw.tree.get().is_some()
    }

    /// Asserts that `self`, decoded from a frame's head and text, shows a script everything
    /// `whole` (decoded from the whole tree) does, and that its raw part is `frame`.
    #[cfg(test)]
    pub fn assert_decoded_like(&self, whole: &Event, frame: &Value) {
        let seen = |e: &Event| {
            let ids = (e.user_id.clone(), e.group_id.clone(), e.message_id.clone(), e.place.clone(), e.time);
            (e.name.clone(), e.keys().to_vec(), e.text.clone(), ids, e.at_me, e.reply_to.clone(), e.identity)
        };
        assert_eq!(seen(self), seen(whole), "{frame}");
        assert_eq!((self.segments(), self.sender(), self.role()), (whole.segments(), whole.sender(), whole.role()));
        assert_eq!(self.raw(), frame, "the rest is parsed when asked for");
    }

    /// Message segments as an array of `{type, data}`; `Null` for events without a message.
    pub fn segments(&self) -> &Value {
        match (&self.parsed_segments, self.segments_from) {
            (Some(parsed), _) => parsed,
            (None, Some(build)) => self.built_segments.get_or_init(|| build(self)),
            (None, None) => self.pointer(self.segments_at),
        }
    }

    /// Sender info as the protocol gives it, `Null` when absent.
    pub fn sender(&self) -> &Value {
        self.pointer(self.sender_at)
    }

    /// The sender's role in the group, as the protocol says it: `owner`, `admin` or `member`
    /// (`None` outside groups, or when the event does not say).
    pub fn role(&self) -> Option<&str> {
        let sender = self.sender();
        if let Some(role) = sender.get("role").or_else(|| sender.get("member_role")).and_then(Value::as_str) {
            return Some(match role {
                "owner" | "admin" | "member" => role,
                _ => "member",
            });
        }
        // Guilds list role ids: 4 is the owner, 2 an admin, 5 a channel admin.
        let roles = path(self.raw(), "/d/member/roles").and_then(Value::as_array)?;
        let has = |id: &str| roles.iter().any(|r| r.as_str() == Some(id));
        Some(if has("4") {
            "owner"
        } else if has("2") || has("5") {
            "admin"
        } else {
            "member"
        })
    }

    /// Whether the sender is one of the bot's superusers (config `superusers`).
    pub fn is_superuser(&self) -> bool {
        self.bot.superusers().iter().any(|s| same_id(&Value::String(s.clone()), &self.user_id))
    }

    fn pointer(&self, at: &str) -> &Value {
        if at.is_empty() {
            return &Value::Null;
        }
        path(self.raw(), at).unwrap_or(&Value::Null)
    }

    /// The normalised names this event is delivered under, most specific first.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// The names an event is delivered under; events of one name share them.
type Keys = Arc<[String]>;

/// Names whose keys each thread keeps: decoders accept any short identifier, so the names an
/// event can have are unbounded, while a bot sees a few dozen in practice. The first names seen
/// stay; a name past them gets its keys built each time (slower, never wrong). Aliases come from
/// the protocols' static tables, so each name has one or two alias sets.
const KNOWN_NAMES: usize = 256;

/// The keys of an event named `name`: every dotted prefix of `name`, most specific first, then
/// the `aliases`, all normalised. Built once per name and thread and shared after that: the
/// decoding thread would otherwise allocate a string per key for every event, and the worker
/// that drops the event would free them.
fn keys_of(name: &str, aliases: &[&str]) -> Keys {
    type Known = foldhash::HashMap<String, Vec<(Vec<String>, Keys)>>;
    thread_local! {
        static KNOWN: RefCell<Known> = RefCell::default();
    }
    KNOWN.with_borrow_mut(|known| {
        let same = |(a, _): &&(Vec<String>, Keys)| a.iter().map(String::as_str).eq(aliases.iter().copied());
        if let Some((_, keys)) = known.get(name).and_then(|variants| variants.iter().find(same)) {
            return keys.clone();
        }
        let keys = build_keys(name, aliases);
        if known.len() < KNOWN_NAMES || known.contains_key(name) {
            let alias_names = aliases.iter().map(|a| (*a).to_owned()).collect();
            known.entry(name.to_owned()).or_default().push((alias_names, keys.clone()));
        }
        keys
    })
}

/// The keys of [`keys_of`], built. Past [`MAX_NAME_PARTS`] parts only the longest prefixes get
/// keys, so building them stays linear in the name's length.
fn build_keys(name: &str, aliases: &[&str]) -> Keys {
    let mut keys: Vec<String> = Vec::with_capacity(4 + aliases.len());
    // Lowercasing ASCII and '.' -> '_' keep byte offsets: every prefix is a slice of this.
    let normalized = name.to_ascii_lowercase().replace('.', "_");
    let mut end = name.len();
    while keys.len() < MAX_NAME_PARTS {
        keys.push(normalized[..end].to_owned());
        match name[..end].rfind('.') {
            Some(i) => end = i,
            None => break,
        }
    }
    for a in aliases {
        let k = normalize_name(a);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into()
}

/// An event as it came off the wire. A decoder that read the fields it needs without building
/// the whole tree keeps the text: most handlers never look at the rest, and one that does
/// parses it on its worker, where the tree is also freed (allocations made on the reactor and
/// freed on a worker are the dearest kind).
pub struct Raw {
    /// The JSON text, when the tree was not built up front; a decoder checked that it parses.
    /// An exact-size copy: a frame's bytes are often a slice of the socket's whole read buffer
    /// (128 KiB with tungstenite), which an event kept for a while would otherwise pin.
    text: Option<Box<[u8]>>,
    tree: OnceLock<Value>,
}

impl Raw {
    /// Keeps a copy of `text`, a JSON document the caller has already parsed once, for
    /// [`Raw::tree`].
    pub fn text(text: &[u8]) -> Raw {
        Raw { text: Some(text.into()), tree: OnceLock::new() }
    }

    /// The tree, built from the text on first use.
    pub fn tree(&self) -> &Value {
        self.tree.get_or_init(|| {
            let text = self.text.as_deref().unwrap_or_default();
            // Cannot fail for text a decoder parsed; if it ever did, the event has no raw part
            // rather than a wrong one.
            serde_json::from_slice(text).unwrap_or_else(|e| {
                tracing::error!("an event's JSON did not parse the second time: {e}");
                Value::Null
            })
        })
    }
}

impl From<Value> for Raw {
    fn from(tree: Value) -> Raw {
        Raw { text: None, tree: OnceLock::from(tree) }
    }
}

/// The value at `pointer` (`/a/b/0`) inside `value`, like [`Value::pointer`] for pointers
/// without `~` escapes, but without allocating a string per step: it runs on every event.
pub fn path<'v>(value: &'v Value, pointer: &str) -> Option<&'v Value> {
    let Some(rest) = pointer.strip_prefix('/') else { return pointer.is_empty().then_some(value) };
    rest.split('/').try_fold(value, |v, step| match v {
        Value::Object(map) => map.get(step),
        Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Normalises an event or handler name so `notice.group_ban` and `notice_group_ban` are one key.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('.', "_")
}

/// Most dotted parts an event name built from the wire may have.
pub const MAX_NAME_PARTS: usize = 6;

/// Whether `part` (one dotted part of an event name from the wire) is a short identifier:
/// 1 to 64 ASCII letters, digits, `_` or `-`.
pub fn is_name_part(part: &str) -> bool {
    (1..=64).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Event {
    /// The conversation the event belongs to (same bot, and the same group, or else the same
    /// private peer): a script handles the events of one conversation in order, one at a time.
    pub fn conversation(&self) -> u64 {
        conversation_key(&self.bot, &self.group_id, &self.user_id)
    }

    /// The queue a script handles this event in: one person's events in one chat, in order.
    /// Two members of a group are two queues, so one member's open conversation never holds
    /// up another's commands (replies to one chat still leave in order: see [`Event::conversation`]).
    pub fn lane(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        if self.group_id.is_null() {
            return self.conversation();
        }
        let mut h = crate::event::id_hasher();
        self.conversation().hash(&mut h);
        hash_id(&self.user_id, &mut h);
        h.finish()
    }
}

/// The conversation of a chat of `bot`: its group, or else the private chat with `user`.
pub fn conversation_key(bot: &Arc<Bot>, group: &Value, user: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
    (Arc::as_ptr(bot) as usize).hash(&mut h);
    let (kind, id) = if group.is_null() { (1u8, user) } else { (2u8, group) };
    kind.hash(&mut h);
    hash_id(id, &mut h);
    h.finish()
}

/// Whether two ids are the same id (`123` and `"123"` are); `null` is no id.
pub fn same_id(a: &Value, b: &Value) -> bool {
    use std::hash::Hasher;
    if a.is_null() || b.is_null() {
        return false;
    }
    let hash = |v: &Value| {
        let mut h = crate::event::id_hasher();
        hash_id(v, &mut h);
        h.finish()
    };
    a == b || hash(a) == hash(b)
}

/// A hasher for the ids and keys that live in this process only (dedup identities, chats,
/// lanes): fast, and seeded per process, so aiming two ids at one key takes knowing the seed
/// (foldhash is not a cryptographic hash; these keys never leave the process).
pub fn id_hasher() -> impl std::hash::Hasher {
    use std::hash::BuildHasher;
    static SEED: std::sync::LazyLock<foldhash::fast::RandomState> = std::sync::LazyLock::new(Default::default);
    SEED.build_hasher()
}

/// Hashes an id so that `123` and `"123"` are the same id (implementations differ in which
/// they send).
pub fn hash_id(id: &Value, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    let number = match id {
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => return hash_text_id(s, h),
        _ => None,
    };
    match (number, id) {
        (Some(n), _) => (1u8, n).hash(h),
        (None, Value::Null) => 0u8.hash(h),
        (None, other) => (3u8, other.to_string()).hash(h),
    }
}

/// [`hash_id`] of a string id, without building a value of it.
pub fn hash_text_id(id: &str, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match id.trim().parse::<i128>() {
        Ok(n) => (1u8, n).hash(h),
        Err(_) => (2u8, id.trim()).hash(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_forgets_the_oldest_beyond_capacity() {
        let d = Dedup::new(2);
        let now = std::time::Instant::now();
        let id = Identity::Id;
        assert!(d.first_time_at(id(1), 1, now) && d.first_time_at(id(2), 1, now) && !d.first_time_at(id(1), 2, now));
        assert!(d.first_time_at(id(3), 1, now));
        assert!(d.first_time_at(id(1), 1, now), "1 was forgotten when 3 came");
        assert!(d.first_time_at(Identity::None, 1, now) && d.first_time_at(Identity::None, 1, now));
    }

    #[test]
    fn equal_content_is_a_duplicate_only_from_another_connection_within_the_window() {
        let d = Dedup::new(16);
        let t0 = std::time::Instant::now();
        let poke = Identity::Content(9);
        assert!(d.first_time_at(poke, 1, t0));
        assert!(d.first_time_at(poke, 1, t0), "the same connection sent two equal pokes");
        assert!(!d.first_time_at(poke, 2, t0), "another transport brought the same event");
        let later = t0 + Dedup::CONTENT_WINDOW + std::time::Duration::from_millis(1);
        assert!(d.first_time_at(poke, 2, later), "too late to be the same event");
    }

    #[test]
    fn path_walks_like_a_json_pointer() {
        let v = serde_json::json!({"a": {"b": [1, {"c": "x"}]}, "": 5});
        for p in ["", "/a", "/a/b", "/a/b/1/c", "/a/b/2", "/a/x", "/a/b/c", "/", "/a/b/1/c/d"] {
            assert_eq!(path(&v, p), v.pointer(p), "{p}");
        }
    }

    #[test]
    fn keys_are_every_prefix_plus_aliases() {
        let bot = Bot::detached("t", &crate::adapter::onebot11::PROTOCOL);
        let ev = Event::new(bot, "notice.group_ban.ban".into(), &["notice.ban"], Value::Null);
        assert_eq!(ev.keys(), ["notice_group_ban_ban", "notice_group_ban", "notice", "notice_ban"]);
    }

    #[test]
    fn events_of_one_name_share_their_keys_and_any_name_gets_its_own() {
        let bot = Bot::detached("t", &crate::adapter::onebot11::PROTOCOL);
        let event = |name: &str, aliases: &[&str]| Event::new(bot.clone(), name.into(), aliases, Value::Null);
        let (a, b) = (event("message.group.normal", &["x"]), event("message.group.normal", &["x"]));
        assert!(Arc::ptr_eq(&a.keys, &b.keys), "built once");
        let other = event("message.group.normal", &["y"]);
        assert_eq!(other.keys(), ["message_group_normal", "message_group", "message", "y"]);
        assert_eq!(a.keys(), ["message_group_normal", "message_group", "message", "x"]);
        // Past the names a thread keeps, keys are still right (built each time).
        for i in 0..KNOWN_NAMES + 8 {
            assert_eq!(event(&format!("notice.n{i}"), &[]).keys(), [format!("notice_n{i}"), "notice".into()]);
        }
        assert_eq!(event("notice.n0", &[]).keys(), ["notice_n0", "notice"]);
    }

    #[test]
    fn keys_of_a_long_dotted_name_stay_bounded() {
        let name = "a.".repeat(200_000) + "a";
        let ev = Event::new(Bot::detached("t", &crate::adapter::onebot11::PROTOCOL), name.clone(), &[], Value::Null);
        assert_eq!(ev.keys().len(), MAX_NAME_PARTS);
        assert_eq!(ev.keys()[0].len(), name.len());
        assert!(!is_name_part(&name) && !is_name_part("") && !is_name_part("a\nb") && is_name_part("group_ban"));
    }
}

/// How an event is recognised when it arrives a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Never a duplicate (heartbeats, lifecycle).
    None,
    /// A protocol id (a message id with its account): the same id is the same event, whichever
    /// connection brings it.
    Id(u64),
    /// No id: a hash of the whole content. Only the same content from another connection within
    /// [`Dedup::CONTENT_WINDOW`] is the same event; one connection may well deliver two equal
    /// events (two pokes in one second).
    Content(u64),
}

/// Remembers recently seen events so one that arrives twice (two transports to one account, a
/// resend after a reconnect) is delivered once.
#[derive(Debug)]
pub struct Dedup {
    seen: std::sync::Mutex<Seen>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Seen {
    /// Key -> (connection, when), for the last `capacity` keys.
    at: foldhash::HashMap<u64, (u64, std::time::Instant)>,
    order: std::collections::VecDeque<u64>,
}

impl Dedup {
    /// How long content-identified events are remembered.
    pub const CONTENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

    /// Remembers the last `capacity` events.
    pub fn new(capacity: usize) -> Dedup {
        Dedup { seen: std::sync::Mutex::new(Seen::default()), capacity }
    }

    /// True the first time `ev` is seen.
    pub fn first_time(&self, ev: &Event) -> bool {
        self.first_time_at(ev.identity, ev.via, std::time::Instant::now())
    }

    fn first_time_at(&self, identity: Identity, via: u64, now: std::time::Instant) -> bool {
        let key = match identity {
            Identity::None => return true,
            Identity::Id(k) | Identity::Content(k) => k,
        };
        let mut guard = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = &mut *guard;
        if let Some((first_via, when)) = seen.at.get_mut(&key) {
            let duplicate = match identity {
                Identity::Content(_) => *first_via != via && now.duration_since(*when) < Self::CONTENT_WINDOW,
                _ => true,
            };
            if !duplicate {
                (*first_via, *when) = (via, now);
            }
            return !duplicate;
        }
        seen.at.insert(key, (via, now));
        seen.order.push_back(key);
        if seen.order.len() > self.capacity
            && let Some(old) = seen.order.pop_front()
        {
            seen.at.remove(&old);
        }
        true
    }
}

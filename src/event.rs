//! The one event type every protocol produces.
//!
//! An [`Event`] keeps the protocol's own name (`notice.group_ban.ban`), cross-protocol aliases
//! (`message.group`), the fields most handlers read (`text`, `user_id`, ...) and the raw JSON
//! exactly as it came off the wire.

use std::sync::Arc;

use serde_json::Value;

use crate::adapter::Bot;

/// The protocol family an event or bot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The embedded terminal chat (speaks OneBot 11 shapes).
    Console,
    /// OneBot 11 and its LLBot/NapCat extensions.
    OneBot11,
}

impl Protocol {
    /// The name used in logs and in `ev.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Console => "console",
            Protocol::OneBot11 => "onebot11",
        }
    }
}

/// One event from a bot, ready for dispatch.
#[derive(Debug)]
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
    /// Identifies the event across transports and resends: the same key means the same
    /// event, delivered once. 0 means "never a duplicate".
    pub dedup_key: u64,
    /// Segments parsed from a string message; `None` when `raw` already holds them as an array.
    pub parsed_segments: Option<Value>,
    /// JSON pointer to the segment array inside `raw` (read lazily: most handlers never look).
    pub segments_at: &'static str,
    /// JSON pointer to the sender object inside `raw`.
    pub sender_at: &'static str,
    /// The event exactly as received.
    pub raw: Value,
    /// Normalised names handlers can subscribe to: every dotted prefix of `name` plus aliases.
    keys: Vec<String>,
    /// Where quick operations go when the transport can answer the event itself (OneBot HTTP
    /// POST): collected while callbacks run, sent when the last handle to the event drops.
    pub quick: Option<QuickSlot>,
}

/// Collects the quick operations callbacks ask for on an event (`ev.quick(#{reply: ...})`),
/// and hands them over when every callback is done with the event.
#[derive(Debug)]
pub struct QuickSlot {
    ops: std::sync::Mutex<serde_json::Map<String, Value>>,
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<serde_json::Map<String, Value>>>>,
    /// Runs the `.handle_quick_operation` fallback when the answer could not wait any longer.
    rt: tokio::runtime::Handle,
}

impl QuickSlot {
    /// A slot whose operations go to `done`; must be made inside the async runtime.
    pub fn new(done: tokio::sync::oneshot::Sender<serde_json::Map<String, Value>>) -> QuickSlot {
        QuickSlot {
            ops: Default::default(),
            done: std::sync::Mutex::new(Some(done)),
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// Adds operations; false when the answer already went (too late: use the action instead).
    pub fn add(&self, ops: serde_json::Map<String, Value>) -> bool {
        let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if done.as_ref().is_none_or(|tx| tx.is_closed()) {
            return false;
        }
        self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(ops);
        true
    }

    /// Hands the operations over; the ones that arrived after the answer went out (the callbacks
    /// outlived the receiver's timeout) are returned.
    fn finish(&self) -> Option<serde_json::Map<String, Value>> {
        let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let ops = std::mem::take(&mut *self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        match done {
            Some(tx) => tx.send(ops).err().filter(|ops| !ops.is_empty()),
            None => None,
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let Some(q) = &self.quick else { return };
        // Nothing is lost: late operations go through the `.handle_quick_operation` action.
        if let Some(ops) = q.finish() {
            let (bot, context) = (self.bot.clone(), self.raw.clone());
            q.rt.spawn(async move {
                let params = serde_json::json!({"context": context, "operation": ops});
                if let Err(e) = bot.call(".handle_quick_operation", params).await {
                    tracing::warn!(bot = %bot.name, "late quick operation failed: {e}");
                }
            });
        }
    }
}

impl Event {
    /// Builds an event; `aliases` are cross-protocol names beyond the dotted prefixes of `name`.
    pub fn new(bot: Arc<Bot>, name: String, aliases: &[&str], raw: Value) -> Event {
        let mut keys: Vec<String> = Vec::with_capacity(4 + aliases.len());
        let mut end = name.len();
        loop {
            keys.push(normalize_name(&name[..end]));
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
        Event {
            bot,
            name,
            text: String::new(),
            user_id: Value::Null,
            group_id: Value::Null,
            message_id: Value::Null,
            at_me: false,
            reply_to: Value::Null,
            dedup_key: 0,
            parsed_segments: None,
            segments_at: "",
            sender_at: "",
            raw,
            keys,
            quick: None,
        }
    }

    /// Message segments as an array of `{type, data}`; `Null` for events without a message.
    pub fn segments(&self) -> &Value {
        match &self.parsed_segments {
            Some(parsed) => parsed,
            None => self.pointer(self.segments_at),
        }
    }

    /// Sender info as the protocol gives it, `Null` when absent.
    pub fn sender(&self) -> &Value {
        self.pointer(self.sender_at)
    }

    fn pointer(&self, at: &str) -> &Value {
        if at.is_empty() {
            return &Value::Null;
        }
        self.raw.pointer(at).unwrap_or(&Value::Null)
    }

    /// The normalised names this event is delivered under, most specific first.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// Normalises an event or handler name so `notice.group_ban` and `notice_group_ban` are one key.
pub fn normalize_name(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_forgets_the_oldest_beyond_capacity() {
        let d = Dedup::new(2);
        assert!(d.first_time(1) && d.first_time(2) && !d.first_time(1));
        assert!(d.first_time(3));
        assert!(d.first_time(1), "1 was forgotten when 3 came");
        assert!(d.first_time(0) && d.first_time(0), "0 is never a duplicate");
    }

    #[test]
    fn keys_are_every_prefix_plus_aliases() {
        let bot = Bot::detached("t", Protocol::OneBot11);
        let ev = Event::new(bot, "notice.group_ban.ban".into(), &["notice.ban"], Value::Null);
        assert_eq!(ev.keys(), ["notice_group_ban_ban", "notice_group_ban", "notice", "notice_ban"]);
    }
}

/// Remembers recently seen event keys so an event that arrives twice (two transports to one
/// account, a resend after reconnect) is delivered once.
#[derive(Debug)]
pub struct Dedup {
    seen: std::sync::Mutex<(std::collections::HashSet<u64>, std::collections::VecDeque<u64>)>,
    capacity: usize,
}

impl Dedup {
    /// Remembers the last `capacity` keys.
    pub fn new(capacity: usize) -> Dedup {
        Dedup { seen: std::sync::Mutex::new(Default::default()), capacity }
    }

    /// True the first time `key` is seen (and always for key 0).
    pub fn first_time(&self, key: u64) -> bool {
        if key == 0 {
            return true;
        }
        let mut guard = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if !set.insert(key) {
            return false;
        }
        order.push_back(key);
        if order.len() > self.capacity
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

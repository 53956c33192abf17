//! The platform's rules for replies, enforced before anything is sent, so a script gets a clear
//! error instead of a platform code afterwards.
//!
//! - Group and C2C messages can no longer be sent proactively (the platform answers 40034102 /
//!   40034105): every send must be a passive reply to a message, within its window — group 5
//!   minutes, C2C 60 minutes, guild 5 minutes — and, in groups and C2C, at most 5 replies per
//!   message (a guild channel or direct message has no such count, only the channel's pace).
//! - Each reply to the same message carries a fresh `msg_seq` (1, 2, ...), or the platform
//!   drops it as a duplicate.
//! - A send that names no message answers the newest message of its chat that is still in its
//!   window and budget (so `chat::send_group` in a callback, or soon after a message, works),
//!   and is refused when there is none.
//! - The bot's own group and C2C messages can be recalled for 2 minutes after they were sent.
//! - Guild channel sends are paced at 5 per second per channel: queued, not dropped.
//!
//! Both types here take the time as an argument, so tests move the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use foldhash::HashMap;

use super::recent::Recent;

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scene {
    /// A QQ group.
    Group,
    /// A one-to-one chat.
    C2c,
    /// A guild channel or direct message.
    Guild,
}

impl Scene {
    /// Whether a message has had all the replies it may get after `sent` of them: only group and
    /// C2C messages are counted ("被动消息没有条数限制" for direct messages; channels are paced).
    fn spent(self, sent: u32) -> bool {
        self != Scene::Guild && sent >= REPLIES_PER_MESSAGE
    }

    /// How long after a message it may be replied to.
    pub fn window(self) -> Duration {
        match self {
            Scene::Group | Scene::Guild => Duration::from_secs(5 * 60),
            Scene::C2c => Duration::from_secs(60 * 60),
        }
    }
}

/// Replies one group or C2C message may get.
pub const REPLIES_PER_MESSAGE: u32 = 5;

/// Why a reply may not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// No message to reply to: the platform no longer takes proactive group or C2C messages.
    #[error(
        "the official platform no longer takes proactive {0:?} messages: reply to a message (ev.reply) within its window"
    )]
    Proactive(Scene),
    /// The message is older than its scene's window.
    #[error("the reply window of this message closed {} s ago ({:?} messages can be answered for {} min)", .late.as_secs(), .scene, .scene.window().as_secs() / 60)]
    WindowClosed {
        /// The scene.
        scene: Scene,
        /// How long ago it closed.
        late: Duration,
    },
    /// The message already got its replies.
    #[error("this message already got its {REPLIES_PER_MESSAGE} replies")]
    BudgetSpent,
    /// The bot's message is older than the recall window.
    #[error("the bot's messages can be recalled for 2 minutes after sending; this one was sent {} s ago", .0.as_secs())]
    RecallTooLate(Duration),
}

/// How long the bot's own group and C2C messages can be recalled.
pub const RECALL_WINDOW: Duration = Duration::from_secs(2 * 60);

/// The passive-reply state of the messages a bot received.
#[derive(Debug)]
pub struct Replies {
    /// The messages received, by id.
    seen: Recent<Received>,
    /// Chat (by its [`key`]) -> the newest message received there, while it is remembered.
    newest: HashMap<u64, Newest>,
    /// The bot's own messages by id -> when they were sent.
    sent: Recent<Instant>,
}

/// A message received, as the reply rules see it.
#[derive(Debug)]
struct Received {
    scene: Scene,
    /// When it arrived.
    at: Instant,
    /// Replies sent to it.
    sent: u32,
    /// Where it was received, when known (its key in `newest`).
    chat: Option<u64>,
    /// The copies of it that arrived (bits of [`Delivery`]).
    copies: u8,
}

/// Which copy of a message arrived: the platform pushes each group message that @-mentions the
/// bot twice, as `GROUP_AT_MESSAGE_CREATE` and as `GROUP_MESSAGE_CREATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The @ copy of a group message.
    At = 1,
    /// The plain copy of a group message.
    Plain = 2,
    /// A message pushed once.
    Only = 0,
}

/// What a received message is to its handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The first of its copies (or a repeat of one, left to the runtime's dedup).
    First,
    /// The second copy of a group message, after the other kind.
    SecondCopy,
}

/// The newest message of a chat.
#[derive(Debug)]
struct Newest {
    /// Its id, for a send that names none.
    id: String,
    /// Its key in `seen`.
    key: u64,
}

/// Messages remembered at most (the oldest are forgotten; their windows are long closed).
const REMEMBERED: usize = 10_000;

impl Default for Replies {
    fn default() -> Replies {
        Replies { seen: Recent::new(REMEMBERED), newest: HashMap::default(), sent: Recent::new(REMEMBERED) }
    }
}

impl Replies {
    /// Notes a message (or an event that may be answered by its id) received at `at`, which
    /// replies may then answer; `chat` is where (its key), for sends that name no message.
    pub fn received(
        &mut self,
        message_id: &str,
        scene: Scene,
        chat: Option<u64>,
        delivery: Delivery,
        at: Instant,
    ) -> Noted {
        // A message that comes again (pushed twice, its @ copy, replayed after a resume) keeps
        // its count and its window.
        let (id, received) = remember(&mut self.seen, &mut self.newest, message_id, scene, at);
        // Seen as the other kind: this is the second copy. Seen as this kind: a repeat of the
        // same event, left to the runtime's dedup.
        let (this, before) = (delivery as u8, received.copies);
        received.copies |= this;
        let noted = match delivery {
            Delivery::At | Delivery::Plain if before & this == 0 && before != 0 => Noted::SecondCopy,
            _ => Noted::First,
        };
        if let Some(chat) = chat {
            received.chat = Some(chat);
            let newest = self.newest.entry(chat).or_insert_with(|| Newest { id: String::new(), key: id });
            // The id's text is copied into the chat's own buffer, which keeps its room.
            newest.id.clear();
            newest.id.push_str(message_id);
            newest.key = id;
        }
        noted
    }

    /// The newest message of `chat` (its key) that may still be answered at `now`.
    pub fn answerable(&self, chat: u64, now: Instant) -> Option<&str> {
        let newest = self.newest.get(&chat)?;
        let received = self.seen.get_key(newest.key)?;
        (now.saturating_duration_since(received.at) <= received.scene.window() && !received.scene.spent(received.sent))
            .then_some(newest.id.as_str())
    }

    /// Notes a message the bot sent at `at`, which it may recall for a while.
    pub fn sent(&mut self, message_id: &str, at: Instant) {
        self.sent.insert(message_id, at);
    }

    /// Whether the bot's message `message_id` may be recalled at `now` (one the runtime did not
    /// see sent is left to the platform to judge).
    pub fn recall(&self, message_id: &str, now: Instant) -> Result<(), ReplyError> {
        match self.sent.get(message_id) {
            Some(at) if now.saturating_duration_since(*at) > RECALL_WINDOW => {
                Err(ReplyError::RecallTooLate(now.saturating_duration_since(*at)))
            }
            _ => Ok(()),
        }
    }

    /// Whether a reply to `message_id` may be sent at `now`, without taking it (checked before
    /// work that may fail, such as an upload).
    pub fn check(&self, scene: Scene, message_id: Option<&str>, now: Instant) -> Result<(), ReplyError> {
        let Some(id) = message_id else {
            return if scene == Scene::Guild { Ok(()) } else { Err(ReplyError::Proactive(scene)) };
        };
        match self.seen.get(id) {
            Some(r) if now.saturating_duration_since(r.at) > r.scene.window() => Err(ReplyError::WindowClosed {
                scene: r.scene,
                late: now.saturating_duration_since(r.at) - r.scene.window(),
            }),
            Some(r) if r.scene.spent(r.sent) => Err(ReplyError::BudgetSpent),
            _ => Ok(()),
        }
    }

    /// Takes one reply to `message_id` (none: a proactive send) at `now`: its `msg_seq`, or why
    /// it may not be sent. A message this runtime never saw (received before a restart, or by
    /// another process) is counted from now and left to the platform to judge.
    pub fn reply(&mut self, scene: Scene, message_id: Option<&str>, now: Instant) -> Result<u32, ReplyError> {
        let Some(id) = message_id else {
            return if scene == Scene::Guild { Ok(0) } else { Err(ReplyError::Proactive(scene)) };
        };
        let (_, r) = remember(&mut self.seen, &mut self.newest, id, scene, now);
        let age = now.saturating_duration_since(r.at);
        if age > r.scene.window() {
            return Err(ReplyError::WindowClosed { scene: r.scene, late: age - r.scene.window() });
        }
        if r.scene.spent(r.sent) {
            return Err(ReplyError::BudgetSpent);
        }
        r.sent = r.sent.saturating_add(1);
        Ok(r.sent)
    }
}

/// The message `id` (remembered as received at `at` in `scene` when new); a message forgotten to
/// make room stops being its chat's newest.
fn remember<'a>(
    seen: &'a mut Recent<Received>,
    newest: &mut HashMap<u64, Newest>,
    id: &str,
    scene: Scene,
    at: Instant,
) -> (u64, &'a mut Received) {
    seen.get_or_insert_with(
        id,
        || Received { scene, at, sent: 0, chat: None, copies: 0 },
        |old, forgotten| {
            if let Some(chat) = forgotten.chat
                && newest.get(&chat).is_some_and(|newest| newest.key == old)
            {
                newest.remove(&chat);
            }
        },
    )
}

/// Paces sends per channel: at most `per_second` in any second, later ones wait their turn.
#[derive(Debug)]
pub struct Pacer {
    per_second: usize,
    sent: HashMap<String, VecDeque<Instant>>,
}

impl Pacer {
    /// A pacer allowing `per_second` sends per channel per second.
    pub fn new(per_second: usize) -> Pacer {
        Pacer { per_second: per_second.max(1), sent: HashMap::default() }
    }

    /// Reserves the next send to `channel` asked for at `now`: the instant it may go.
    pub fn reserve(&mut self, channel: &str, now: Instant) -> Instant {
        let times = self.sent.entry(channel.to_owned()).or_default();
        // In order, and never a `per_second + 1`th send within a second of the first of them.
        let mut at = times.back().map_or(now, |last| (*last).max(now));
        if times.len() >= self.per_second {
            at = at.max(times[times.len() - self.per_second] + Duration::from_secs(1));
        }
        times.push_back(at);
        while times.len() > self.per_second {
            times.pop_front();
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::qq::recent::key;

    #[test]
    fn the_second_copy_of_a_group_message_is_told_from_the_first_and_from_a_repeat() {
        let mut r = Replies::default();
        let (t0, g) = (Instant::now(), Some(key("g")));
        assert_eq!(r.received("m", Scene::Group, g, Delivery::At, t0), Noted::First);
        assert_eq!(r.received("m", Scene::Group, g, Delivery::At, t0), Noted::First, "a repeat, for dedup");
        assert_eq!(r.received("m", Scene::Group, g, Delivery::Plain, t0), Noted::SecondCopy);
        assert_eq!(r.received("p", Scene::Group, g, Delivery::Plain, t0), Noted::First, "plain first");
        assert_eq!(r.received("p", Scene::Group, g, Delivery::At, t0), Noted::SecondCopy);
        assert_eq!(r.received("c", Scene::C2c, Some(key("u")), Delivery::Only, t0), Noted::First);
        assert_eq!(r.received("c", Scene::C2c, Some(key("u")), Delivery::Only, t0), Noted::First);
        // A message first met as a reply's target (received before a restart) had no copies.
        r.reply(Scene::Group, Some("old"), t0).unwrap();
        assert_eq!(r.received("old", Scene::Group, g, Delivery::Plain, t0), Noted::First);
    }

    #[test]
    fn replies_get_fresh_seqs_within_the_window_and_budget() {
        let t0 = Instant::now();
        let mut r = Replies::default();
        r.received("m1", Scene::Group, Some(key("g")), Delivery::Only, t0);
        let seqs: Vec<_> =
            (0..5).map(|_| r.reply(Scene::Group, Some("m1"), t0 + Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(r.reply(Scene::Group, Some("m1"), t0), Err(ReplyError::BudgetSpent));
        r.received("m2", Scene::Group, Some(key("g")), Delivery::Only, t0);
        let late = r.reply(Scene::Group, Some("m2"), t0 + Duration::from_secs(5 * 60 + 7)).unwrap_err();
        assert_eq!(late, ReplyError::WindowClosed { scene: Scene::Group, late: Duration::from_secs(7) });
        assert!(late.to_string().contains("5 min"), "{late}");
        r.received("c", Scene::C2c, Some(key("u")), Delivery::Only, t0);
        assert_eq!(r.reply(Scene::C2c, Some("c"), t0 + Duration::from_secs(59 * 60)), Ok(1), "C2C has an hour");
        // A guild channel or direct message is not counted, only its window.
        r.received("d", Scene::Guild, Some(key("dm")), Delivery::Only, t0);
        let guild: Vec<_> = (0..7).map(|_| r.reply(Scene::Guild, Some("d"), t0).unwrap()).collect();
        assert_eq!(guild, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(r.check(Scene::Guild, Some("d"), t0), Ok(()));
        assert_eq!(r.answerable(key("dm"), t0), Some("d"));
    }

    #[test]
    fn a_send_naming_no_message_answers_the_newest_answerable_one_of_its_chat() {
        let t0 = Instant::now();
        let mut r = Replies::default();
        assert_eq!(r.answerable(key("g"), t0), None);
        r.received("m1", Scene::Group, Some(key("g")), Delivery::Only, t0);
        r.received("m2", Scene::Group, Some(key("g")), Delivery::Only, t0 + Duration::from_secs(1));
        assert_eq!(r.answerable(key("g"), t0 + Duration::from_secs(2)), Some("m2"));
        assert_eq!(r.answerable(key("other"), t0), None);
        for _ in 0..5 {
            r.reply(Scene::Group, Some("m2"), t0).unwrap();
        }
        assert_eq!(r.answerable(key("g"), t0), None, "its budget is spent");
        r.received("m3", Scene::Group, Some(key("g")), Delivery::Only, t0);
        assert_eq!(r.answerable(key("g"), t0 + Duration::from_secs(5 * 60 + 1)), None, "its window closed");
    }

    #[test]
    fn a_forgotten_message_is_not_answered_by_a_send_naming_none() {
        let t0 = Instant::now();
        let mut r = Replies::default();
        r.received("first", Scene::Group, Some(key("g")), Delivery::Only, t0);
        for i in 0..REMEMBERED {
            r.received(&format!("m{i}"), Scene::Group, Some(key(&format!("other{}", i % 100))), Delivery::Only, t0);
        }
        assert_eq!(r.answerable(key("g"), t0), None, "forgotten, so not answered blindly");
        assert!(!r.newest.contains_key(&key("g")), "a chat whose newest message is forgotten is forgotten too");
        assert_eq!(r.newest.len(), 100);
        assert_eq!(r.answerable(key("other7"), t0), Some("m9907"));
        assert_eq!(r.reply(Scene::Group, Some("first"), t0), Ok(1), "counted afresh, left to the platform");
        assert_eq!(r.answerable(key("g"), t0), None, "a reply naming it does not make it the chat's newest again");
    }

    #[test]
    fn a_message_that_comes_again_keeps_its_count_and_window() {
        let t0 = Instant::now();
        let mut r = Replies::default();
        r.received("m", Scene::Group, Some(key("g")), Delivery::Only, t0);
        assert_eq!(r.reply(Scene::Group, Some("m"), t0), Ok(1));
        r.received("m", Scene::Group, Some(key("g")), Delivery::Only, t0 + Duration::from_secs(200));
        assert_eq!(r.reply(Scene::Group, Some("m"), t0), Ok(2), "the seq goes on");
        let late = t0 + Duration::from_secs(5 * 60 + 1);
        assert!(r.check(Scene::Group, Some("m"), late).is_err(), "the window counts from the first arrival");
        assert_eq!(r.check(Scene::Group, Some("m"), t0), Ok(()));
    }

    #[test]
    fn the_bots_own_messages_can_be_recalled_for_two_minutes() {
        let t0 = Instant::now();
        let mut r = Replies::default();
        r.sent("s1", t0);
        assert_eq!(r.recall("s1", t0 + Duration::from_secs(119)), Ok(()));
        let late = r.recall("s1", t0 + Duration::from_secs(130)).unwrap_err();
        assert!(late.to_string().contains("2 minutes"), "{late}");
        assert_eq!(r.recall("unknown", t0 + Duration::from_secs(999)), Ok(()), "the platform judges");
    }

    #[test]
    fn proactive_group_and_c2c_sends_are_refused_but_guild_ones_allowed() {
        let mut r = Replies::default();
        let now = Instant::now();
        assert_eq!(r.reply(Scene::Group, None, now), Err(ReplyError::Proactive(Scene::Group)));
        assert_eq!(r.reply(Scene::C2c, None, now), Err(ReplyError::Proactive(Scene::C2c)));
        assert_eq!(r.reply(Scene::C2c, Some("never seen"), now), Ok(1), "the platform judges");
        assert_eq!(r.reply(Scene::C2c, Some("never seen"), now), Ok(2));
        assert_eq!(r.reply(Scene::Guild, None, now), Ok(0));
        assert!(ReplyError::Proactive(Scene::Group).to_string().contains("no longer takes proactive"));
    }

    #[test]
    fn a_channel_gets_five_sends_a_second_and_later_ones_wait() {
        let t0 = Instant::now();
        let mut p = Pacer::new(5);
        let times: Vec<Duration> = (0..7).map(|_| p.reserve("c", t0) - t0).collect();
        assert_eq!(&times[..5], &[Duration::ZERO; 5]);
        assert_eq!(&times[5..], &[Duration::from_secs(1), Duration::from_secs(1)]);
        assert_eq!(p.reserve("other", t0), t0, "channels are paced apart");
        assert_eq!(
            p.reserve("c", t0 + Duration::from_secs(3)),
            t0 + Duration::from_secs(3),
            "a quiet channel sends at once"
        );
    }
}

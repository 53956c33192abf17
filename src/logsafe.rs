//! Logging what came from outside: text from the wire is escaped (a frame holding
//! `\n2026-… ERROR …` must not forge a log line) and shortened, and warnings that can repeat
//! at the other end's pace are rate-limited.

use std::borrow::Cow;
use std::time::{Duration, Instant};

/// Longest piece of outside text a log line quotes, in characters.
const SHOWN: usize = 200;

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...), as it may go into a log line.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The start of `text`, escaped, with `…` when it was cut.
pub fn short(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", escape(&text[..cut])),
        None => escape(text).into_owned(),
    }
}

/// The start of a frame's bytes, escaped, for log lines.
pub fn preview(bytes: &[u8]) -> String {
    short(&String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN * 4)]))
}

/// An error with its causes, `outer: inner: innermost` (reqwest's own message hides a refused
/// certificate or a refused connection in its sources).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    short(&text)
}

/// Lets through at most `burst` warnings per `window`, then one line saying how many were held
/// back: the log stays readable however fast the other end misbehaves.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    window: Duration,
    started: Option<Instant>,
    shown: u32,
    held_back: u64,
}

/// What to do with one warning.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `held_back` earlier ones of a past window were not logged (say so when not 0).
    Log {
        /// Warnings suppressed since the last one logged.
        held_back: u64,
    },
    /// Don't log it.
    Quiet,
}

impl RateLimit {
    /// At most `burst` per `window`.
    pub const fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit { burst, window, started: None, shown: 0, held_back: 0 }
    }

    /// The limiter used for warnings about one connection: 5 per 10 s.
    pub const fn per_connection() -> RateLimit {
        RateLimit::new(5, Duration::from_secs(10))
    }

    /// Whether a warning happening now may be logged.
    pub fn check(&mut self) -> Verdict {
        self.check_at(Instant::now())
    }

    /// Like [`RateLimit::check`], at `now`.
    pub fn check_at(&mut self, now: Instant) -> Verdict {
        if self.started.is_none_or(|s| now.duration_since(s) >= self.window) {
            self.started = Some(now);
            self.shown = 0;
        }
        if self.shown < self.burst {
            self.shown += 1;
            return Verdict::Log { held_back: std::mem::take(&mut self.held_back) };
        }
        self.held_back += 1;
        Verdict::Quiet
    }
}

/// Logs a warning through a [`RateLimit`], adding how many were held back before it.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {
        if let $crate::logsafe::Verdict::Log { held_back } = $limit.check() {
            if held_back > 0 {
                tracing::warn!(held_back, "{} similar warnings were held back", held_back);
            }
            tracing::warn!($($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_log_lines() {
        let forged = "ok\n2026-11-30T00:00:00Z ERROR fake\u{1b}[31m";
        assert_eq!(escape(forged), "ok\\n2026-11-30T00:00:00Z ERROR fake\\u{1b}[31m");
        assert!(matches!(escape("plain 文字"), Cow::Borrowed(_)));
        assert_eq!(short(&"x".repeat(500)).chars().count(), SHOWN + 1);
        assert_eq!(preview(b"a\r\nb"), "a\\r\\nb");
    }

    #[test]
    fn a_flood_is_cut_to_the_burst_and_the_held_back_are_counted() {
        let mut limit = RateLimit::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> = (0..10_000).map(|_| limit.check_at(t0)).collect();
        assert_eq!(verdicts.iter().filter(|v| matches!(v, Verdict::Log { .. })).count(), 2);
        assert_eq!(limit.check_at(t0 + Duration::from_secs(10)), Verdict::Log { held_back: 9_998 });
    }
}

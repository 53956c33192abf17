//! OneBot 11 events over server-sent events: `GET <url>/_events` (LLBot, NapCat), each
//! `data:` frame one event object; the stream itself is `adapter::sse`. A heartbeat event arms
//! the idle watchdog.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::config::OneBotConfig;
use crate::adapter::EventSink;
use crate::adapter::slots::Field;
use crate::adapter::sse::{self, Source};
use crate::bot::Bot;
use crate::event::Raw;
use crate::logsafe::{RateLimit, preview};

/// Reads `<url>/_events` until `shutdown`.
pub async fn run(bot: Arc<Bot>, cfg: OneBotConfig, url: String, sink: EventSink, shutdown: CancellationToken) {
    let source = Source {
        url: format!("{}/_events", url.trim_end_matches('/')),
        token: cfg.access_token.clone(),
        token_in_query: false,
        backoff: cfg.backoff,
        max_frame_bytes: cfg.max_frame_bytes,
        tls: cfg.tls.clone(),
    };
    let handler_bot = bot.clone();
    let mut handle = move |data: &[u8], via: u64, warnings: &mut RateLimit| -> Option<Duration> {
        let bot = &handler_bot;
        // Only the fields decoding reads are built; the event keeps the rest as text.
        match super::payload::read_head(data) {
            Ok(Some(head)) if head.post_type.is_some() => {
                let heartbeat = (head.meta_event_type.as_ref().and_then(Field::as_str) == Some("heartbeat"))
                    .then(|| {
                        head.interval.as_ref().and_then(Field::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis)
                    })
                    .flatten();
                match super::decode(bot, head, Raw::text(data), via) {
                    Ok(ev) => sink(ev),
                    Err(e) => crate::warn_limited!(warnings, bot = %bot.name, "{e}; skipped"),
                }
                heartbeat
            }
            Ok(_) => {
                crate::warn_limited!(warnings, bot = %bot.name, "SSE frame is not an event, skipped: {}", preview(data));
                None
            }
            Err(e) => {
                crate::warn_limited!(warnings, bot = %bot.name, "malformed SSE frame skipped: {e}: {}", preview(data));
                None
            }
        }
    };
    sse::run(bot, source, &mut handle, shutdown).await;
}

//! OneBot 11 events over server-sent events: `GET <url>/_events` (LLBot, NapCat), each
//! `data:` frame one event object. Reconnects with back-off, and reconnects when nothing
//! arrived for three heartbeat intervals.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::decode_event;
use super::session::preview;
use crate::adapter::backoff::Retry;
use crate::adapter::{Bot, EventSink};
use crate::config::OneBotConfig;

/// Reads `<url>/_events` until `shutdown`.
pub async fn run(bot: Arc<Bot>, cfg: OneBotConfig, url: String, sink: EventSink, shutdown: CancellationToken) {
    let url = format!("{}/_events", url.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut retry = Retry::new(cfg.backoff);
    loop {
        let mut request = client.get(&url).header("Accept", "text/event-stream");
        if !cfg.access_token.0.is_empty() {
            request = request.bearer_auth(&cfg.access_token.0);
        }
        let response = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request.send() => r,
        };
        match response {
            Ok(r) if r.status().is_success() => {
                info!(bot = %bot.name, %url, "event stream open");
                let why = read(&bot, &cfg, r, &sink, &shutdown, &mut retry).await;
                match why {
                    None => return,
                    Some(why) => warn!(bot = %bot.name, %url, "event stream lost: {why}; reconnecting"),
                }
            }
            Ok(r) => {
                warn!(bot = %bot.name, %url, status = r.status().as_u16(), "event stream refused (check access_token and url)")
            }
            Err(e) => warn!(bot = %bot.name, %url, "cannot open the event stream: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry.next_delay()) => {}
        }
    }
}

/// Reads frames until the stream ends (`Some(reason)`) or shutdown (`None`).
async fn read(
    bot: &Arc<Bot>,
    cfg: &OneBotConfig,
    response: reqwest::Response,
    sink: &EventSink,
    shutdown: &CancellationToken,
    retry: &mut Retry,
) -> Option<String> {
    let mut body = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut heartbeat: Option<Duration> = None;
    let mut last = Instant::now();
    loop {
        let watchdog = async {
            match heartbeat {
                Some(interval) => tokio::time::sleep_until(last + interval * 3).await,
                None => std::future::pending().await,
            }
        };
        let chunk = tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = watchdog => return Some("no event for 3 heartbeat intervals".into()),
            chunk = body.next() => chunk,
        };
        let chunk = match chunk {
            None => return Some("closed by the other end".into()),
            Some(Err(e)) => return Some(e.to_string()),
            Some(Ok(chunk)) => chunk,
        };
        last = Instant::now();
        retry.reset();
        buffer.extend_from_slice(&chunk);
        while let Some(data) = take_frame(&mut buffer) {
            if data.len() > cfg.max_frame_bytes {
                warn!(bot = %bot.name, size = data.len(), "oversized event skipped");
                continue;
            }
            match serde_json::from_slice::<Value>(&data) {
                Ok(raw) if raw.get("post_type").is_some() => {
                    if raw.get("meta_event_type").and_then(Value::as_str) == Some("heartbeat") {
                        heartbeat =
                            raw.get("interval").and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis);
                    }
                    sink(decode_event(bot, raw));
                }
                Ok(_) => warn!(bot = %bot.name, "SSE frame is not an event, skipped: {}", preview(&data)),
                Err(e) => warn!(bot = %bot.name, "malformed SSE frame skipped: {e}: {}", preview(&data)),
            }
        }
        if buffer.len() > cfg.max_frame_bytes.saturating_mul(2) {
            warn!(bot = %bot.name, "SSE frame without an end exceeds the limit; dropped");
            buffer.clear();
        }
    }
}

/// Takes one complete SSE frame (up to a blank line) from `buffer` and returns its `data:`
/// lines joined by newlines; frames without data (comments, keep-alives) yield nothing.
fn take_frame(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        let end = find_blank_line(buffer)?;
        let frame: Vec<u8> = buffer.drain(..end.1).collect();
        let frame = &frame[..end.0];
        let mut data: Vec<u8> = Vec::new();
        for line in frame.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(rest) = line.strip_prefix(b"data:") {
                if !data.is_empty() {
                    data.push(b'\n');
                }
                data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            }
        }
        if !data.is_empty() {
            return Some(data);
        }
    }
}

/// (end of frame, end of its terminator) of the first frame in `buf`.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_and_join_data_lines() {
        let mut buf = b": keep-alive\n\ndata: {\"a\":\ndata: 1}\n\nevent: x\r\ndata: 2\r\n\r\ndata: part".to_vec();
        assert_eq!(take_frame(&mut buf).unwrap(), b"{\"a\":\n1}");
        assert_eq!(take_frame(&mut buf).unwrap(), b"2");
        assert_eq!(take_frame(&mut buf), None);
        assert_eq!(buf, b"data: part");
    }
}

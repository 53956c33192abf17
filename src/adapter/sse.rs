//! Server-sent events, for every protocol that streams events this way (OneBot's
//! `/_events`, Milky's `/event`): the stream is opened with the access token, reconnected with
//! back-off and jitter, and parsed incrementally; each event's `data` goes to the protocol's
//! handler, which may announce a heartbeat interval for the idle watchdog.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::adapter::backoff::Retry;
use crate::bot::Bot;
use crate::config::{Backoff, Secret};
use crate::logsafe::RateLimit;

/// Where a stream comes from and how to open it.
#[derive(Debug, Clone)]
pub struct Source {
    /// The stream's URL.
    pub url: String,
    /// Sent as `Authorization: Bearer`, or as `?access_token=` with `token_in_query`.
    pub token: Secret,
    /// Send the token in the query instead of a header.
    pub token_in_query: bool,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// Largest event accepted.
    pub max_frame_bytes: usize,
    /// TLS for an `https://` URL.
    pub tls: crate::tls::ClientTls,
}

/// Handles one event's data (`via` names the connection); returns a heartbeat interval when the
/// event announced one, which arms the idle watchdog (three intervals without a byte).
pub type Handler<'a> = dyn FnMut(&[u8], u64, &mut RateLimit) -> Option<Duration> + Send + 'a;

/// Reads `source` until `shutdown`, reconnecting when it ends or goes quiet.
pub async fn run(bot: Arc<Bot>, source: Source, handle: &mut Handler<'_>, shutdown: CancellationToken) {
    let client = crate::tls::http_client(&source.tls);
    let mut retry = Retry::new(source.backoff);
    let url = source.url.clone();
    // Encoded as the WebSocket's is: a space as %20, not the `+` of form encoding.
    let target = if source.token_in_query && !source.token.0.is_empty() {
        crate::adapter::ws_client::with_token_query(&url, &source.token.0)
    } else {
        url.clone()
    };
    loop {
        let mut request = client.get(&target).header("Accept", "text/event-stream");
        if !source.token_in_query && !source.token.0.is_empty() {
            request = request.bearer_auth(&source.token.0);
        }
        let response = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = request.send() => r,
        };
        match response {
            Ok(r) if r.status().is_success() => {
                info!(bot = %bot.name, %url, "event stream open");
                match read(&bot, &source, r, handle, &shutdown, &mut retry).await {
                    None => return,
                    Some(why) => warn!(bot = %bot.name, %url, "event stream lost: {why}; reconnecting"),
                }
            }
            Ok(r) => {
                warn!(bot = %bot.name, %url, status = r.status().as_u16(), "event stream refused (check access_token and url)")
            }
            Err(e) => warn!(bot = %bot.name, %url, "cannot open the event stream: {}", crate::logsafe::chain(&e)),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry.next_delay()) => {}
        }
    }
}

/// Reads events until the stream ends (`Some(reason)`) or shutdown (`None`).
async fn read(
    bot: &Arc<Bot>,
    source: &Source,
    response: reqwest::Response,
    handle: &mut Handler<'_>,
    shutdown: &CancellationToken,
    retry: &mut Retry,
) -> Option<String> {
    let mut body = response.bytes_stream();
    let via = crate::bot::connection_id();
    let mut parser = SseParser::new(source.max_frame_bytes);
    let mut warnings = RateLimit::per_connection();
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
        for found in parser.push(&chunk) {
            match found {
                Found::Data(data) => {
                    if let Some(interval) = handle(&data, via, &mut warnings) {
                        heartbeat = Some(interval);
                    }
                }
                // Not rate-limited: at most one line per `max_frame_bytes` received.
                Found::TooBig => {
                    warn!(bot = %bot.name, limit = source.max_frame_bytes, "SSE event over max_frame_bytes skipped")
                }
            }
        }
    }
}

/// What [`SseParser::push`] found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// One event's `data` lines, joined by `\n`.
    Data(Vec<u8>),
    /// An event passed the size limit; it is skipped up to its blank line.
    TooBig,
}

/// Splits an SSE byte stream into events as chunks arrive, looking at each byte once.
///
/// Lines end in `\n`, `\r\n` or `\r`; a blank line ends an event; `data:` lines (minus one
/// space after the colon) are joined by `\n`; comments and other fields are ignored; an event
/// without data yields nothing. Holds only the unfinished line and the current event's data,
/// together at most `limit` bytes: an event that needs more is [`Found::TooBig`].
struct SseParser {
    limit: usize,
    /// The unfinished line, kept only while it may matter (not while skipping).
    line: Vec<u8>,
    /// Whether the unfinished line has any bytes, kept or not.
    in_line: bool,
    /// The current event's data.
    data: Vec<u8>,
    /// Skipping an event that passed the limit, up to the next blank line.
    skipping: bool,
    /// The last byte was `\r`: a `\n` right after it ends no second line.
    after_cr: bool,
    /// Bytes examined so far: tests check the work stays linear.
    #[cfg_attr(not(test), allow(dead_code))]
    scanned: usize,
}

impl SseParser {
    /// A parser for events of at most `limit` bytes.
    fn new(limit: usize) -> SseParser {
        SseParser {
            limit,
            line: Vec::new(),
            in_line: false,
            data: Vec::new(),
            skipping: false,
            after_cr: false,
            scanned: 0,
        }
    }

    /// Takes the next bytes of the stream; returns the events they complete.
    fn push(&mut self, chunk: &[u8]) -> Vec<Found> {
        let mut found = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            if std::mem::take(&mut self.after_cr) && rest.first() == Some(&b'\n') {
                self.scanned += 1;
                rest = &rest[1..];
                continue;
            }
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(end) => {
                    self.scanned += end + 1;
                    self.after_cr = rest[end] == b'\r';
                    self.take(&rest[..end], true, &mut found);
                    rest = &rest[end + 1..];
                }
                None => {
                    self.scanned += rest.len();
                    self.take(rest, false, &mut found);
                    rest = &[];
                }
            }
        }
        found
    }

    /// Takes `piece` of the current line, and the line's end when `ends`.
    fn take(&mut self, piece: &[u8], ends: bool, found: &mut Vec<Found>) {
        let blank = ends && !self.in_line && piece.is_empty();
        self.in_line = !ends && (self.in_line || !piece.is_empty());
        // Counting the line with its `data: ` keeps the check the same wherever chunks split.
        if !self.skipping && self.data.len() + self.line.len() + piece.len() > self.limit {
            self.skipping = true;
            self.data.clear();
            self.line.clear();
            found.push(Found::TooBig);
        }
        if self.skipping {
            self.skipping = !blank;
            return;
        }
        if !ends {
            append(&mut self.line, piece, self.limit);
        } else if self.line.is_empty() {
            self.on_line(piece, found);
        } else {
            append(&mut self.line, piece, self.limit);
            let line = std::mem::take(&mut self.line);
            self.on_line(&line, found);
            self.line = line;
            self.line.clear();
        }
    }

    /// Handles one complete line (without its line ending).
    fn on_line(&mut self, line: &[u8], found: &mut Vec<Found>) {
        if line.is_empty() {
            if !self.data.is_empty() {
                found.push(Found::Data(std::mem::take(&mut self.data)));
            }
        } else if let Some(value) = line.strip_prefix(b"data:") {
            if !self.data.is_empty() {
                append(&mut self.data, b"\n", self.limit);
            }
            append(&mut self.data, value.strip_prefix(b" ").unwrap_or(value), self.limit);
        }
    }
}

/// Appends `bytes` to `buf`, growing it at most to `limit` (plain doubling could reach twice that).
fn append(buf: &mut Vec<u8>, bytes: &[u8], limit: usize) {
    if buf.capacity() - buf.len() < bytes.len() {
        let want = (buf.capacity() * 2).min(limit).max(buf.len() + bytes.len());
        buf.reserve_exact(want - buf.len());
    }
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Found {
        Found::Data(s.as_bytes().to_vec())
    }

    #[test]
    fn frames_split_on_blank_lines_and_join_data_lines() {
        let mut parser = SseParser::new(1024);
        let input = b": keep-alive\n\ndata: {\"a\":\ndata: 1}\n\nevent: x\r\ndata: 2\r\n\r\ndata: part";
        assert_eq!(parser.push(input), [data("{\"a\":\n1}"), data("2")]);
        assert_eq!(parser.line, b"data: part");
        assert_eq!(parser.push(b"\n\n"), [data("part")]);
    }

    #[test]
    fn chunk_boundaries_do_not_change_the_events() {
        let inputs: [&[u8]; 6] = [
            b": keep-alive\n\ndata: {\"a\":\ndata: 1}\n\nevent: x\r\ndata: 2\r\n\r\ndata: part",
            b"data:no-space\r\rdata: lone cr\r\r\nid: 7\ndata:  two spaces\n\n",
            b"data: 0123456789abcdef-too-big\ndata: more\n\ndata: ok\n\n",
            b"data: 0123456789\ndata: 0123456789\n\n: 0123456789abcdef-long-comment\n\ndata: ok\r\n\r\n",
            b"\n\n\r\n\rdata: a\n\r\n",
            b"data: a\r\ndata: b\r\n\r\n",
        ];
        for input in inputs {
            let whole = SseParser::new(24).push(input);
            for cut in 0..=input.len() {
                let mut parser = SseParser::new(24);
                let mut split = parser.push(&input[..cut]);
                split.extend(parser.push(&input[cut..]));
                assert_eq!(split, whole, "cut at {cut} of {:?}", String::from_utf8_lossy(input));
            }
            let mut parser = SseParser::new(24);
            let bytewise: Vec<Found> = input.iter().flat_map(|b| parser.push(&[*b])).collect();
            assert_eq!(bytewise, whole, "byte by byte: {:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(SseParser::new(24).push(inputs[1]), [data("no-space"), data("lone cr"), data(" two spaces")]);
        assert_eq!(SseParser::new(24).push(inputs[4]), [data("a")]);
        assert_eq!(SseParser::new(24).push(inputs[5]), [data("a\nb")]);
    }

    #[test]
    fn an_oversized_event_is_skipped_once_and_the_next_one_parsed() {
        let mut parser = SseParser::new(24);
        let found = parser.push(b"data: 0123456789abcdef-too-big\ndata: more\n\ndata: ok\n\n");
        assert_eq!(found, [Found::TooBig, data("ok")]);
        // Data lines that pass the limit only together.
        let found = parser.push(b"data: 0123456789\ndata: 0123456789\ndata: x\n\ndata: ok\n\n");
        assert_eq!(found, [Found::TooBig, data("ok")]);
    }

    #[test]
    fn an_endless_event_costs_linear_work_and_bounded_memory() {
        const LIMIT: usize = 1 << 20;
        const CHUNK: usize = 4096;
        // 100-byte lines, so many of them straddle two chunks.
        let line = format!("data: {}\n", "x".repeat(93));
        let input = line.repeat((16 << 20) / line.len()).into_bytes();
        let mut parser = SseParser::new(LIMIT);
        let mut found = Vec::new();
        for chunk in input.chunks(CHUNK) {
            found.extend(parser.push(chunk));
            assert!(parser.line.capacity() + parser.data.capacity() <= LIMIT + CHUNK);
        }
        assert_eq!(found, [Found::TooBig]);
        assert!(parser.scanned <= 2 * input.len(), "{} bytes examined for {}", parser.scanned, input.len());
        assert_eq!(parser.push(b"\ndata: {\"ok\":1}\n\n"), [data("{\"ok\":1}")]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_streams_never_panic_and_cost_linear_work(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..32),
        ) {
            let mut parser = SseParser::new(100);
            let mut total = 0;
            for chunk in &chunks {
                total += chunk.len();
                for found in parser.push(chunk) {
                    if let Found::Data(data) = found {
                        proptest::prop_assert!(data.len() <= 100);
                    }
                }
                proptest::prop_assert!(parser.line.len() + parser.data.len() <= 100 + 64);
            }
            proptest::prop_assert!(parser.scanned <= 2 * total);
        }
    }
}

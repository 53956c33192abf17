//! The official platform's webhook receiver: the platform POSTs payloads `{id, op, d, s, t}`
//! signed with the bot's Ed25519 key (`X-Signature-Ed25519` over `X-Signature-Timestamp ‖
//! body`). Every request but the validation is verified (a bad or stale signature is 401 and
//! one rate-limited log line); op 13 (callback URL validation) is answered with the signature
//! of `event_ts ‖ plain_token`, only for the digits and letters the platform sends, so the
//! answer can never be a signature over an event body; dispatches (op 0) are decoded and handed on, and acknowledged with op 12.
//! Served over HTTPS from cert/key files, or plain HTTP behind a TLS-terminating proxy.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::decode::decode;
use super::payload::read_head;
use super::sign::WebhookKey;
use crate::adapter::EventSink;
use crate::adapter::listener::{self, Guard};
use crate::adapter::slots::Field;
use crate::bot::{Bot, connection_id};
use crate::logsafe::{RateLimit, preview};

/// How far a request's signature timestamp may be from now: older ones are replays.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// Where and how the receiver listens.
pub struct Listen {
    /// `host:port`.
    pub addr: String,
    /// The path served.
    pub path: String,
    /// Timeouts and connection cap.
    pub guard: Guard,
    /// HTTPS, when the receiver terminates TLS itself.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

#[derive(Clone)]
struct Receiver {
    bot: Arc<Bot>,
    key: Arc<WebhookKey>,
    sink: EventSink,
    via: u64,
    max_body: usize,
    body_timeout: Duration,
    warnings: Arc<Mutex<RateLimit>>,
}

/// Serves the webhook until `shutdown`.
pub fn serve(
    bot: Arc<Bot>,
    key: WebhookKey,
    listen: Listen,
    max_body: usize,
    sink: EventSink,
    shutdown: tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    let listener = crate::adapter::listener::bind(&bot, &listen.addr)?;
    let receiver = Receiver {
        bot: bot.clone(),
        key: Arc::new(key),
        sink,
        via: connection_id(),
        max_body,
        body_timeout: listen.guard.header_timeout,
        warnings: Arc::new(Mutex::new(RateLimit::per_connection())),
    };
    let app = axum::Router::new().route(&listen.path, axum::routing::post(receive)).with_state(receiver);
    tasks.spawn(listener::serve(bot.name.clone(), listener, app, listen.guard, listen.tls, shutdown));
    Ok(())
}

/// Whether a validation request's fields are what the platform sends (digits; letters and
/// digits): anything else could make the answer a signature over a forged event body.
fn plausible(event_ts: &str, plain_token: &str) -> bool {
    !event_ts.is_empty()
        && event_ts.bytes().all(|b| b.is_ascii_digit())
        && !plain_token.is_empty()
        && plain_token.len() <= 128
        && plain_token.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let warnings = || r.warnings.lock().unwrap_or_else(PoisonError::into_inner);
    let body =
        match crate::adapter::listener::read_body(body, r.max_body, r.body_timeout, &r.bot.name, &r.warnings).await {
            Ok(body) => body,
            Err(status) => return status.into_response(),
        };
    let head = match read_head(&body) {
        Ok(Some(head)) => head,
        _ => {
            crate::warn_limited!(warnings(), bot = %r.bot.name, "webhook body is not a payload: {}", preview(&body));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    // The validation request is answered whether signed or not (its answer is the proof the
    // platform asks for); every other request must carry a fresh, valid signature.
    let op = head.op.as_ref().and_then(Field::as_i64);
    if op != Some(13) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let timestamp = header("x-signature-timestamp");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let fresh = timestamp.parse::<u64>().is_ok_and(|t| now.abs_diff(t) <= MAX_SKEW.as_secs());
        if !fresh || !r.key.verify(timestamp, &body, header("x-signature-ed25519")) {
            let why =
                if fresh { "a signature that does not verify" } else { "a missing or stale timestamp (a replay?)" };
            crate::warn_limited!(warnings(), bot = %r.bot.name, "webhook request with {why} refused with 401");
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    match op {
        Some(13) => {
            // Rare, and its fields are not the head's: the payload is parsed whole.
            let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
            let field = |k: &str| payload.pointer(&format!("/d/{k}")).and_then(Value::as_str).unwrap_or_default();
            let (plain_token, event_ts) = (field("plain_token"), field("event_ts"));
            if !plausible(event_ts, plain_token) {
                crate::warn_limited!(warnings(), bot = %r.bot.name, "callback validation with odd fields refused");
                return StatusCode::BAD_REQUEST.into_response();
            }
            let signature = r.key.validation_signature(event_ts, plain_token);
            axum::Json(json!({"plain_token": plain_token, "signature": signature})).into_response()
        }
        Some(0) => {
            match decode(&r.bot, head, crate::event::Raw::text(&body), r.via) {
                Ok(ev) => (r.sink)(ev),
                Err(e) => crate::warn_limited!(warnings(), bot = %r.bot.name, "{e}; skipped"),
            }
            axum::Json(json!({"op": 12, "d": 0})).into_response()
        }
        _ => axum::Json(json!({"op": 12, "d": 0})).into_response(),
    }
}

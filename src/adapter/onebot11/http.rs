//! OneBot 11 over HTTP: the API client (`POST <url>/<action>`), and the HTTP POST event
//! receiver, which verifies `X-Signature` (HMAC-SHA1 of the raw body) in constant time and can
//! answer an event with a quick operation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::config::OneBotConfig;
use super::quick::QuickSlot;
use super::{decode_response, prepare_params};
use crate::adapter::EventSink;
use crate::adapter::http_api::{JsonApi, encode};
use crate::bot::{Bot, CallError, CallFuture, Params, Requests, connection_id};
use crate::config::Secret;
use crate::event::Raw;
use crate::logsafe::{RateLimit, preview};

/// The HTTP API client of one bot.
#[derive(Debug)]
pub struct Api(JsonApi);

impl Api {
    /// Bot `bot`'s client for the API at `base`, sending `token` as a Bearer token when set
    /// and reading answers of up to `max_answer` bytes.
    pub fn new(bot: &str, base: &str, token: &Secret, max_answer: usize, tls: &crate::tls::ClientTls) -> Api {
        Api(JsonApi::new("OneBot HTTP", bot, base, token, max_answer, tls))
    }

    /// `POST <base>/<action>` with the params as JSON.
    async fn post(&self, action: &str, params: Params, answered: bool) -> Result<Value, CallError> {
        let json = match params {
            Params::Given(params) => encode(action, &prepare_params(params))?,
            Params::Encoded(json) => json,
        };
        let explain = |status| match status {
            401 => Some("no or wrong access token (check access_token)".to_owned()),
            403 => Some("the access token was refused (check access_token)".to_owned()),
            404 => Some(format!("the implementation has no action `{action}`, or the url is wrong")),
            _ => None,
        };
        let failed = |(code, message)| CallError::Failed {
            action: action.to_owned(),
            code,
            message,
            trace_id: None,
            answer: None,
        };
        let decode = |answer| decode_response(answer).map_err(failed);
        self.0.post(action, &["/", action].concat(), json, answered, explain, decode).await
    }
}

impl Requests for Api {
    fn call<'a>(&'a self, action: &'a str, params: Params, answered: bool) -> CallFuture<'a> {
        Box::pin(self.post(action, params, answered))
    }

    fn encode(&self, action: &str, params: Value) -> Result<Params, CallError> {
        encode(action, &prepare_params(params)).map(Params::Encoded)
    }
}

/// What the POST receiver needs.
#[derive(Clone)]
struct Receiver {
    bot: Arc<Bot>,
    sink: EventSink,
    secret: Secret,
    max_body: usize,
    quick_timeout: Duration,
    body_timeout: Duration,
    /// The receiver is one source of events for deduplication.
    via: u64,
    warnings: Arc<std::sync::Mutex<RateLimit>>,
}

/// Serves the HTTP POST receiver on `listen` at `path` until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub fn serve_post(
    bot: Arc<Bot>,
    cfg: &OneBotConfig,
    listen: &str,
    path: &str,
    secret: Secret,
    quick_timeout: Duration,
    sink: EventSink,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    let listener = crate::adapter::listener::bind(&bot, listen)?;
    let name = bot.name.clone();
    let state = Receiver {
        bot,
        sink,
        secret,
        max_body: cfg.max_frame_bytes,
        quick_timeout,
        body_timeout: cfg.listener.header_timeout,
        via: connection_id(),
        warnings: Arc::new(std::sync::Mutex::new(RateLimit::per_connection())),
    };
    let app = axum::Router::new().route(path, axum::routing::post(receive)).with_state(state);
    tasks.spawn(crate::adapter::listener::serve(name, listener, app, cfg.listener, None, shutdown));
    Ok(())
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let warnings = || r.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let body =
        match crate::adapter::listener::read_body(body, r.max_body, r.body_timeout, &r.bot.name, &r.warnings).await {
            Ok(body) => body,
            Err(status) => return status.into_response(),
        };
    if !r.secret.0.is_empty() && !signature_ok(&r.secret.0, &headers, &body) {
        crate::warn_limited!(warnings(), bot = %r.bot.name, "event with a missing or wrong X-Signature refused");
        return StatusCode::FORBIDDEN.into_response();
    }
    // Only the fields decoding reads are built; the event keeps the rest as text.
    let head = match super::payload::read_head(&body) {
        Ok(Some(head)) if head.post_type.is_some() => head,
        Ok(_) | Err(_) => {
            crate::warn_limited!(warnings(), bot = %r.bot.name, "POST body is not a OneBot event, skipped: {}", preview(&body));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let mut ev = match super::decode(&r.bot, head, Raw::text(&body), r.via) {
        Ok(ev) => ev,
        Err(e) => {
            crate::warn_limited!(warnings(), bot = %r.bot.name, "{e}; skipped");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let (done, ops) = tokio::sync::oneshot::channel();
    ev.state = Some(Box::new(QuickSlot::new(done, ev.bot.clone(), ev.raw().clone())));
    (r.sink)(ev);
    // The answer goes when every callback is done with the event (or no script wanted it).
    match tokio::time::timeout(r.quick_timeout, ops).await {
        Ok(Ok(ops)) if !ops.is_empty() => axum::Json(Value::Object(ops)).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Checks `X-Signature: sha1=<hex of HMAC-SHA1(secret, body)>` in constant time.
fn signature_ok(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(given) = headers.get("x-signature").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("sha1="))
    else {
        return false;
    };
    let Ok(given) = hex::decode(given) else { return false };
    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"post_type":"meta_event"}"#;
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
        let mut headers = HeaderMap::new();
        headers.insert("x-signature", good.parse().unwrap());
        assert!(signature_ok("s3cret", &headers, body));
        assert!(!signature_ok("other", &headers, body));
        assert!(!signature_ok("s3cret", &headers, b"{}"));
        assert!(!signature_ok("s3cret", &HeaderMap::new(), body));
    }
}

//! The client end of an HTTP JSON API (OneBot 11 over HTTP, Milky): the pooled [`ApiClient`], the
//! Bearer token, and answers read within a size bound, so that a broken or hostile server
//! cannot make the runtime buffer more than the bot accepts from the wire.

use std::borrow::Cow;

use hyper::http::{HeaderMap, HeaderValue, Method, header};
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::warn;

use super::api_client::{ApiClient, RequestError};

use crate::bot::CallError;
use crate::config::Secret;
use crate::logsafe::preview;

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The answer (announced or received) is larger than the bound.
    #[error("the answer is larger than {limit} bytes (max_frame_bytes)")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("cannot read the answer: {0}")]
    Read(#[from] reqwest::Error),
}

/// The body of a reqwest `response` (the token fetch, scripts' `http::`), at most `limit` bytes.
pub async fn read(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, AnswerError> {
    let too_large = AnswerError::TooLarge { limit };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(0, |n| n as usize));
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An HTTP JSON API at one base URL.
#[derive(Debug)]
pub struct JsonApi {
    /// The protocol's name, for logs.
    name: &'static str,
    /// The bot's name, for errors.
    bot: String,
    client: ApiClient,
    base: String,
    /// Sent with every call: `Authorization: Bearer <token>`, when there is a token.
    headers: HeaderMap,
    max_answer: usize,
}

impl JsonApi {
    /// A client for the API at `base`, sending `token` as a Bearer token when set and
    /// reading answers of up to `max_answer` bytes.
    pub fn new(
        name: &'static str,
        bot: &str,
        base: &str,
        token: &Secret,
        max_answer: usize,
        tls: &crate::tls::ClientTls,
    ) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        let authorization = if token.0.is_empty() {
            None
        } else if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.0)) {
            value.set_sensitive(true);
            Some(value)
        } else {
            // Config accepts printable text; anything else would be refused by the server.
            warn!(url = %base, "the {name} access token is not a valid header value; sent without one");
            None
        };
        let mut headers = HeaderMap::new();
        if let Some(authorization) = authorization {
            headers.insert(header::AUTHORIZATION, authorization);
        }
        JsonApi { name, bot: bot.to_owned(), client: ApiClient::new(&base, tls), base, headers, max_answer }
    }

    /// POSTs `json` (a request body made by [`encode`]) to `<base><path>` and returns the
    /// `data` of a 2xx answer whose envelope (`{status, retcode, data, ...}`, as OneBot 11 and
    /// Milky have it) says it succeeded: `Null`, not built, unless `want_data` (so a success
    /// whose `data` would not parse is a success then too, taken at its word like the rest of
    /// the envelope). Any other answer of a 2xx status goes whole to `decode`, which reads the
    /// failure out of it; any other status fails with what `explain` says of it, or else with
    /// the start of the answer.
    pub async fn post(
        &self,
        action: &str,
        path: &str,
        json: Vec<u8>,
        want_data: bool,
        explain: impl Fn(u16) -> Option<String>,
        decode: impl FnOnce(Value) -> Result<Value, CallError>,
    ) -> Result<Value, CallError> {
        let answer = self.client.send(Method::POST, path, &self.headers, Some(json), self.max_answer).await;
        let http = |status: u16, message: String| CallError::Http { action: action.to_owned(), status, message };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e @ RequestError::BadTarget(_)) => {
                return Err(CallError::Invalid { action: action.to_owned(), reason: e.to_string() });
            }
            Err(e @ RequestError::Unreachable(_)) => {
                warn!(url = %self.base, "{} API unreachable: {e}", self.name);
                return Err(CallError::NotConnected { action: action.to_owned(), bot: self.bot.clone() });
            }
            Err(RequestError::Body { status, reason }) => return Err(http(status, reason.to_string())),
        };
        let status = answer.status;
        if let Some(message) = explain(status) {
            return Err(http(status, message));
        }
        if let Some(to) = answer.redirected_to() {
            return Err(http(status, format!("the API redirects to {to}; set the url to where it points")));
        }
        if !(200..300).contains(&status) {
            return Err(http(status, preview(&answer.body)));
        }
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(&answer.body)
            && envelope.status.as_deref() != Some("failed")
            && envelope.retcode.unwrap_or(0) == 0
        {
            // Only `data` is built: the rest of a success is not read.
            return match envelope.data {
                Some(data) if want_data => serde_json::from_str(data.get()).map_err(|e| http(status, e.to_string())),
                _ => Ok(Value::Null),
            };
        }
        let whole = serde_json::from_slice(&answer.body)
            .map_err(|e| http(status, format!("the answer is not JSON ({e}): {}", preview(&answer.body))))?;
        decode(whole)
    }
}

/// The JSON text of `action`'s request `body`.
pub fn encode(action: &str, body: &Value) -> Result<Vec<u8>, CallError> {
    serde_json::to_vec(body).map_err(|e| CallError::Invalid { action: action.into(), reason: e.to_string() })
}

/// An answer's envelope read without building it. An answer this does not fit (not an object,
/// a member of another type, a member twice) is read whole instead, as before. The members it
/// does not name are skipped unchecked (serde_json does not check a skipped string's UTF-8 or
/// a skipped number's range): an answer that says it succeeded is taken at its word even when
/// a member nobody reads is malformed.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default)]
    retcode: Option<i64>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

//! Calls to the official platform's OpenAPI, whatever the function: the AccessToken headers,
//! the route's `{placeholders}` filled from the parameters, the answer in qg_botsdk's shape
//! `{data, http_code, trace_id, result}` (the trace id from `X-Tps-trace-ID`), one token
//! renewal and retry when the platform refuses the token (codes 11241–11244, even with HTTP
//! 200), retries with back-off on 429 and 5xx for idempotent methods, and a cap on calls in
//! flight.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::token::{Token, Tokens, is_token_error};
use crate::adapter::api_client::{ApiClient, BodyError, RequestError};
use crate::bot::CallError;

/// Retries of an idempotent call answered 429 or 5xx.
const RETRIES: u32 = 3;

/// The longest one OpenAPI request may take (calls also have the bot's call timeout; the
/// gateway's and the webhook's own requests have only this).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from the OpenAPI (its answers are JSON objects of a few KiB).
const MAX_ANSWER: usize = 16 << 20;

/// One request, its route already filled.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: reqwest::Method,
    /// The path, e.g. `/v2/groups/ABC/messages`.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

/// A request's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// None.
    None,
    /// JSON.
    Json(Value),
    /// `multipart/form-data`: text fields and one file (guild messages with `file_image`).
    Form {
        /// Text fields (objects written as JSON).
        fields: Vec<(String, String)>,
        /// The file part: field name, file name, content.
        file: (String, String, Vec<u8>),
    },
}

/// An answer in qg_botsdk's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The answer's JSON (`{code, message}` on a failure).
    pub data: Value,
    /// The HTTP status.
    pub http_code: u16,
    /// `X-Tps-trace-ID`, empty when absent.
    pub trace_id: String,
    /// Whether the platform did what was asked.
    pub result: bool,
}

impl Answer {
    /// The map scripts get: `#{data, http_code, trace_id, result}`.
    pub fn into_value(self) -> Value {
        let mut map = Map::new();
        map.insert("data".into(), self.data);
        map.insert("http_code".into(), self.http_code.into());
        map.insert("trace_id".into(), self.trace_id.into());
        map.insert("result".into(), self.result.into());
        Value::Object(map)
    }

    /// The platform's error code, when the answer is a failure.
    pub fn code(&self) -> Option<i64> {
        if self.result { None } else { self.data.get("code").and_then(Value::as_i64) }
    }
}

/// The OpenAPI client of one bot.
#[derive(Debug)]
pub struct Rest {
    /// JSON and bodiless requests: every reply.
    api: ApiClient,
    /// `multipart/form-data` requests (guild messages with an image file).
    client: reqwest::Client,
    /// The bot's name, for errors.
    bot: String,
    base: String,
    tokens: Arc<Tokens>,
    in_flight: Semaphore,
    /// The first retry's delay; doubled each time.
    retry_delay: Duration,
}

impl Rest {
    /// Bot `bot`'s client for the API at `base`, at most `max_in_flight` calls at once.
    pub fn new(
        bot: &str,
        client: reqwest::Client,
        tls: &crate::tls::ClientTls,
        base: &str,
        tokens: Arc<Tokens>,
        max_in_flight: usize,
    ) -> Rest {
        Rest {
            api: ApiClient::new(base, tls),
            bot: bot.to_owned(),
            client,
            base: base.trim_end_matches('/').to_owned(),
            tokens,
            in_flight: Semaphore::new(max_in_flight.max(1)),
            retry_delay: Duration::from_millis(200),
        }
    }

    /// The same client retrying after `delay` (tests make it short).
    pub fn with_retry_delay(mut self, delay: Duration) -> Rest {
        self.retry_delay = delay;
        self
    }

    /// Sends `request` for `action`; a failure the platform reports is an [`Answer`] with
    /// `result: false`, a local one (unreachable, no token) an error.
    pub async fn send(&self, action: &str, request: &Request) -> Result<Answer, CallError> {
        self.send_keeping(action, request, Keep::Whole).await
    }

    /// [`Rest::send`] for a call nobody waits for: a success keeps only the `id` of what it
    /// made (the reply rules note the bot's messages), a failure all of it.
    pub async fn send_detached(&self, action: &str, request: &Request) -> Result<Answer, CallError> {
        self.send_keeping(action, request, Keep::Id).await
    }

    async fn send_keeping(&self, action: &str, request: &Request, keep: Keep) -> Result<Answer, CallError> {
        let _slot = self.in_flight.acquire().await.map_err(|_| not_connected(action, &self.bot))?;
        let idempotent =
            matches!(request.method, reqwest::Method::GET | reqwest::Method::PUT | reqwest::Method::DELETE);
        let mut renewed = false;
        let mut attempt = 0;
        loop {
            let token = self
                .tokens
                .get()
                .await
                .map_err(|e| CallError::Invalid { action: action.into(), reason: e.to_string() })?;
            let answer = self.once(action, request, &token, keep).await?;
            if !renewed && answer.code().is_some_and(is_token_error) {
                // The platform refused the token: renew it once and try again.
                renewed = true;
                self.tokens.invalidate(&token);
                continue;
            }
            let retryable = answer.http_code == 429 || answer.http_code >= 500;
            if idempotent && retryable && attempt < RETRIES {
                tokio::time::sleep(self.retry_delay * 2u32.pow(attempt)).await;
                attempt += 1;
                continue;
            }
            return Ok(answer);
        }
    }

    async fn once(&self, action: &str, request: &Request, token: &Token, keep: Keep) -> Result<Answer, CallError> {
        let unreachable = |e: &dyn std::fmt::Display| {
            tracing::warn!(url = %self.base, "official platform unreachable: {e}");
            not_connected(action, &self.bot)
        };
        let json = match &request.body {
            Body::None => None,
            Body::Json(body) => Some(serde_json::to_vec(body).map_err(|e| invalid(action, e))?),
            // Boxed: reqwest's future is most of this one's size, and messages never take it.
            Body::Form { fields, file } => return Box::pin(self.once_form(action, request, fields, file, token)).await,
        };
        let mut path = std::borrow::Cow::Borrowed(request.path.as_str());
        if !request.query.is_empty() {
            let path = path.to_mut();
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&request.query).finish());
        }
        let headers = token.headers.as_ref().map_err(|e| invalid(action, e))?;
        let sent = self.api.send(request.method.clone(), &path, headers, json, MAX_ANSWER);
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(RequestError::Body { status, reason: e @ BodyError::TooLarge { .. } })) => {
                return Err(CallError::Http { action: action.to_owned(), status, message: e.to_string() });
            }
            Ok(Err(e @ RequestError::BadTarget(_))) => return Err(invalid(action, e)),
            Ok(Err(e)) => return Err(unreachable(&e)),
            Err(_) => return Err(unreachable(&format!("no answer within {REQUEST_TIMEOUT:?}"))),
        };
        // The head is scanned for the trace id only when the answer is kept whole.
        let trace_id = || answer.header("x-tps-trace-id").unwrap_or_default();
        let mut result = finish(answer.status, trace_id, &answer.body, keep);
        if let Some(to) = answer.redirected_to() {
            let message = format!("the OpenAPI redirects to {to}; check api_url");
            tracing::warn!(url = %self.base, "{message}");
            result.data = json!({"code": answer.status, "message": message});
        }
        Ok(result)
    }

    /// [`Rest::once`] for a `multipart/form-data` body, which goes through reqwest.
    async fn once_form(
        &self,
        action: &str,
        request: &Request,
        fields: &[(String, String)],
        (field, file_name, bytes): &(String, String, Vec<u8>),
        token: &Token,
    ) -> Result<Answer, CallError> {
        let mut builder = self
            .client
            .request(request.method.clone(), format!("{}{}", self.base, request.path))
            .timeout(REQUEST_TIMEOUT);
        builder = builder.headers(token.headers.clone().map_err(|e| invalid(action, e))?);
        if !request.query.is_empty() {
            builder = builder.query(&request.query);
        }
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.clone(), value.clone());
        }
        let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name(file_name.clone());
        builder = builder.multipart(form.part(field.clone(), part));
        let response = builder.send().await.map_err(|e| {
            tracing::warn!(url = %self.base, "official platform unreachable: {}", crate::logsafe::chain(&e));
            not_connected(action, &self.bot)
        })?;
        let http_code = response.status().as_u16();
        let trace_id =
            response.headers().get("x-tps-trace-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = match crate::adapter::http_api::read(response, MAX_ANSWER).await {
            Ok(bytes) => bytes,
            Err(e @ crate::adapter::http_api::AnswerError::TooLarge { .. }) => {
                return Err(CallError::Http { action: action.to_owned(), status: http_code, message: e.to_string() });
            }
            Err(_) => return Err(not_connected(action, &self.bot)),
        };
        Ok(finish(http_code, || &trace_id, &bytes, Keep::Whole))
    }
}

/// What of a successful answer is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// All of it.
    Whole,
    /// The `id` of what it made.
    Id,
}

/// The members of an answer that tell a success from a failure, and what a success made.
#[derive(serde::Deserialize)]
struct Brief {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    code: Option<i64>,
    /// Whether the answer has a `message` member (`null` included, as a whole reading has it).
    #[serde(default, deserialize_with = "present")]
    message: bool,
}

/// True for any member that is there.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The longest answer read as a [`Brief`]. serde_json passes over the members a `Brief` does
/// not name without checking their depth; a document nested deeper than the 128 levels a whole
/// reading allows needs more bytes than this, so one that would fail whole is never a success
/// here.
const BRIEF_MAX: usize = 256;

/// An answer in qg_botsdk's shape from the status, the trace id (asked for only when the answer
/// is read whole) and the body.
fn finish<'a>(http_code: u16, trace_id: impl FnOnce() -> &'a str, bytes: &[u8], keep: Keep) -> Answer {
    // A success nobody reads is not built. Anything unusual (a failure, a `code` that is not a
    // number, a repeated member, text that is not UTF-8, a long answer) is read whole below.
    if keep == Keep::Id
        && (200..300).contains(&http_code)
        && bytes.len() <= BRIEF_MAX
        && let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(brief) = serde_json::from_str::<Brief>(text)
        && !(brief.code.is_some_and(|c| c != 0) && brief.message && brief.id.is_none())
    {
        let data = brief.id.map_or(Value::Null, |id| crate::adapter::object([("id", Value::String(id))]));
        return Answer { data, http_code, trace_id: String::new(), result: true };
    }
    let trace_id = trace_id().to_owned();
    let data: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or_else(|_| json!({"code": -1, "message": crate::logsafe::preview(bytes)}))
    };
    // A failure may come with HTTP 200 and a `code` (the token errors do).
    let coded_failure = data.get("code").and_then(Value::as_i64).is_some_and(|c| c != 0)
        && data.get("message").is_some()
        && data.get("id").is_none();
    let result = (200..300).contains(&http_code) && !coded_failure;
    Answer { data, http_code, trace_id, result }
}

fn invalid(action: &str, e: impl std::fmt::Display) -> CallError {
    CallError::Invalid { action: action.to_owned(), reason: e.to_string() }
}

fn not_connected(action: &str, bot: &str) -> CallError {
    CallError::NotConnected { action: action.to_owned(), bot: bot.to_owned() }
}

/// Fills `route`'s `{name}` placeholders from `params` (removing them) and returns the path.
pub fn fill_route(route: &str, params: &mut Map<String, Value>) -> Result<String, String> {
    let mut path = String::with_capacity(route.len() + 16);
    let mut rest = route;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e).ok_or_else(|| format!("bad route {route}"))?;
        path.push_str(&rest[..start]);
        let name = &rest[start + 1..end];
        let value = match params.remove(name) {
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(format!("missing required parameter `{name}`")),
        };
        push_segment(&mut path, &value);
        rest = &rest[end + 1..];
    }
    path.push_str(rest);
    Ok(path)
}

/// `value` as one path segment: unreserved characters as they are, the rest percent-encoded.
pub fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_segment(&mut out, value);
    out
}

/// Appends `value` to `path` as one path segment (see [`encode_segment`]).
pub fn push_segment(path: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            path.push(char::from(b));
        } else {
            path.extend(['%', char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_their_placeholders_from_the_parameters() {
        let mut params: Map<String, Value> =
            serde_json::from_value(json!({"channel_id": "C 1/x", "message_id": 42, "content": "hi"})).unwrap();
        let path = fill_route("/channels/{channel_id}/messages/{message_id}", &mut params).unwrap();
        assert_eq!(path, "/channels/C%201%2Fx/messages/42");
        assert_eq!(Value::Object(params), json!({"content": "hi"}));
        assert!(fill_route("/guilds/{guild_id}", &mut Map::new()).unwrap_err().contains("`guild_id`"));
        assert_eq!(encode_segment("aZ9-_.~ é%"), "aZ9-_.~%20%C3%A9%25", "each byte of the rest percent-encoded");
    }

    #[test]
    fn a_detached_success_keeps_its_id_and_a_detached_failure_all_of_it() {
        let sent = br#"{"id":"R1","timestamp":"2026-12-01T10:00:00+08:00"}"#;
        let whole = finish(200, || "T", sent, Keep::Whole);
        assert_eq!((whole.result, whole.trace_id.as_str()), (true, "T"));
        assert_eq!(whole.data["timestamp"], "2026-12-01T10:00:00+08:00");
        let brief = finish(200, || "T", sent, Keep::Id);
        assert_eq!((brief.result, brief.data), (true, json!({"id": "R1"})));
        assert_eq!(finish(204, || "", b"", Keep::Id).data, Value::Null);
        for (status, body) in [
            (200, &br#"{"code":304023,"message":"push message is waiting for audit"}"#[..]),
            (200, br#"{"code":"11244","message":"token"}"#),
            (200, b"not json"),
            (200, br#"{"code":11244,"message":null}"#),
            (200, b"{\"id\":\"R1\",\"x\":\"\xff\"}"),
            (400, br#"{"id":"R2","code":40034102,"message":"proactive"}"#),
            (500, br#"{"message":"busy"}"#),
        ] {
            let (brief, whole) = (finish(status, || "T", body, Keep::Id), finish(status, || "T", body, Keep::Whole));
            assert_eq!(brief, whole, "{}", String::from_utf8_lossy(body));
        }
        let deep = format!(r#"{{"id":"R1","x":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        let (brief, whole) =
            (finish(200, || "T", deep.as_bytes(), Keep::Id), finish(200, || "T", deep.as_bytes(), Keep::Whole));
        assert_eq!((brief.result, whole.result), (false, false), "too deep to read whole, so not a success either way");
        let odd = finish(200, || "T", br#"{"id":"R1","id":"R3"}"#, Keep::Id);
        assert_eq!(
            (odd.result, &odd.data["id"]),
            (true, &json!("R3")),
            "a repeated member: read whole, the last counts"
        );
    }
}

//! The client end of an HTTP JSON API (OneBot 11 over HTTP, Milky): one connection pool, the
//! Bearer token, and answers read within a size bound, so that a broken or hostile server
//! cannot make the runtime buffer more than the bot accepts from the wire.

use serde_json::Value;
use tracing::warn;

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

/// The body of `response`, at most `limit` bytes.
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
    client: reqwest::Client,
    base: String,
    token: Secret,
    max_answer: usize,
}

impl JsonApi {
    /// A client for the API at `base`, sending `token` as a Bearer token when set and
    /// reading answers of up to `max_answer` bytes.
    pub fn new(name: &'static str, base: &str, token: &Secret, max_answer: usize, tls: &crate::tls::ClientTls) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        JsonApi { name, client: crate::tls::http_client(tls), base, token: token.clone(), max_answer }
    }

    /// POSTs `body` to `<base><path>` and returns the JSON answer of a 2xx status. Any other
    /// status fails with what `explain` says of it, or else with the start of the answer.
    pub async fn post(
        &self,
        action: &str,
        path: &str,
        body: &Value,
        explain: impl Fn(u16) -> Option<String>,
    ) -> Result<Value, CallError> {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if !self.token.0.is_empty() {
            request = request.bearer_auth(&self.token.0);
        }
        let http = |status: u16, message: String| CallError::Http { action: action.to_owned(), status, message };
        let response = request.send().await.map_err(|e| {
            warn!(url = %self.base, "{} API unreachable: {}", self.name, crate::logsafe::chain(&e));
            CallError::NotConnected { action: action.to_owned(), bot: self.base.clone() }
        })?;
        let status = response.status().as_u16();
        if let Some(message) = explain(status) {
            return Err(http(status, message));
        }
        let bytes = read(response, self.max_answer).await.map_err(|e| http(status, e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(http(status, preview(&bytes)));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| http(status, format!("the answer is not JSON ({e}): {}", preview(&bytes))))
    }
}

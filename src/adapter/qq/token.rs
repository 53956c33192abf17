//! The official platform's AccessToken: `POST <token host>/app/getAppAccessToken` with
//! `{appId, clientSecret}` answers `{access_token, expires_in}` (`expires_in` arrives as a
//! string of seconds). Calls carry `Authorization: QQBot <token>` and `X-Union-Appid`.
//!
//! The platform only issues a fresh token in the last 60 s of the old one's life, so the token
//! is renewed once it has less than that left; a token error answered with HTTP 200 (codes
//! 11241–11244) drops it, and the next call fetches a new one. Concurrent callers share one
//! fetch.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hyper::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::config::Secret;

/// How long before expiry the token is renewed: the platform issues a fresh one only then.
pub const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The longest a token fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The platform's codes for a missing, wrong or expired token (answered with HTTP 200).
pub fn is_token_error(code: i64) -> bool {
    (11241..=11244).contains(&code)
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot get an AccessToken from {url}: {reason}")]
pub struct TokenError {
    /// The token endpoint.
    pub url: String,
    /// What went wrong.
    pub reason: String,
}

/// Keeps one bot's AccessToken fresh.
#[derive(Debug)]
pub struct Tokens {
    client: reqwest::Client,
    url: String,
    app_id: String,
    secret: Secret,
    /// The token and when it expires. A plain lock: every call reads it, and it is never held
    /// across a fetch.
    current: Mutex<Option<(Arc<Token>, Instant)>>,
    /// Held while a token is fetched, so concurrent callers share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

/// An AccessToken, and the headers a call carries with it, made once per token.
#[derive(Debug)]
pub struct Token {
    /// The token.
    pub value: String,
    /// `Authorization: QQBot <token>` and `X-Union-Appid`, or why the token cannot be sent as
    /// a header (kept with the token: each call fails with it, and nothing is fetched again).
    pub headers: Result<HeaderMap, String>,
}

impl Tokens {
    /// Tokens of app `app_id` from `<host>/app/getAppAccessToken`.
    pub fn new(client: reqwest::Client, host: &str, app_id: &str, secret: Secret) -> Tokens {
        let url = format!("{}/app/getAppAccessToken", host.trim_end_matches('/'));
        Tokens {
            client,
            url,
            app_id: app_id.to_owned(),
            secret,
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// A token valid now, fetched when there is none or the one held is in its last minute.
    pub async fn get(&self) -> Result<Arc<Token>, TokenError> {
        self.get_at(Instant::now()).await
    }

    /// Like [`Tokens::get`], as of `now` (tests move the clock).
    pub async fn get_at(&self, now: Instant) -> Result<Arc<Token>, TokenError> {
        if let Some(token) = self.valid(now) {
            return Ok(token);
        }
        let _fetching = self.fetching.lock().await;
        // A caller that waited here gets the token the one before it fetched.
        if let Some(token) = self.valid(now) {
            return Ok(token);
        }
        // Boxed: every call's future holds this one, and a fetch is rare.
        let (value, lifetime) = Box::pin(self.fetch()).await?;
        let token = Arc::new(Token { headers: self.headers(&value), value });
        *self.current() = Some((token.clone(), now + lifetime));
        Ok(token)
    }

    /// The token held, if it is still good at `now`.
    fn valid(&self, now: Instant) -> Option<Arc<Token>> {
        match self.current().as_ref() {
            Some((token, expires)) if now + RENEW_BEFORE < *expires => Some(token.clone()),
            _ => None,
        }
    }

    fn current(&self) -> MutexGuard<'_, Option<(Arc<Token>, Instant)>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets `refused`, a token the platform refused; the next call fetches another. A newer
    /// token, fetched meanwhile by a call refused at the same time, is kept.
    pub fn invalidate(&self, refused: &Arc<Token>) {
        let mut current = self.current();
        if current.as_ref().is_some_and(|(held, _)| Arc::ptr_eq(held, refused)) {
            *current = None;
        }
    }

    /// The headers a call with `token` carries.
    fn headers(&self, token: &str) -> Result<HeaderMap, String> {
        let value = |text: &str, what: &str| {
            let mut value = HeaderValue::from_str(text)
                .map_err(|_| format!("the {what} cannot be sent as a header (it has control characters)"))?;
            value.set_sensitive(true);
            Ok::<_, String>(value)
        };
        let mut headers = HeaderMap::with_capacity(2);
        headers.insert("authorization", value(&format!("QQBot {token}"), "AccessToken")?);
        headers.insert("x-union-appid", value(&self.app_id, "AppID")?);
        Ok(headers)
    }

    async fn fetch(&self) -> Result<(String, Duration), TokenError> {
        let fail = |reason: String| TokenError { url: self.url.clone(), reason };
        let body = json!({"appId": self.app_id, "clientSecret": self.secret.0});
        // Bounded: every call waits behind a fetch, so a stalled token host must not hold them.
        let response = self
            .client
            .post(&self.url)
            .json(&body)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(crate::logsafe::chain(&e)))?;
        let status = response.status().as_u16();
        // The answer is a small JSON object; 64 KiB bounds a hostile one.
        let bytes = crate::adapter::http_api::read(response, 64 << 10)
            .await
            .map_err(|e| fail(format!("HTTP {status}: {e}")))?;
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| fail(format!("HTTP {status}, not JSON: {e}")))?;
        let token = answer.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        // `expires_in` is a string of seconds on the wire; a number is accepted too.
        let lifetime = match answer.get("expires_in") {
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        };
        match (token, lifetime) {
            (Some(token), Some(secs)) => Ok((token.to_owned(), Duration::from_secs(secs))),
            _ => {
                let said = answer.get("message").and_then(Value::as_str).unwrap_or("no access_token in the answer");
                Err(fail(format!("HTTP {status}: {} (check app_id and secret)", crate::logsafe::short(said))))
            }
        }
    }
}

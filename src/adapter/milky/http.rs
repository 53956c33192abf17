//! Milky calls: `POST <url>/api/<action>` with a JSON body (`{}` without parameters),
//! `Authorization: Bearer <token>`; the answer is `{status, retcode, data, message}`.

use serde_json::{Value, json};
use tracing::warn;

use super::segments::prepare_params;
use crate::adapter::http_answer::read;
use crate::bot::{CallError, CallFuture, Requests};
use crate::config::Secret;
use crate::logsafe::{escape, preview};

/// The API client of one Milky bot.
#[derive(Debug)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    token: Secret,
    max_answer: usize,
}

impl Api {
    /// A client for the implementation at `base`, reading answers of up to `max_answer` bytes.
    pub fn new(base: &str, token: &Secret, max_answer: usize, tls: &crate::tls::ClientTls) -> Api {
        let base = base.trim_end_matches('/').to_owned();
        Api { client: crate::tls::http_client(tls), base, token: token.clone(), max_answer }
    }

    async fn post(&self, action: &str, params: Value) -> Result<Value, CallError> {
        let params = prepare_params(action, params)?;
        let body = if params.is_null() { json!({}) } else { params };
        let mut request = self.client.post(format!("{}/api/{action}", self.base)).json(&body);
        if !self.token.0.is_empty() {
            request = request.bearer_auth(&self.token.0);
        }
        let http = |status: u16, message: String| CallError::Http { action: action.to_owned(), status, message };
        let response = request.send().await.map_err(|e| {
            warn!(url = %self.base, "Milky API unreachable: {}", crate::logsafe::chain(&e));
            CallError::NotConnected { action: action.to_owned(), bot: self.base.clone() }
        })?;
        let status = response.status().as_u16();
        match status {
            401 => return Err(http(401, "no or wrong access token (check access_token)".into())),
            404 => return Err(http(404, format!("the implementation does not offer the API `{action}`"))),
            415 => return Err(http(415, "the implementation refused the request's content type".into())),
            _ => {}
        }
        let bytes = read(response, self.max_answer).await.map_err(|e| http(status, e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(http(status, preview(&bytes)));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| http(status, format!("the answer is not JSON ({e}): {}", preview(&bytes))))?;
        decode_response(action, answer)
    }
}

impl Requests for Api {
    fn call<'a>(&'a self, action: &'a str, params: Value) -> CallFuture<'a> {
        Box::pin(self.post(action, params))
    }
}

/// Reads the answer envelope: `data` on success, the retcode and message as an error.
pub fn decode_response(action: &str, mut answer: Value) -> Result<Value, CallError> {
    let retcode = answer.get("retcode").and_then(Value::as_i64).unwrap_or(0);
    let failed = answer.get("status").and_then(Value::as_str) == Some("failed") || retcode != 0;
    if !failed {
        return Ok(answer.get_mut("data").map(Value::take).unwrap_or(Value::Null));
    }
    let said = answer.get("message").and_then(Value::as_str).filter(|m| !m.is_empty()).unwrap_or("no message given");
    let message = match retcode {
        -403 => format!("the implementation is not logged in to QQ: {said}"),
        -400 => format!("the implementation refused the parameters: {said}"),
        _ => said.to_owned(),
    };
    Err(CallError::Failed {
        action: action.to_owned(),
        code: if retcode == 0 { -1 } else { retcode },
        message: escape(&message).into_owned(),
        trace_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retcodes_get_their_meaning() {
        let e = decode_response("x", json!({"status": "failed", "retcode": -403, "message": "offline"})).unwrap_err();
        assert!(e.to_string().contains("not logged in"), "{e}");
        let e = decode_response("x", json!({"status": "failed", "retcode": -400, "message": "bad uid"})).unwrap_err();
        assert!(e.to_string().contains("refused the parameters: bad uid") && e.code() == -400, "{e}");
        assert_eq!(
            decode_response("x", json!({"status": "ok", "retcode": 0, "data": {"a": 1}})).unwrap(),
            json!({"a": 1})
        );
    }
}

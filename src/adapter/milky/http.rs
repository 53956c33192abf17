//! Milky calls: `POST <url>/api/<action>` with a JSON body (`{}` without parameters),
//! `Authorization: Bearer <token>`; the answer is `{status, retcode, data, message}`.

use serde_json::Value;

use super::segments::prepare_params;
use crate::adapter::http_api::{JsonApi, encode};
use crate::bot::{CallError, CallFuture, Params, Requests};
use crate::config::Secret;
use crate::logsafe::escape;

/// The API client of one Milky bot.
#[derive(Debug)]
pub struct Api(JsonApi);

impl Api {
    /// Bot `bot`'s client for the implementation at `base`, reading answers of up to
    /// `max_answer` bytes.
    pub fn new(bot: &str, base: &str, token: &Secret, max_answer: usize, tls: &crate::tls::ClientTls) -> Api {
        Api(JsonApi::new("Milky", bot, base, token, max_answer, tls))
    }

    async fn post(&self, action: &str, params: Params, answered: bool) -> Result<Value, CallError> {
        let json = match params {
            Params::Given(params) => body(action, params)?,
            Params::Encoded(json) => json,
        };
        let explain = |status| match status {
            401 => Some("no or wrong access token (check access_token)".to_owned()),
            404 => Some(format!("the implementation does not offer the API `{action}`")),
            415 => Some("the implementation refused the request's content type".to_owned()),
            _ => None,
        };
        self.0
            .post(action, &["/api/", action].concat(), json, answered, explain, |answer| {
                decode_response(action, answer)
            })
            .await
    }
}

/// The request body of `action`: its parameters as Milky has them, `{}` for none.
fn body(action: &str, params: Value) -> Result<Vec<u8>, CallError> {
    match prepare_params(action, params)? {
        Value::Null => Ok(b"{}".to_vec()),
        params => encode(action, &params),
    }
}

impl Requests for Api {
    fn call<'a>(&'a self, action: &'a str, params: Params, answered: bool) -> CallFuture<'a> {
        Box::pin(self.post(action, params, answered))
    }

    fn encode(&self, action: &str, params: Value) -> Result<Params, CallError> {
        body(action, params).map(Params::Encoded)
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
        answer: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

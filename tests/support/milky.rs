//! A fake Milky implementation (the LLBot / Lagrange.Milky side), written from seed 001's
//! `/api/...` sections: `POST /api/<action>` answers `{status, retcode, data, message}` (401
//! without the right Bearer token, 415 without a JSON content type, 404 for an API it lacks),
//! and `GET /event` streams events `{time, self_id, event_type, data}` over a WebSocket when
//! asked to upgrade, else as server-sent events (`event: milky_event`). Ids are >= 10001, as
//! the official schemas require.

use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Faults, Reporter};

/// The fake's own account.
pub const SELF_ID: i64 = 10001;

/// How the fake answers one API.
pub enum Reply {
    /// `status: ok` with this data.
    Ok(Value),
    /// `status: failed` with this retcode and message.
    Fail(i64, String),
    /// HTTP 404: the implementation lacks this API.
    Missing,
    /// Any other HTTP status, e.g. 415 from an implementation that dislikes the request.
    Status(u16),
}

/// Chooses the answer to each API call.
pub type Responder = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

/// One API call as the fake saw it.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// The `<action>` of the path.
    pub action: String,
    /// The JSON body.
    pub body: Value,
}

/// How an event connection was opened.
#[derive(Debug, Clone)]
pub struct Opened {
    /// `ws` or `sse`.
    pub kind: &'static str,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `access_token` query parameter, if any.
    pub query_token: Option<String>,
    /// The query as sent, still encoded.
    pub raw_query: Option<String>,
}

#[derive(Clone)]
struct Shared {
    token: Option<String>,
    responder: Responder,
    calls: mpsc::UnboundedSender<ApiCall>,
    opened: mpsc::UnboundedSender<Opened>,
    /// The current event connection: frames to send (`None` closes it).
    stream: Arc<Mutex<Option<mpsc::UnboundedSender<Option<String>>>>>,
    faults: Reporter,
}

/// The fake.
pub struct FakeMilky {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    calls: mpsc::UnboundedReceiver<ApiCall>,
    opened: mpsc::UnboundedReceiver<Opened>,
    shared: Shared,
    faults: Faults,
}

impl FakeMilky {
    /// Serves on a free loopback port; `token` is required when set.
    pub async fn start(token: Option<&str>) -> FakeMilky {
        Self::with_responder(token, Arc::new(default_response)).await
    }

    /// Like [`FakeMilky::start`], answering APIs with `responder`.
    pub async fn with_responder(token: Option<&str>, responder: Responder) -> FakeMilky {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (opened_tx, opened) = mpsc::unbounded_channel();
        let faults = Faults::default();
        let shared = Shared {
            token: token.map(str::to_owned),
            responder,
            calls: calls_tx,
            opened: opened_tx,
            stream: Arc::default(),
            faults: faults.reporter(),
        };
        let app = axum::Router::new()
            .route("/api/{action}", axum::routing::post(api))
            .route("/event", axum::routing::get(event))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        faults.reporter().spawn(async move { axum::serve(listener, app).await.expect("fake serves") });
        FakeMilky { url, calls, opened, shared, faults }
    }

    /// Waits for the next API call.
    pub async fn next_call(&mut self) -> ApiCall {
        self.faults.within("a Milky API call", self.calls.recv()).await.expect("fake alive")
    }

    /// Waits for the first call for which `wanted` holds, passing over others (at most
    /// [`super::MAX_SKIPPED`] of them, all within [`super::WAIT`]).
    pub async fn next_call_where(&mut self, mut wanted: impl FnMut(&ApiCall) -> bool) -> ApiCall {
        let search = async {
            for _ in 0..super::MAX_SKIPPED {
                let call = self.next_call().await;
                if wanted(&call) {
                    return call;
                }
            }
            panic!("{} calls came, none the one awaited", super::MAX_SKIPPED);
        };
        super::within("the awaited call", search).await
    }

    /// Waits until a client opened the event connection.
    pub async fn opened(&mut self) -> Opened {
        self.faults.within("the event connection", self.opened.recv()).await.expect("fake alive")
    }

    /// Sends an event on the open event connection.
    pub fn push(&self, event: Value) {
        self.push_raw(event.to_string());
    }

    /// Sends any text as one event (SSE: JSON split over several `data:` lines, as allowed).
    pub fn push_raw(&self, text: String) {
        let stream = self.shared.stream.lock().expect("lock");
        stream.as_ref().expect("no event connection open").send(Some(text)).expect("connection alive");
    }

    /// Closes the event connection abruptly.
    pub fn drop_stream(&self) {
        if let Some(tx) = self.shared.stream.lock().expect("lock").take() {
            let _ = tx.send(None);
        }
    }
}

/// Answers like an implementation: a message sequence for sends, the account for
/// `get_login_info`, its name for `get_impl_info`, `{}` otherwise.
pub fn default_response(action: &str, _body: &Value) -> Reply {
    static NEXT_SEQ: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(50001);
    match action {
        "send_private_message" | "send_group_message" => Reply::Ok(json!({
            "message_seq": NEXT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed), "time": 1_700_000_000})),
        "get_login_info" => Reply::Ok(json!({"uin": SELF_ID, "nickname": "fake"})),
        "get_impl_info" => {
            Reply::Ok(json!({"impl_name": "fake-milky", "impl_version": "1.0", "qq_protocol_version": "x",
                                            "qq_protocol_type": "linux", "milky_version": "1.0"}))
        }
        _ => Reply::Ok(json!({})),
    }
}

fn authorized(shared: &Shared, headers: &HeaderMap, query: Option<&String>) -> bool {
    let Some(token) = &shared.token else { return true };
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    header == Some(format!("Bearer {token}").as_str()) || query == Some(token)
}

async fn api(State(shared): State<Shared>, Path(action): Path<String>, headers: HeaderMap, body: String) -> Response {
    if !authorized(&shared, &headers, None) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let json_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    if !json_type {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let body: Value = match serde_json::from_str(&body) {
        Ok(Value::Object(map)) => Value::Object(map),
        other => {
            shared.faults.report(format!("`{action}`: the body is not a JSON object: {other:?}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let reply = (shared.responder)(&action, &body);
    let _ = shared.calls.send(ApiCall { action, body });
    match reply {
        Reply::Ok(data) => axum::Json(json!({"status": "ok", "retcode": 0, "data": data})).into_response(),
        Reply::Fail(retcode, message) => {
            axum::Json(json!({"status": "failed", "retcode": retcode, "message": message})).into_response()
        }
        Reply::Missing => StatusCode::NOT_FOUND.into_response(),
        Reply::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
    }
}

async fn event(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
    RawQuery(raw_query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = ws.ok();
    let query_token = query.get("access_token").cloned();
    if !authorized(&shared, &headers, query_token.as_ref()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<String>>();
    *shared.stream.lock().expect("lock") = Some(tx);
    let kind = if ws.is_some() { "ws" } else { "sse" };
    let _ = shared.opened.send(Opened { kind, authorization, query_token, raw_query });
    match ws {
        Some(ws) => ws.on_upgrade(move |mut socket| async move {
            while let Some(Some(text)) = rx.recv().await {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }),
        None => {
            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                let text = rx.recv().await.flatten()?;
                // One JSON event may span several `data:` lines; they join with newlines.
                let data: String = text.lines().map(|l| format!("data: {l}\n")).collect();
                Some((Ok::<_, std::convert::Infallible>(format!("event: milky_event\n{data}\n")), rx))
            });
            ([("content-type", "text/event-stream")], axum::body::Body::from_stream(body)).into_response()
        }
    }
}

/// POSTs `event` to a webhook receiver as an implementation does; returns the HTTP status.
pub async fn post_webhook(url: &str, token: Option<&str>, event: &Value) -> u16 {
    let client = super::http_client();
    loop {
        let mut request = client.post(url).header("content-type", "application/json").body(event.to_string());
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        match request.send().await {
            Ok(r) => return r.status().as_u16(),
            Err(e) if e.is_connect() => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A group message event as seed 001's `IncomingMessage` (group scene) describes it.
pub fn group_message(group_id: i64, user_id: i64, seq: i64, segments: Value) -> Value {
    json!({"time": 1_700_000_000, "self_id": SELF_ID, "event_type": "message_receive", "data": {
        "message_scene": "group", "peer_id": group_id, "message_seq": seq, "sender_id": user_id,
        "time": 1_700_000_000, "segments": segments,
        "group": {"group_id": group_id, "group_name": "test group", "member_count": 3, "max_member_count": 200},
        "group_member": {"group_id": group_id, "user_id": user_id, "nickname": "tester", "card": "", "title": "",
                         "sex": "unknown", "level": 1, "role": "member", "join_time": 1, "last_sent_time": 1}}})
}

/// A friend message event (`IncomingMessage`, friend scene).
pub fn friend_message(user_id: i64, seq: i64, text: &str) -> Value {
    json!({"time": 1_700_000_000, "self_id": SELF_ID, "event_type": "message_receive", "data": {
        "message_scene": "friend", "peer_id": user_id, "message_seq": seq, "sender_id": user_id,
        "time": 1_700_000_000, "segments": [{"type": "text", "data": {"text": text}}],
        "friend": {"user_id": user_id, "nickname": "tester", "sex": "unknown", "qid": "", "remark": "",
                   "category": {"category_id": 10001, "category_name": "friends"}}}})
}

/// Text segments.
pub fn text(t: &str) -> Value {
    json!([{"type": "text", "data": {"text": t}}])
}

//! A fake of the official platform, written from its docs: the token endpoint (`POST
//! /app/getAppAccessToken`: `{appId, clientSecret}` in, `{access_token, expires_in}` out, with
//! `expires_in` as a string of seconds; wrong credentials get an error message), and the
//! OpenAPI, which checks `Authorization: QQBot <token>` (refusing it with code 11244 when it is
//! not the newest) and `X-Union-Appid`, answers with an `X-Tps-trace-ID`, and lets the test
//! choose each answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use serde_json::{Value, json};

use super::Faults;

/// One OpenAPI request as the fake saw it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// The method.
    pub method: String,
    /// The path and query.
    pub uri: String,
    /// The JSON body (`null` without one, or when it is not JSON).
    pub body: Value,
    /// The body as text (lossy), e.g. a multipart form.
    pub raw: String,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// Chooses an OpenAPI answer: `(status, body)` for a request and how many came before it.
pub type ApiResponder = Arc<dyn Fn(&ApiRequest, u64) -> (u16, Value) + Send + Sync>;

/// The fake.
pub struct FakePlatform {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    issued: Arc<AtomicU64>,
    token_failures: Arc<AtomicU64>,
    requests: tokio::sync::mpsc::UnboundedReceiver<ApiRequest>,
    _faults: Faults,
}

#[derive(Clone)]
struct Shared {
    app_id: String,
    secret: String,
    lifetime_secs: u64,
    issued: Arc<AtomicU64>,
    token_failures: Arc<AtomicU64>,
    api_calls: Arc<AtomicU64>,
    responder: ApiResponder,
    requests: tokio::sync::mpsc::UnboundedSender<ApiRequest>,
}

impl FakePlatform {
    /// Issues tokens living `lifetime_secs` to app `app_id` with `secret`; the OpenAPI answers
    /// `{}` to everything.
    pub async fn start(app_id: &str, secret: &str, lifetime_secs: u64) -> FakePlatform {
        Self::with_api(app_id, secret, lifetime_secs, Arc::new(|_, _| (200, json!({})))).await
    }

    /// Like [`FakePlatform::start`], the OpenAPI answering with `responder`.
    pub async fn with_api(app_id: &str, secret: &str, lifetime_secs: u64, responder: ApiResponder) -> FakePlatform {
        let issued = Arc::new(AtomicU64::new(0));
        let token_failures = Arc::new(AtomicU64::new(0));
        let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared {
            app_id: app_id.into(),
            secret: secret.into(),
            lifetime_secs,
            issued: issued.clone(),
            token_failures: token_failures.clone(),
            api_calls: Arc::default(),
            responder,
            requests: tx,
        };
        let app = axum::Router::new()
            .route("/app/getAppAccessToken", axum::routing::post(token))
            .fallback(api)
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let faults = Faults::default();
        faults.reporter().spawn(async move { axum::serve(listener, app).await.expect("fake serves") });
        FakePlatform { url, issued, token_failures, requests, _faults: faults }
    }

    /// The next OpenAPI request (ones refused for their token included).
    pub async fn next_request(&mut self) -> ApiRequest {
        super::within("an OpenAPI request", self.requests.recv()).await.expect("fake alive")
    }

    /// Makes the token endpoint answer the next `n` requests with HTTP 503.
    pub fn fail_tokens(&self, n: u64) {
        self.token_failures.store(n, Ordering::SeqCst);
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }
}

async fn token(State(s): State<Shared>, axum::Json(body): axum::Json<Value>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if s.token_failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    token_answer(&s, &body).into_response()
}

fn token_answer(s: &Shared, body: &Value) -> axum::Json<Value> {
    if body["appId"] != s.app_id.as_str() || body["clientSecret"] != s.secret.as_str() {
        return axum::Json(json!({"code": 100016, "message": "invalid appid or secret"}));
    }
    let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({"access_token": format!("token-{n}"), "expires_in": s.lifetime_secs.to_string()}))
}

async fn api(
    State(s): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let request = ApiRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw: String::from_utf8_lossy(&body).into_owned(),
        content_type: headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
    };
    let _ = s.requests.send(request.clone());
    let newest = format!("QQBot token-{}", s.issued.load(Ordering::SeqCst));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let trace = [("X-Tps-trace-ID", format!("trace-{}", s.api_calls.load(Ordering::SeqCst)))];
    if header("authorization") != newest || header("x-union-appid") != s.app_id {
        return (
            axum::http::StatusCode::OK,
            trace,
            axum::Json(json!({"code": 11244, "message": "token not exist or expire"})),
        )
            .into_response();
    }
    let n = s.api_calls.fetch_add(1, Ordering::SeqCst);
    let (status, body) = (s.responder)(&request, n);
    let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    (status, trace, axum::Json(body)).into_response()
}

/// A fake gateway (`wss` comes from a TLS front when wanted): Hello with a short heartbeat
/// interval, READY on Identify (session `S<shard + 1>`), acks to heartbeats, and on Resume a replay
/// of the dispatches sent since the client's sequence number, then RESUMED. Each connection is
/// served on its own task, so several shards can be connected at once; dispatches go to the
/// connection of shard 0 (where the platform sends group and C2C events).
pub struct FakeGateway {
    /// `ws://127.0.0.1:<port>`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    shared: Arc<std::sync::Mutex<GatewayState>>,
    seen: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _faults: Faults,
}

#[derive(Default)]
struct GatewayState {
    /// Every dispatch ever sent, by sequence number: what a resume replays.
    history: Vec<Value>,
    seq: u64,
    /// The connections that identified or resumed: (shard id, their channel).
    ready: Vec<(u64, tokio::sync::mpsc::UnboundedSender<GatewayCommand>)>,
}

enum GatewayCommand {
    Dispatch(Value),
    Drop,
    /// Close with this code.
    Close(u16),
}

impl FakeGateway {
    /// Listens on a free loopback port.
    pub async fn start() -> FakeGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
        // READY is sequence number 1; dispatches follow it.
        let shared = Arc::new(std::sync::Mutex::new(GatewayState { seq: 1, ..GatewayState::default() }));
        let faults = Faults::default();
        let reporter = faults.reporter();
        let state = shared.clone();
        faults.reporter().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                reporter.spawn(serve_gateway(stream, state.clone(), seen_tx.clone()));
            }
        });
        FakeGateway { url: format!("ws://127.0.0.1:{port}"), port, shared, seen, _faults: faults }
    }

    /// Sends a dispatch (`op 0`, its `s` assigned) to shard 0, or keeps it for the replay while
    /// that shard is not connected.
    pub fn dispatch(&self, event: Value) {
        self.dispatch_to(0, event);
    }

    /// Sends a dispatch to shard `to` (see [`FakeGateway::dispatch`]).
    pub fn dispatch_to(&self, to: u64, mut event: Value) {
        let mut st = self.shared.lock().expect("gateway state");
        st.seq += 1;
        event["s"] = json!(st.seq);
        st.history.push(event.clone());
        st.ready.retain(|(_, tx)| !tx.is_closed());
        if let Some((_, tx)) = st.ready.iter().find(|(shard, _)| *shard == to) {
            let _ = tx.send(GatewayCommand::Dispatch(event));
        }
    }

    /// Drops every connection.
    pub fn drop_connection(&self) {
        let mut st = self.shared.lock().expect("gateway state");
        for (_, tx) in st.ready.drain(..) {
            let _ = tx.send(GatewayCommand::Drop);
        }
    }

    /// Closes every connection with the close frame `code` (4004: the token is invalid).
    pub fn close_with(&self, code: u16) {
        let mut st = self.shared.lock().expect("gateway state");
        for (_, tx) in st.ready.drain(..) {
            let _ = tx.send(GatewayCommand::Close(code));
        }
    }

    /// The next payload a client sent that is not a heartbeat.
    pub async fn next_sent(&mut self) -> Value {
        loop {
            let payload = super::within("a gateway payload", self.seen.recv()).await.expect("fake alive");
            if payload["op"] != 1 {
                return payload;
            }
        }
    }
}

async fn serve_gateway(
    stream: tokio::net::TcpStream,
    state: Arc<std::sync::Mutex<GatewayState>>,
    seen: tokio::sync::mpsc::UnboundedSender<Value>,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 200}});
    if ws.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    // Dispatches reach a connection only once it identified or resumed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(GatewayCommand::Dispatch(ev)) => {
                    if ws.send(Message::Text(ev.to_string().into())).await.is_err() { return; }
                }
                Some(GatewayCommand::Close(code)) => {
                    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
                    let _ = ws.send(Message::Close(Some(CloseFrame { code: code.into(), reason: "".into() }))).await;
                    return;
                }
                Some(GatewayCommand::Drop) | None => return,
            },
            frame = ws.next() => {
                let Some(Ok(Message::Text(text))) = frame else { return };
                let payload: Value = serde_json::from_str(&text).expect("the client sends JSON");
                let answers: Vec<Value> = match payload["op"].as_i64() {
                    Some(1) => vec![json!({"op": 11})],
                    Some(2) => {
                        let shard = payload["d"]["shard"][0].as_u64().unwrap_or(0);
                        state.lock().expect("gateway state").ready.push((shard, tx.clone()));
                        vec![json!({"op": 0, "s": 1, "t": "READY", "id": format!("READY:{shard}"),
                                    "d": {"version": 1, "session_id": format!("S{}", shard + 1), "user": {"id": "BOT", "username": "bot"},
                                          "shard": payload["d"]["shard"]}})]
                    }
                    Some(6) => {
                        let from = payload["d"]["seq"].as_u64().unwrap_or(0);
                        let mut st = state.lock().expect("gateway state");
                        // A resumed session is shard 0's in these tests.
                        st.ready.push((0, tx.clone()));
                        let mut replay: Vec<Value> = st.history.iter().filter(|e| e["s"].as_u64() > Some(from)).cloned().collect();
                        replay.push(json!({"op": 0, "s": st.seq, "t": "RESUMED", "id": "RESUMED:1", "d": {}}));
                        replay
                    }
                    _ => vec![],
                };
                // Reported once the connection is registered: a dispatch the test sends next
                // finds it.
                let _ = seen.send(payload);
                for a in answers {
                    if ws.send(Message::Text(a.to_string().into())).await.is_err() { return; }
                }
            }
        }
    }
}

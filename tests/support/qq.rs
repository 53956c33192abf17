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
    /// The JSON body (`null` without one).
    pub body: Value,
}

/// Chooses an OpenAPI answer: `(status, body)` for a request and how many came before it.
pub type ApiResponder = Arc<dyn Fn(&ApiRequest, u64) -> (u16, Value) + Send + Sync>;

/// The fake.
pub struct FakePlatform {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    issued: Arc<AtomicU64>,
    requests: tokio::sync::mpsc::UnboundedReceiver<ApiRequest>,
    _faults: Faults,
}

#[derive(Clone)]
struct Shared {
    app_id: String,
    secret: String,
    lifetime_secs: u64,
    issued: Arc<AtomicU64>,
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
        let (tx, requests) = tokio::sync::mpsc::unbounded_channel();
        let shared = Shared {
            app_id: app_id.into(),
            secret: secret.into(),
            lifetime_secs,
            issued: issued.clone(),
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
        FakePlatform { url, issued, requests, _faults: faults }
    }

    /// The next OpenAPI request (ones refused for their token included).
    pub async fn next_request(&mut self) -> ApiRequest {
        super::within("an OpenAPI request", self.requests.recv()).await.expect("fake alive")
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }
}

async fn token(State(s): State<Shared>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
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
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let request = ApiRequest {
        method: method.to_string(),
        uri: uri.to_string(),
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
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

/// A fake gateway (`wss` is fronted by a TLS front when wanted): Hello with a short heartbeat
/// interval, READY on Identify (session `S1`), acks to heartbeats, and on Resume a replay of
/// the dispatches sent since the client's sequence number, then RESUMED.
pub struct FakeGateway {
    /// `ws://127.0.0.1:<port>`.
    pub url: String,
    commands: tokio::sync::mpsc::UnboundedSender<GatewayCommand>,
    seen: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _faults: Faults,
}

enum GatewayCommand {
    Dispatch(Value),
    Drop,
}

impl FakeGateway {
    /// Listens on a free loopback port.
    pub async fn start() -> FakeGateway {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("ws://{}", listener.local_addr().expect("addr"));
        let (commands, mut rx) = tokio::sync::mpsc::unbounded_channel::<GatewayCommand>();
        let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let faults = Faults::default();
        faults.reporter().spawn(async move {
            // Every dispatch ever sent, by sequence number: what a resume replays.
            let mut history: Vec<Value> = Vec::new();
            let mut seq = 1u64;
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { continue };
                let hello = json!({"op": 10, "d": {"heartbeat_interval": 200}});
                if ws.send(Message::Text(hello.to_string().into())).await.is_err() { continue; }
                // Dispatches reach a connection only once it identified or resumed.
                let mut ready = false;
                loop {
                    tokio::select! {
                        cmd = rx.recv() => match cmd {
                            Some(GatewayCommand::Dispatch(mut ev)) => {
                                seq += 1;
                                ev["s"] = json!(seq);
                                history.push(ev.clone());
                                if ready && ws.send(Message::Text(ev.to_string().into())).await.is_err() { break; }
                            }
                            Some(GatewayCommand::Drop) => break,
                            None => return,
                        },
                        frame = ws.next() => {
                            let Some(Ok(Message::Text(text))) = frame else { break };
                            let payload: Value = serde_json::from_str(&text).expect("the client sends JSON");
                            let _ = seen_tx.send(payload.clone());
                            let answers: Vec<Value> = match payload["op"].as_i64() {
                                Some(1) => vec![json!({"op": 11})],
                                Some(2) => vec![json!({"op": 0, "s": 1, "t": "READY", "id": "READY:1",
                                                       "d": {"version": 1, "session_id": "S1", "user": {"id": "BOT"}, "shard": [0, 1]}})],
                                Some(6) => {
                                    let from = payload["d"]["seq"].as_u64().unwrap_or(0);
                                    let mut replay: Vec<Value> = history.iter().filter(|e| e["s"].as_u64() > Some(from)).cloned().collect();
                                    replay.push(json!({"op": 0, "s": seq, "t": "RESUMED", "id": "RESUMED:1", "d": {}}));
                                    replay
                                }
                                _ => vec![],
                            };
                            ready |= matches!(payload["op"].as_i64(), Some(2 | 6));
                            for a in answers {
                                if ws.send(Message::Text(a.to_string().into())).await.is_err() { break; }
                            }
                        }
                    }
                }
            }
        });
        FakeGateway { url, commands, seen, _faults: faults }
    }

    /// Sends a dispatch (`op 0`, its `s` assigned), or keeps it for the replay while no client
    /// is connected.
    pub fn dispatch(&self, event: Value) {
        let _ = self.commands.send(GatewayCommand::Dispatch(event));
    }

    /// Drops the current connection.
    pub fn drop_connection(&self) {
        let _ = self.commands.send(GatewayCommand::Drop);
    }

    /// The next payload the client sent that is not a heartbeat.
    pub async fn next_sent(&mut self) -> Value {
        loop {
            let payload = super::within("a gateway payload", self.seen.recv()).await.expect("fake alive");
            if payload["op"] != 1 {
                return payload;
            }
        }
    }
}

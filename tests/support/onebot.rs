//! A fake OneBot 11 implementation (the LLBot/NapCat side) serving the forward WebSocket
//! universal endpoint `/`, written from seed 001: it pushes event objects, answers action
//! frames `{"action", "params", "echo"}` with the response envelope
//! `{"status", "retcode", "data", "message", "wording", "echo"}`, and checks the access token.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::Faults;

/// The self id the fake logs in as.
pub const SELF_ID: i64 = 3_000_000_001;

/// How the fake answers one action.
pub enum Reply {
    /// `status: ok` with this data.
    Ok(Value),
    /// `status: failed` with this retcode and wording.
    Fail(i64, String),
    /// No answer at all (a hung implementation).
    Silent,
}

/// Chooses the answer to each action.
pub type Responder = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

/// What a test can tell the current connection to do.
enum Command {
    Send(String),
    Drop,
    /// Keep the socket open but read nothing more (a peer whose window fills up).
    StopReading,
}

/// One accepted connection, as the test sees it.
#[derive(Debug)]
pub struct Connected {
    /// The `Authorization` header the client sent, if any.
    pub authorization: Option<String>,
    /// The path it connected to (`/`, `/api`, `/event`).
    pub path: String,
}

/// An action the client called.
#[derive(Debug, Clone)]
pub struct ActionCall {
    /// `action` of the frame.
    pub action: String,
    /// `params` of the frame.
    pub params: Value,
}

/// The fake implementation.
pub struct FakeOneBot {
    /// `ws://127.0.0.1:<port>/`.
    pub url: String,
    connected: mpsc::UnboundedReceiver<(Connected, mpsc::UnboundedSender<Command>)>,
    current: Option<mpsc::UnboundedSender<Command>>,
    by_path: std::collections::HashMap<String, mpsc::UnboundedSender<Command>>,
    /// Every connection accepted, oldest first.
    all: Vec<mpsc::UnboundedSender<Command>>,
    actions: mpsc::UnboundedReceiver<ActionCall>,
    faults: Faults,
}

impl FakeOneBot {
    /// Listens on a free loopback port; `token` is required from clients when set.
    pub async fn start(token: Option<&str>) -> FakeOneBot {
        Self::with_responder(token, Arc::new(default_response)).await
    }

    /// Like [`FakeOneBot::start`], answering actions with `responder`.
    pub async fn with_responder(token: Option<&str>, responder: Responder) -> FakeOneBot {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        let (conn_tx, connected) = mpsc::unbounded_channel();
        let (action_tx, actions) = mpsc::unbounded_channel();
        let token = token.map(str::to_owned);
        let faults = Faults::default();
        let reporter = faults.reporter();
        faults.reporter().spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (token, conn_tx, action_tx, responder) =
                    (token.clone(), conn_tx.clone(), action_tx.clone(), responder.clone());
                reporter.spawn(serve(stream, token, conn_tx, action_tx, responder));
            }
        });
        FakeOneBot { url, connected, current: None, by_path: Default::default(), all: Vec::new(), actions, faults }
    }

    /// Waits for the next client connection and makes it the current one.
    pub async fn accept(&mut self) -> Connected {
        let (info, commands) =
            self.faults.within("a client connection", self.connected.recv()).await.expect("fake alive");
        self.by_path.insert(info.path.clone(), commands.clone());
        self.all.push(commands.clone());
        self.current = Some(commands);
        info
    }

    /// Pushes an event object to the current connection.
    pub fn push(&self, event: Value) {
        self.push_raw(event.to_string());
    }

    /// Pushes an event object to the connection made to `path`.
    pub fn push_to(&self, path: &str, event: Value) {
        let conn = self.by_path.get(path).unwrap_or_else(|| panic!("no connection to {path}"));
        conn.send(Command::Send(event.to_string())).expect("connection alive");
    }

    /// Pushes an event object to the `n`th connection accepted (0 = the first).
    pub fn push_on(&self, n: usize, event: Value) {
        self.all[n].send(Command::Send(event.to_string())).expect("connection alive");
    }

    /// Pushes any text frame, well-formed or not.
    pub fn push_raw(&self, frame: String) {
        let conn = self.current.as_ref().expect("no connection accepted yet");
        conn.send(Command::Send(frame)).expect("connection alive");
    }

    /// Closes the current connection abruptly (no close frame).
    pub fn drop_connection(&mut self) {
        if let Some(conn) = self.current.take() {
            let _ = conn.send(Command::Drop);
        }
    }

    /// Makes the current connection stop reading, socket left open.
    pub fn stop_reading(&self) {
        let conn = self.current.as_ref().expect("no connection accepted yet");
        conn.send(Command::StopReading).expect("connection alive");
    }

    /// Waits for the first action for which `wanted` holds, passing over others (at most
    /// [`super::MAX_SKIPPED`] of them, all within [`super::WAIT`]).
    pub async fn next_action_where(&mut self, mut wanted: impl FnMut(&ActionCall) -> bool) -> ActionCall {
        let search = async {
            for _ in 0..super::MAX_SKIPPED {
                let call = self.next_action().await;
                if wanted(&call) {
                    return call;
                }
            }
            panic!("{} actions came, none the one awaited", super::MAX_SKIPPED);
        };
        super::within("the awaited action", search).await
    }

    /// Waits for the next action the client calls.
    pub async fn next_action(&mut self) -> ActionCall {
        self.faults.within("an action call", self.actions.recv()).await.expect("fake alive")
    }
}

/// Answers like LLBot: `send_*` return a message id, `get_login_info` the fake's account,
/// anything else `null` data.
pub fn default_response(action: &str, _params: &Value) -> Reply {
    static NEXT_ID: AtomicI64 = AtomicI64::new(1000);
    match action {
        a if a.starts_with("send_") => Reply::Ok(json!({"message_id": NEXT_ID.fetch_add(1, Ordering::Relaxed)})),
        "get_login_info" => Reply::Ok(json!({"user_id": SELF_ID, "nickname": "fake"})),
        _ => Reply::Ok(Value::Null),
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    token: Option<String>,
    conn_tx: mpsc::UnboundedSender<(Connected, mpsc::UnboundedSender<Command>)>,
    action_tx: mpsc::UnboundedSender<ActionCall>,
    responder: Responder,
) {
    let mut authorization = None;
    let mut path = String::new();
    // The signature is the one tungstenite's handshake callback requires.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        authorization = auth.clone();
        path = req.uri().path().to_owned();
        match &token {
            Some(t) if auth.as_deref() != Some(&format!("Bearer {t}")) => {
                let mut denied = ErrorResponse::new(Some("token mismatch".into()));
                *denied.status_mut() = StatusCode::UNAUTHORIZED;
                Err(denied)
            }
            _ => Ok(resp),
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else { return };
    let (mut tx, mut rx) = ws.split();
    let (cmd_tx, mut commands) = mpsc::unbounded_channel();
    let _ = conn_tx.send((Connected { authorization, path }, cmd_tx));
    let lifecycle = json!({"time": 1, "self_id": SELF_ID, "post_type": "meta_event",
                           "meta_event_type": "lifecycle", "sub_type": "connect"});
    if tx.send(Message::Text(lifecycle.to_string().into())).await.is_err() {
        return;
    }
    let mut reading = true;
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send(frame)) => {
                    if tx.send(Message::Text(frame.into())).await.is_err() { return; }
                }
                Some(Command::StopReading) => reading = false,
                Some(Command::Drop) | None => return,
            },
            frame = rx.next(), if reading => {
                let Some(Ok(Message::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(_))) { continue; }
                    return;
                };
                let call: Value = serde_json::from_str(&text).expect("client sends JSON action frames");
                let action = call["action"].as_str().expect("action is a string").to_owned();
                let params = call.get("params").cloned().unwrap_or(Value::Null);
                let envelope = match responder(&action, &params) {
                    Reply::Ok(data) => json!({"status": "ok", "retcode": 0, "data": data, "message": "", "wording": "", "echo": call["echo"]}),
                    Reply::Fail(retcode, wording) => json!({"status": "failed", "retcode": retcode, "data": null,
                                                      "message": "", "wording": wording, "echo": call["echo"]}),
                    Reply::Silent => Value::Null,
                };
                let _ = action_tx.send(ActionCall { action, params });
                if !envelope.is_null() && tx.send(Message::Text(envelope.to_string().into())).await.is_err() { return; }
            }
        }
    }
}

/// A fresh message id, as an implementation assigns them.
pub fn next_message_id() -> i64 {
    static NEXT: AtomicI64 = AtomicI64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A group message event as seed 001's `MessageEvent` model describes it (array format).
pub fn group_message(group_id: i64, user_id: i64, text: &str) -> Value {
    let id = next_message_id();
    json!({
        "time": 1_700_000_000, "self_id": SELF_ID, "post_type": "message", "message_type": "group",
        "sub_type": "normal", "message_id": id, "message_seq": id, "user_id": user_id, "group_id": group_id,
        "message": [{"type": "text", "data": {"text": text}}], "message_format": "array",
        "raw_message": text, "font": 14,
        "sender": {"user_id": user_id, "nickname": "tester", "card": "", "role": "member"},
    })
}

/// A private message event with the message as a CQ string (`message_format: "string"`).
pub fn private_cq_message(user_id: i64, cq: &str) -> Value {
    let id = next_message_id();
    json!({
        "time": 1_700_000_000, "self_id": SELF_ID, "post_type": "message", "message_type": "private",
        "sub_type": "friend", "message_id": id, "message_seq": id, "user_id": user_id,
        "message": cq, "message_format": "string", "raw_message": cq, "font": 14,
        "sender": {"user_id": user_id, "nickname": "tester"},
    })
}

/// A heartbeat meta event announcing `interval_ms`.
pub fn heartbeat(interval_ms: u64) -> Value {
    json!({"time": 1, "self_id": SELF_ID, "post_type": "meta_event", "meta_event_type": "heartbeat",
           "status": {"online": true, "good": true}, "interval": interval_ms})
}

/// The text of a `message` parameter in array form.
pub fn message_text(params: &Value) -> String {
    params["message"]
        .as_array()
        .expect("message sent in array form")
        .iter()
        .filter(|s| s["type"] == "text")
        .filter_map(|s| s["data"]["text"].as_str())
        .collect()
}

//! A fake OneBot 11 HTTP implementation (the LLBot/NapCat side), written from seed 001:
//! `POST /<action>` with a JSON body answers the response envelope (Bearer token checked:
//! 401 without, 403 wrong), and `GET /_events` streams events as server-sent events.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::onebot::{ActionCall, Reply, Responder, default_response};
use super::{Faults, Reporter};

#[derive(Clone)]
struct Shared {
    token: Option<String>,
    responder: Responder,
    actions: mpsc::UnboundedSender<ActionCall>,
    /// The open event stream, if any.
    stream: Arc<Mutex<Option<mpsc::UnboundedSender<String>>>>,
    streams: mpsc::UnboundedSender<()>,
    faults: Reporter,
}

/// The fake.
pub struct FakeHttp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    actions: mpsc::UnboundedReceiver<ActionCall>,
    streams: mpsc::UnboundedReceiver<()>,
    shared: Shared,
    faults: Faults,
}

impl FakeHttp {
    /// Serves on a free loopback port; `token` is required when set.
    pub async fn start(token: Option<&str>) -> FakeHttp {
        Self::with_responder(token, Arc::new(default_response)).await
    }

    /// Like [`FakeHttp::start`], answering actions with `responder`.
    pub async fn with_responder(token: Option<&str>, responder: Responder) -> FakeHttp {
        let (actions_tx, actions) = mpsc::unbounded_channel();
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let faults = Faults::default();
        let shared = Shared {
            faults: faults.reporter(),
            token: token.map(str::to_owned),
            responder,
            actions: actions_tx,
            stream: Arc::default(),
            streams: streams_tx,
        };
        let app = axum::Router::new()
            .route("/_events", axum::routing::get(events))
            .route("/{action}", axum::routing::post(action))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        faults.reporter().spawn(async move { axum::serve(listener, app).await.expect("fake serves") });
        FakeHttp { url, actions, streams, shared, faults }
    }

    /// Waits for the next action the client called.
    pub async fn next_action(&mut self) -> ActionCall {
        self.faults.within("an HTTP action call", self.actions.recv()).await.expect("fake alive")
    }

    /// Waits until a client opened `GET /_events`.
    pub async fn stream_opened(&mut self) {
        self.faults.within("the event stream to open", self.streams.recv()).await.expect("fake alive");
    }

    /// Sends one SSE frame with `event` as its data.
    pub fn push(&self, event: Value) {
        self.push_raw(format!("data: {event}\n\n"));
    }

    /// Sends raw bytes on the event stream.
    pub fn push_raw(&self, text: String) {
        let stream = self.shared.stream.lock().expect("lock");
        stream.as_ref().expect("no event stream open").send(text).expect("stream alive");
    }

    /// Ends the event stream abruptly.
    pub fn drop_stream(&self) {
        self.shared.stream.lock().expect("lock").take();
    }
}

fn check_token(shared: &Shared, headers: &HeaderMap) -> Result<(), StatusCode> {
    let Some(token) = &shared.token else { return Ok(()) };
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => Err(StatusCode::UNAUTHORIZED),
        Some(given) if given == format!("Bearer {token}") => Ok(()),
        Some(_) => Err(StatusCode::FORBIDDEN),
    }
}

async fn action(
    State(shared): State<Shared>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Err(status) = check_token(&shared, &headers) {
        return status.into_response();
    }
    let params: Value = match serde_json::from_str(&body) {
        Ok(params) => params,
        Err(e) => {
            shared.faults.report(format!("`{action}`: the client sent a body that is not JSON ({e}): {body}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let reply = (shared.responder)(&action, &params);
    let _ = shared.actions.send(ActionCall { action, params });
    match reply {
        Reply::Ok(data) => {
            axum::Json(json!({"status": "ok", "retcode": 0, "data": data, "message": "", "wording": ""}))
                .into_response()
        }
        Reply::Fail(retcode, wording) => {
            axum::Json(json!({"status": "failed", "retcode": retcode, "data": null, "message": "", "wording": wording}))
                .into_response()
        }
        Reply::Silent => std::future::pending::<Response>().await,
    }
}

async fn events(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(status) = check_token(&shared, &headers) {
        return status.into_response();
    }
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    *shared.stream.lock().expect("lock") = Some(tx);
    let _ = shared.streams.send(());
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    ([("content-type", "text/event-stream")], axum::body::Body::from_stream(body)).into_response()
}

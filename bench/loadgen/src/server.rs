//! The loopback server every protocol shares: HTTP/1.1 with keep-alive on one port (hyper, on the
//! caller's current-thread runtime). A WebSocket upgrade, on any path, opens the event socket;
//! any other request is answered by the protocol's module. Whatever the client sends, on the
//! event socket or over HTTP, ends up as a [`Note`] on one channel to the session, so replies are
//! matched to events the same way for every protocol.

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::wire::Protocol;
use crate::{milky, onebot11, qq};

/// The server side of the event socket.
type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// What the server's tasks tell the session.
#[derive(Debug)]
pub enum Note {
    /// The client sent a message whose text holds `number` (its first run of digits), at `at`.
    Reply {
        /// The number, if the text has one.
        number: Option<u64>,
        /// When the message arrived.
        at: Instant,
    },
    /// Something the client sent could not be read.
    Malformed,
    /// The event socket ended, for this reason.
    Closed(String),
}

/// The sending end of the session's notes.
#[derive(Clone, Debug)]
pub struct Notes(mpsc::UnboundedSender<Note>);

impl Notes {
    /// Notes a message sent by the client, received now.
    pub fn reply(&self, number: Option<u64>) {
        // A failed send means the session is over; nothing is waiting for the note.
        let _ = self.0.send(Note::Reply { number, at: Instant::now() });
    }

    /// Notes input that could not be read.
    pub fn malformed(&self) {
        let _ = self.0.send(Note::Malformed);
    }

    /// Notes that the event socket ended.
    fn closed(&self, why: String) {
        let _ = self.0.send(Note::Closed(why));
    }
}

/// The event socket, once events may flow on it.
#[derive(Debug)]
pub struct Connected {
    /// Frames to send on it, written by `writer`; a `Close` message closes it.
    pub frames: mpsc::UnboundedSender<Message>,
    /// The task that writes `frames`.
    pub writer: JoinHandle<()>,
}

/// What the protocol modules need from the server.
#[derive(Debug)]
pub struct Shared {
    /// The protocol played.
    pub protocol: Protocol,
    /// The port listened on.
    pub port: u16,
    /// Where replies and malformed input are reported.
    pub notes: Notes,
    /// The next id handed out for a sent message.
    next_id: AtomicU64,
    /// Receives the first event socket once events may flow on it.
    connected: Mutex<Option<oneshot::Sender<Connected>>>,
}

impl Shared {
    /// A fresh id for a message the client sent.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands `socket` (once) to the session, if no other event socket got there first.
    fn connect(&self, socket: &mut Option<Connected>) {
        let waiting = self.connected.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let (Some(socket), Some(waiting)) = (socket.take(), waiting) {
            let _ = waiting.send(socket);
        }
    }

    /// A `Shared` on port 1 with the receiving end of its notes, for tests of the protocol modules.
    #[cfg(test)]
    pub fn for_test(protocol: Protocol) -> (Shared, mpsc::UnboundedReceiver<Note>) {
        let (notes, receiver) = mpsc::unbounded_channel();
        let shared =
            Shared { protocol, port: 1, notes: Notes(notes), next_id: AtomicU64::new(1), connected: Mutex::new(None) };
        (shared, receiver)
    }
}

/// A running server: the event socket once a client opened it, and the notes of every connection.
pub struct Server {
    /// Resolves when the first event socket is ready for events.
    pub connected: oneshot::Receiver<Connected>,
    /// What the server's tasks noted.
    pub notes: mpsc::UnboundedReceiver<Note>,
}

/// Serves `listener` for `protocol` on a background task, until the runtime ends.
pub fn start(listener: TcpListener, protocol: Protocol) -> io::Result<Server> {
    let port = listener.local_addr()?.port();
    let (notes, notes_rx) = mpsc::unbounded_channel();
    let (connected, connected_rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        protocol,
        port,
        notes: Notes(notes),
        next_id: AtomicU64::new(1),
        connected: Mutex::new(Some(connected)),
    });
    tokio::spawn(accept(listener, shared));
    Ok(Server { connected: connected_rx, notes: notes_rx })
}

/// Accepts connections and serves each on its own task.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                eprintln!("warning: accept failed: {e}");
                continue;
            }
        };
        // Small frames, each to go out at once.
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let service = service_fn(move |request| handle(request, shared.clone()));
        // No header timeout: it would arm a timer for every request, and the client is trusted.
        let connection = http1::Builder::new().header_read_timeout(None).serve_connection(TokioIo::new(tcp), service);
        tokio::spawn(async move {
            // A client that hangs up mid-request is its own business.
            let _ = connection.with_upgrades().await;
        });
    }
}

/// Answers one request: an upgrade opens the event socket, anything else goes to the protocol.
async fn handle(mut request: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = websocket_key(&request) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                    event_socket(socket, shared).await;
                }
                Err(e) => eprintln!("warning: WebSocket upgrade failed: {e}"),
            }
        });
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&key) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        return Ok(response);
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (status, body) = match request.into_body().collect().await {
        Err(_) => (400, String::new()),
        Ok(body) => {
            let body = body.to_bytes();
            match shared.protocol {
                Protocol::Onebot11 => (404, String::new()),
                Protocol::Milky => milky::call(&path, &body, &shared),
                Protocol::Qq => qq::call(method.as_str(), &path, &body, &shared),
            }
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The `Sec-WebSocket-Accept` value for a WebSocket upgrade request; `None` for any other request.
fn websocket_key(request: &Request<Incoming>) -> Option<String> {
    let upgrade = request.headers().get(UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    Some(derive_accept_key(request.headers().get(SEC_WEBSOCKET_KEY)?.as_bytes()))
}

/// Serves the event socket: greets the client as the protocol does, hands the socket to the
/// session once events may flow, and answers what the client sends on it until it ends.
async fn event_socket(socket: Socket, shared: Arc<Shared>) {
    let (sink, mut incoming) = socket.split();
    let (frames, queue) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_frames(sink, queue));
    let mut ready = Some(Connected { frames: frames.clone(), writer });
    let send = |frame: String| {
        // A failed send means the writer is gone, which reading notices.
        let _ = frames.send(Message::text(frame));
    };
    match shared.protocol {
        Protocol::Onebot11 => {
            send(onebot11::LIFECYCLE.into());
            shared.connect(&mut ready);
        }
        Protocol::Milky => shared.connect(&mut ready),
        Protocol::Qq => send(qq::HELLO.into()),
    }
    let why = loop {
        let text = match incoming.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(bytes))) => match Utf8Bytes::try_from(bytes) {
                Ok(text) => text,
                Err(_) => {
                    shared.notes.malformed();
                    continue;
                }
            },
            Some(Ok(Message::Close(frame))) => break format!("client closed the connection ({frame:?})"),
            // tungstenite answers pings by itself.
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e.to_string(),
            None => break "connection closed".into(),
        };
        match shared.protocol {
            Protocol::Onebot11 => {
                if let Some(response) = onebot11::on_frame(text.as_str(), &shared) {
                    send(response);
                }
            }
            // Milky clients send nothing on the event socket.
            Protocol::Milky => {}
            Protocol::Qq => match qq::on_frame(text.as_str()) {
                Some(qq::Reaction::Nothing) => {}
                Some(qq::Reaction::Send(frame)) => send(frame.into()),
                Some(qq::Reaction::Start(frame)) => {
                    send(frame.into());
                    shared.connect(&mut ready);
                }
                None => shared.notes.malformed(),
            },
        }
    };
    shared.notes.closed(why);
}

/// Writes queued frames in batches, flushing once per batch; closes the socket when the queue
/// ends or yields a `Close` message.
async fn write_frames(mut sink: SplitSink<Socket, Message>, mut queue: mpsc::UnboundedReceiver<Message>) {
    let mut batch = Vec::with_capacity(256);
    'queue: while queue.recv_many(&mut batch, 256).await > 0 {
        for message in batch.drain(..) {
            if message.is_close() {
                break 'queue;
            }
            if sink.feed(message).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

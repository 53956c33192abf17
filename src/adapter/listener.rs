//! The HTTP listener every receiving transport shares (reverse WebSocket, HTTP POST, webhooks):
//! an axum router served over HTTP/1 (or HTTPS) with a header timeout (which also closes
//! keep-alive connections idle for that long) and a cap on open connections, WebSockets
//! included.
//!
//! Without these, clients that send half a request and wait pile up until the process runs out
//! of file descriptors and legitimate clients time out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::logsafe::RateLimit;

/// Binds a listener for a receiving transport (inside the async runtime) and records the
/// address it got on the bot (`listen = "127.0.0.1:0"` picks a free port; `rhaibot status`
/// shows which).
pub fn bind(bot: &crate::bot::Bot, listen: &str) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    listener.set_nonblocking(true)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(bot = %bot.name, %addr, "listening");
        *bot.listening.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
    }
    TcpListener::from_std(listener)
}

/// How a listener guards itself.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// A request's headers (and an idle keep-alive connection's next request) must arrive
    /// within this; a request body too.
    pub header_timeout: Duration,
    /// Open connections at most; more are closed at once, with one log line per burst.
    pub max_connections: usize,
}

impl Default for Guard {
    fn default() -> Self {
        Guard { header_timeout: Duration::from_secs(10), max_connections: 256 }
    }
}

/// Serves `app` on `listener` until `shutdown`, under `guard`; over TLS when `tls` is given.
/// `name` names the bot in logs.
pub async fn serve(
    name: String,
    listener: TcpListener,
    app: axum::Router,
    guard: Guard,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(guard.max_connections));
    let mut refusals = RateLimit::per_connection();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    crate::warn_limited!(refusals, bot = %name, "cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            crate::warn_limited!(
                refusals,
                bot = %name,
                %peer,
                limit = guard.max_connections,
                "connection cap reached; connection closed (listener max_connections)"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let capped = Capped { stream, _permit: permit };
        let (app, stop, tls) = (app.clone(), shutdown.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(capped), app, guard, peer, stop).await,
                Some(acceptor) => {
                    // The handshake is bounded like the headers that follow it.
                    match tokio::time::timeout(guard.header_timeout, acceptor.accept(capped)).await {
                        Ok(Ok(tls)) => serve_connection(TokioIo::new(tls), app, guard, peer, stop).await,
                        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1 (with upgrades) on one connection until it ends or `stop`.
async fn serve_connection<I>(
    io: I,
    app: axum::Router,
    guard: Guard,
    peer: std::net::SocketAddr,
    stop: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(guard.header_timeout).keep_alive(true);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, "connection ended: {e}");
    }
}

/// A connection holding its place under the cap until it closes, also after an upgrade to a
/// WebSocket (the upgraded socket keeps this wrapper).
struct Capped {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Capped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Reads a request's body, which must arrive within `timeout` and hold at most `limit` bytes
/// (like the headers before it). A refusal is the status to answer with, logged once per
/// burst through `warnings`.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    timeout: Duration,
    bot: &str,
    warnings: &std::sync::Mutex<RateLimit>,
) -> Result<axum::body::Bytes, axum::http::StatusCode> {
    let warnings = || warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => {
            crate::warn_limited!(
                warnings(),
                bot,
                limit,
                "request body too large or cut off; refused with 413 (max_frame_bytes)"
            );
            Err(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
        }
        Err(_) => {
            crate::warn_limited!(warnings(), bot, "request body did not arrive in time; refused with 408");
            Err(axum::http::StatusCode::REQUEST_TIMEOUT)
        }
    }
}

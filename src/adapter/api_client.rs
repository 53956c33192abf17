//! The HTTP/1.1 client protocol APIs are called with (OneBot 11 over HTTP, Milky, the official
//! platform's OpenAPI): kept-alive connections to one origin, plain or over rustls.
//!
//! On these protocols every reply is a request, so whatever a request costs beyond its bytes is
//! paid per reply. The task that makes a call takes an idle connection from the pool, writes the
//! request with one write and reads the answer itself: no connection task and no channels
//! between it and the socket. (hyper's pooled client hands each request to a connection task
//! and the answer back; bench/NOTES.md has what that cost.) A connection carries one request at
//! a time, never a pipeline, so a slow call never holds up another.
//!
//! Answers are read within a size bound, their heads within 64 KiB. Redirects are not
//! followed (an API that redirects is misconfigured: its status is the answer), and proxies
//! from the environment are not used: the APIs are called directly.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::http::uri::Scheme;
use hyper::http::{HeaderMap, Method, Uri, header};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::ClientTls;

/// How long opening a connection (and its TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle connection stays in the pool. A server that closes its end sooner (Node's
/// default is 5 s) is noticed when the connection is next taken, and a new one is opened.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept; one coming back to a full pool is closed. Calls of one chat go one at
/// a time, so a bot has about as many in flight as chats answered at once; a pool smaller than
/// that closes and reopens connections (and TLS sessions) under load.
const MAX_IDLE: usize = 256;

/// The most an answer's head (status line, headers, a chunked body's trailers) may take.
const MAX_HEAD: usize = 64 * 1024;

/// The most headers an answer may have.
const MAX_HEADERS: usize = 96;

/// The longest line of a chunked body's framing (a chunk's size and its extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// Why a request got no answer, or one that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The base URL and path do not make a request target.
    #[error("`{0}` is not a URL this client can call")]
    BadTarget(String),
    /// The server could not be reached, or the connection failed before the answer's head.
    #[error("{0}")]
    Unreachable(String),
    /// The answer's head came with `status`, and its body could not be read.
    #[error("{reason}")]
    Body {
        /// The answer's status.
        status: u16,
        /// Why the body could not be read.
        reason: BodyError,
    },
}

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body (announced or received) is larger than the bound.
    #[error("the answer is larger than {limit} bytes (max_frame_bytes)")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The connection failed while reading it, or its framing is broken.
    #[error("cannot read the answer: {0}")]
    Read(String),
}

/// An answer: its status, its headers and its whole body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The head as received (status line and headers), read by [`Answer::header`]: most
    /// answers' headers are never asked for, so none is built.
    head: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first `name` header's value (`name` in any case), when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        // The head parsed once already, so its lines are well formed (`name: value`, no folded
        // lines, no blank before the colon): they are scanned, not parsed again into a table of
        // every header.
        let name = name.as_bytes();
        let mut rest = self.head.as_slice();
        let mut in_headers = false;
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            rest = rest.get(end + 1..).unwrap_or_default();
            match (in_headers, line.is_empty()) {
                // httparse lets blank lines come before the status line.
                (false, true) => continue,
                (false, false) => in_headers = true,
                // The blank line that ends the head.
                (true, true) => return None,
                (true, false) => {
                    let Some((key, value)) = line.split_at_checked(name.len()) else { continue };
                    if let Some(value) = value.strip_prefix(b":")
                        && key.eq_ignore_ascii_case(name)
                    {
                        return std::str::from_utf8(value.trim_ascii()).ok();
                    }
                }
            }
        }
        None
    }

    /// Where a redirect points (its `Location`, shortened for a log), `None` when this is not one.
    /// Redirects are not followed: an API that redirects has a wrong base URL.
    pub fn redirected_to(&self) -> Option<String> {
        (300..400).contains(&self.status).then(|| {
            let to = self.header("location").unwrap_or("nowhere");
            crate::logsafe::preview(to.as_bytes())
        })
    }
}

/// Where requests go: the base URL's scheme, host and path, parsed once.
#[derive(Debug, Clone)]
struct Base {
    scheme: Scheme,
    /// `host[:port]` as the URL has it, for messages.
    authority: String,
    /// The `Host` header: the authority without the scheme's default port, as hyper sends it.
    host_header: String,
    /// The host to connect to, without an IPv6 address's brackets.
    host: String,
    port: u16,
    /// The base URL's path without its trailing `/`; a request's path is appended to it.
    prefix: String,
}

/// A pooled client for the API at one base URL; clones share the pool.
#[derive(Clone)]
pub struct ApiClient(Arc<Shared>);

struct Shared {
    /// The base, or why the URL cannot be one (each request fails with it).
    base: Result<Base, String>,
    tls: TlsConnector,
    /// Idle connections, the most recently used last.
    idle: Mutex<VecDeque<Idle>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("base", &self.0.base).finish_non_exhaustive()
    }
}

/// A connection back in the pool, and since when.
struct Idle {
    conn: Conn,
    since: Instant,
}

impl ApiClient {
    /// A client for `base` (`http://` or `https://`, with or without a path), using `tls` for
    /// `https://`.
    pub fn new(base: &str, tls: &ClientTls) -> ApiClient {
        crate::tls::ensure_provider();
        // Only HTTP/1.1 is spoken; a server offered h2 by ALPN could pick it.
        let mut config = (**tls).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ApiClient(Arc::new(Shared {
            base: parse_base(base),
            tls: TlsConnector::from(Arc::new(config)),
            idle: Mutex::new(VecDeque::new()),
        }))
    }

    /// Sends `method` to the base URL's path followed by `path_and_query` (which starts with
    /// `/`), with `headers` and, when given, a JSON `body`; reads the answer's body up to `limit`
    /// bytes. Any status is an answer.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        json: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Answer, RequestError> {
        let base = self.0.base.as_ref().map_err(|url| RequestError::BadTarget(url.clone()))?;
        // Joined, not formatted: the formatting machinery cost a reply more than the copy.
        let target = [base.prefix.as_str(), path_and_query].concat();
        if !is_request_target(&target) {
            return Err(RequestError::BadTarget(format!("{}://{}{target}", base.scheme, base.authority)));
        }
        let request = encode(&method, &target, &base.host_header, headers, json.as_deref());
        let (mut conn, reused) = match self.0.take_idle() {
            Some(conn) => (conn, true),
            // Boxed: the connect future (with the TLS handshake's) is twice the rest of this one,
            // which every call's future holds and which is copied whole when it is boxed or
            // spawned; a call on a kept connection never polls it.
            None => (Box::pin(self.connect(base)).await?, false),
        };
        let unsent = |e: io::Error| RequestError::Unreachable(format!("cannot send to {}: {e}", base.authority));
        if let Err(e) = conn.io.send(&request).await {
            if !reused {
                return Err(unsent(e));
            }
            // The server closed the kept connection as the request went out: nothing of it was
            // taken, so it goes on a new one.
            conn = Box::pin(self.connect(base)).await?;
            conn.io.send(&request).await.map_err(unsent)?;
        }
        let (answer, keep) = conn.answer(method == Method::HEAD, limit, &base.authority).await?;
        if keep {
            self.0.put_back(conn);
        }
        Ok(answer)
    }

    /// A new connection to `base`, with its TLS session for `https://`.
    async fn connect(&self, base: &Base) -> Result<Conn, RequestError> {
        let connecting = async {
            let tcp = connect_tcp(&base.host, base.port)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", base.authority))?;
            // A request is one write; Nagle would only hold it back.
            let _ = tcp.set_nodelay(true);
            if base.scheme != Scheme::HTTPS {
                return Ok(Io::Plain(tcp));
            }
            let name = ServerName::try_from(base.host.clone())
                .map_err(|e| format!("`{}` is not a name TLS can check ({e})", base.host))?;
            let tls =
                self.0.tls.connect(name, tcp).await.map_err(|e| format!("TLS with {} failed: {e}", base.authority))?;
            Ok(Io::Tls(Box::new(tls)))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(io)) => Ok(Conn::new(io)),
            Ok(Err(why)) => Err(RequestError::Unreachable(why)),
            Err(_) => Err(RequestError::Unreachable(format!(
                "no connection to {} within {} s",
                base.authority,
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// A TCP connection to the first of `host`'s addresses that answers. Each address gets an
/// equal share of [`CONNECT_TIMEOUT`], so one that drops packets (an unreachable IPv6 route,
/// say) leaves time for the next, as hyper's connector does.
async fn connect_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let share = CONNECT_TIMEOUT / u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("`{host}` has no address"));
    for addr in addrs {
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("{addr} did not answer within {share:?}")),
        }
    }
    Err(last)
}

impl Shared {
    /// The most recently used idle connection that is still open, if any.
    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(Idle { mut conn, since }) = idle.pop_back() {
            if since.elapsed() < IDLE_TIMEOUT && conn.is_quiet() {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request; connections idle too long leave first.
    fn put_back(&self, conn: Conn) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while idle.front().is_some_and(|i| now.duration_since(i.since) >= IDLE_TIMEOUT) {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since: now });
        }
    }
}

/// A connection's socket.
enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    /// Writes all of `request` and pushes it out.
    async fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.write_all(request).await?;
        self.flush().await
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One connection and what has been read from it but not yet used (`buf[start..]`).
struct Conn {
    io: Io,
    buf: Vec<u8>,
    /// Where the unused bytes begin: what is used is passed over, not moved, so an answer in
    /// many small pieces costs time in proportion to its length.
    start: usize,
}

/// The most a connection's buffer keeps between answers; a larger one (grown by a large
/// answer) is let go, so idle connections hold little memory.
const KEPT_BUFFER: usize = 16 * 1024;

/// An answer's head, parsed: what reading its body and keeping the connection depend on.
struct Head {
    status: u16,
    /// HTTP/1.1 (`true`) or 1.0.
    http11: bool,
    /// Its length in bytes, the blank line included.
    len: usize,
    /// Whether it has a `Transfer-Encoding`, and whether the last coding it names is chunked.
    transfer_encoding: Option<bool>,
    /// Its `Content-Length`, when it has one; an error when the header is not a length, or two
    /// differ.
    content_length: Result<Option<usize>, String>,
    /// `Connection: close`.
    close: bool,
}

/// How an answer's body ends.
#[derive(Debug, PartialEq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    /// With the connection: it cannot be kept.
    Close,
}

impl Conn {
    fn new(io: Io) -> Conn {
        Conn { io, buf: Vec::new(), start: 0 }
    }

    /// The bytes read and not yet used.
    fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Passes over `n` unread bytes.
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Whether nothing came on this idle connection since its last answer: no close from the
    /// server (it closed an idle connection), and no bytes no request asked for. A plain socket
    /// is read only when the reactor saw it readable; a TLS one always, since rustls may hold
    /// bytes already taken off the socket (without a system call when the socket has none).
    fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        if let Io::Plain(tcp) = &self.io
            && tcp.poll_read_ready(&mut cx).is_pending()
        {
            return true;
        }
        // Readiness can be stale (a read that filled the buffer exactly leaves it set): only a
        // read says whether anything is there.
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut probe), Poll::Pending)
    }

    /// Reads one answer; whether the connection can carry another request after it.
    async fn answer(&mut self, head_only: bool, limit: usize, from: &str) -> Result<(Answer, bool), RequestError> {
        let head = loop {
            match parse_head(self.unread())
                .map_err(|why| RequestError::Unreachable(format!("{from} answered {why}")))?
            {
                // An interim answer (100 Continue, 103 Early Hints) is followed by the real one.
                Some(head) if (100..200).contains(&head.status) && head.status != 101 => self.consume(head.len),
                Some(head) => break head,
                None if self.unread().len() > MAX_HEAD => {
                    return Err(RequestError::Unreachable(format!(
                        "{from} answered with a head over {MAX_HEAD} bytes"
                    )));
                }
                None => match self.fill().await {
                    Ok(0) => {
                        let when =
                            if self.unread().is_empty() { "before answering" } else { "within the answer's head" };
                        return Err(RequestError::Unreachable(format!("{from} closed the connection {when}")));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(RequestError::Unreachable(format!("cannot read from {from}: {e}"))),
                },
            }
        };
        let raw_head = self.unread()[..head.len].to_vec();
        self.consume(head.len);
        let status = head.status;
        let fail = |reason| RequestError::Body { status, reason };
        let framing = framing(&head, head_only).map_err(|why| fail(BodyError::Read(why)))?;
        if let Framing::Length(n) = framing
            && n > limit
        {
            return Err(fail(BodyError::TooLarge { limit }));
        }
        let body = match framing {
            Framing::None => Ok(Vec::new()),
            Framing::Length(n) => self.body_of_length(n).await,
            Framing::Chunked => self.chunked_body(limit).await,
            Framing::Close => self.body_to_end(limit).await,
        }
        .map_err(fail)?;
        // A message framed both ways, or chunked in HTTP/1.0, may have been read differently by
        // something in between: the connection is not trusted with another (RFC 9112 6.1, 6.3).
        let ambiguous = head.transfer_encoding.is_some() && (!head.http11 || !matches!(head.content_length, Ok(None)));
        let keep = head.http11 && framing != Framing::Close && !ambiguous && !head.close && self.unread().is_empty();
        if keep && self.buf.capacity() > KEPT_BUFFER {
            self.buf = Vec::new();
        }
        Ok((Answer { status, head: raw_head, body }, keep))
    }

    /// Reads more into the buffer; 0 at the connection's end. The unread bytes move to the
    /// buffer's start first, once per read.
    async fn fill(&mut self) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8 * 1024);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads more, where the connection's end is an error.
    async fn fill_body(&mut self) -> Result<(), BodyError> {
        match self.fill().await {
            Ok(0) => Err(BodyError::Read("the connection closed within the answer".into())),
            Ok(_) => Ok(()),
            Err(e) => Err(BodyError::Read(e.to_string())),
        }
    }

    async fn body_of_length(&mut self, n: usize) -> Result<Vec<u8>, BodyError> {
        while self.unread().len() < n {
            self.fill_body().await?;
        }
        if self.start == 0 && self.buf.len() == n && self.buf.capacity() > KEPT_BUFFER {
            // A large body: handed over, not copied.
            return Ok(std::mem::take(&mut self.buf));
        }
        let body = self.unread()[..n].to_vec();
        self.consume(n);
        Ok(body)
    }

    async fn body_to_end(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        loop {
            if self.unread().len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            match self.fill().await {
                Ok(0) => {
                    let body = self.unread().to_vec();
                    self.consume(body.len());
                    return Ok(body);
                }
                Ok(_) => {}
                Err(e) => return Err(BodyError::Read(e.to_string())),
            }
        }
    }

    async fn chunked_body(&mut self, limit: usize) -> Result<Vec<u8>, BodyError> {
        let broken = |what: &str| BodyError::Read(format!("broken chunked framing: {what}"));
        let mut body = Vec::new();
        loop {
            let end = self.line_end(MAX_CHUNK_LINE).await?;
            // The size, then perhaps `;` and extensions (which may hold any byte in quotes).
            let line = &self.unread()[..end];
            let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
            let size = (!digits.is_empty() && digits.len() <= 16 && digits.iter().all(u8::is_ascii_hexdigit))
                .then(|| digits.iter().fold(0u64, |n, &d| n << 4 | u64::from((d as char).to_digit(16).unwrap_or(0))))
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| broken("a size that is not hexadecimal"))?;
            self.consume(end + 2);
            if size == 0 {
                // Trailers, then the blank line.
                let mut read = 0;
                loop {
                    let end = self.line_end(MAX_HEAD.saturating_sub(read)).await?;
                    read += end + 2;
                    self.consume(end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            if size > limit - body.len() {
                return Err(BodyError::TooLarge { limit });
            }
            while self.unread().len() < size + 2 {
                self.fill_body().await?;
            }
            let chunk = &self.unread()[..size + 2];
            if &chunk[size..] != b"\r\n" {
                return Err(broken("a chunk longer than its size"));
            }
            body.extend_from_slice(&chunk[..size]);
            self.consume(size + 2);
        }
    }

    /// Where the first unread line ends (the index of its CRLF in the unread bytes), reading
    /// until one has come; a line longer than `max` is an error.
    async fn line_end(&mut self, max: usize) -> Result<usize, BodyError> {
        let mut searched = 0;
        loop {
            let unread = self.unread();
            if let Some(i) = unread[searched..].windows(2).position(|w| w == b"\r\n") {
                return Ok(searched + i);
            }
            searched = unread.len().saturating_sub(1);
            if searched > max {
                return Err(BodyError::Read(format!("a chunked body's line is over {max} bytes")));
            }
            self.fill_body().await?;
        }
    }
}

/// Parses the answer's head at the start of `buf`; `None` until all of it has come.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    // Uninitialised: zeroing 96 slots (3 KiB) on every parse cost more than reading the head.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("what is not HTTP/1.1 ({e}): {}", crate::logsafe::preview(buf))),
    };
    let mut head = Head {
        status: parsed.code.unwrap_or(0),
        http11: parsed.version == Some(1),
        len,
        transfer_encoding: None,
        content_length: Ok(None),
        close: false,
    };
    for h in parsed.headers.iter() {
        let text = std::str::from_utf8(h.value);
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last header says whether the body is chunked.
            let last = text.ok().and_then(|v| v.rsplit(',').next());
            head.transfer_encoding = Some(last.is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = head.content_length.and_then(|known| content_length(text.unwrap_or("x"), known));
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close |= text.is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        }
    }
    Ok(Some(head))
}

/// The length a `Content-Length` value gives, agreeing with the one `known` so far: digits
/// only (`parse` would take a sign), a list of equal lengths at most.
fn content_length(value: &str, known: Option<usize>) -> Result<Option<usize>, String> {
    let mut length = known;
    for part in value.split(',') {
        let part = part.trim();
        let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| format!("a Content-Length of {value:?}"))?;
        if length.is_some_and(|l| l != n) {
            return Err("two different Content-Lengths".into());
        }
        length = Some(n);
    }
    Ok(length)
}

/// How the body after `head` ends (RFC 9112 section 6.3).
fn framing(head: &Head, head_only: bool) -> Result<Framing, String> {
    if head_only || matches!(head.status, 204 | 304) {
        return Ok(Framing::None);
    }
    if let Some(chunked) = head.transfer_encoding {
        return Ok(if chunked { Framing::Chunked } else { Framing::Close });
    }
    Ok(head.content_length.clone()?.map_or(Framing::Close, Framing::Length))
}

/// Whether `target` can stand in a request line: a path (and query) of visible ASCII.
fn is_request_target(target: &str) -> bool {
    target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

/// The request's bytes: its head, then the body. The caller's `headers` come after the ones this
/// client sets and never replace them.
fn encode(method: &Method, target: &str, authority: &str, headers: &HeaderMap, body: Option<&[u8]>) -> Vec<u8> {
    let body_len = body.map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(128 + target.len() + authority.len() + 64 * headers.len() + body_len);
    for part in [method.as_str(), " ", target, " HTTP/1.1\r\nhost: ", authority, "\r\naccept: application/json\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    if body.is_some() {
        out.extend_from_slice(b"content-type: application/json\r\n");
    }
    if body.is_some() || !matches!(*method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS) {
        // Writing to a Vec cannot fail.
        let _ = write!(out, "content-length: {body_len}\r\n");
    }
    let own = [header::HOST, header::ACCEPT, header::CONTENT_TYPE, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];
    for (name, value) in headers.iter().filter(|(name, _)| !own.contains(name)) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// Whether `url` can be an API's base URL: `http://` or `https://`, a host, no query, no user.
pub fn check_base(url: &str) -> Result<(), String> {
    parse_base(url).map(drop)
}

/// The scheme, host and path of `url`.
fn parse_base(url: &str) -> Result<Base, String> {
    let url = url.trim_end_matches('/');
    let uri: Uri = url.parse().map_err(|e| format!("{url} ({e})"))?;
    let scheme = uri
        .scheme()
        .filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS)
        .cloned()
        .ok_or_else(|| format!("{url} (not http:// or https://)"))?;
    let authority = uri.authority().ok_or_else(|| format!("{url} (no host)"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{url} (a user and password in the URL are not sent; use access_token)"));
    }
    if uri.query().is_some() {
        return Err(format!("{url} (a base URL takes no query)"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host_header =
        if authority.port_u16() == Some(default_port) { authority.host() } else { authority.as_str() }.to_owned();
    Ok(Base {
        scheme,
        authority: authority.as_str().to_owned(),
        host_header,
        host,
        port,
        prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::http::HeaderValue;

    #[test]
    fn a_base_keeps_its_path_and_refuses_what_is_not_one() {
        let base = parse_base("http://127.0.0.1:3000/milky/").unwrap();
        assert_eq!(
            (base.scheme, base.authority.as_str(), base.host.as_str(), base.port, base.prefix.as_str()),
            (Scheme::HTTP, "127.0.0.1:3000", "127.0.0.1", 3000, "/milky")
        );
        let base = parse_base("https://api.sgroup.qq.com").unwrap();
        assert_eq!((base.prefix.as_str(), base.port), ("", 443));
        assert_eq!(parse_base("https://h:443/").unwrap().host_header, "h");
        assert_eq!(parse_base("http://[::1]:80").unwrap().host_header, "[::1]");
        assert_eq!(parse_base("http://[::1]:8080").unwrap().host, "::1");
        for bad in
            ["ftp://x/", "127.0.0.1:3000", "http://x/?a=1", "http://exa mple/", "http://u:p@x/", "http://例子.测试/"]
        {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_is_one_buffer_with_the_clients_headers_first() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let request = encode(&Method::POST, "/api/x", "h:1", &headers, Some(b"{}"));
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "POST /api/x HTTP/1.1\r\nhost: h:1\r\naccept: application/json\r\ncontent-type: application/json\r\n\
             content-length: 2\r\nauthorization: Bearer t\r\n\r\n{}"
        );
        let get = String::from_utf8(encode(&Method::GET, "/a", "h", &HeaderMap::new(), None)).unwrap();
        assert_eq!(get, "GET /a HTTP/1.1\r\nhost: h\r\naccept: application/json\r\n\r\n");
        let put = String::from_utf8(encode(&Method::PUT, "/a", "h", &HeaderMap::new(), None)).unwrap();
        assert!(put.ends_with("content-length: 0\r\n\r\n"), "{put}");
        assert!(!is_request_target("/a b") && !is_request_target("a") && !is_request_target("/é"));
    }

    #[tokio::test]
    async fn a_kept_connection_lets_a_large_answers_buffer_go() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 1 << 20).into_bytes();
            answer.resize(answer.len() + (1 << 20), b'x');
            stream.write_all(&answer).await.unwrap();
            stream
        });
        let mut conn = Conn::new(Io::Plain(TcpStream::connect(addr).await.unwrap()));
        let (answer, keep) = conn.answer(false, 2 << 20, "test").await.unwrap();
        assert_eq!((answer.body.len(), keep), (1 << 20, true));
        assert!(conn.buf.capacity() <= KEPT_BUFFER, "an idle connection holds {} bytes", conn.buf.capacity());
        drop(server.await);
    }

    /// What `conn.answer` makes of `pieces` written one by one by a loopback server, which then
    /// keeps the connection open (`close`: closes it).
    fn answer_of(pieces: Vec<Vec<u8>>, close: bool, limit: usize) -> Result<(Answer, bool), RequestError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                for piece in pieces {
                    if stream.write_all(&piece).await.is_err() {
                        break;
                    }
                    // The client may read between pieces: answers come in any split.
                    tokio::task::yield_now().await;
                }
                if close {
                    drop(stream);
                    return None;
                }
                Some(stream)
            });
            let mut conn = Conn::new(Io::Plain(TcpStream::connect(addr).await.unwrap()));
            let answer = conn.answer(false, limit, "test").await;
            drop(server.await);
            answer
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn a_chunked_body_in_any_chunks_and_any_split_reads_whole(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            sizes in proptest::collection::vec(1usize..40, 1..20),
            splits in proptest::collection::vec(1usize..50, 1..30),
            extension in proptest::prelude::any::<bool>(),
        ) {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            let mut rest = &body[..];
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, after) = rest.split_at((*size).min(rest.len()));
                let ext: &[u8] = if extension { b";x=\"\xff;\"" } else { b"" };
                wire.extend_from_slice(format!("{:X}", chunk.len()).as_bytes());
                wire.extend_from_slice(ext);
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
                rest = after;
            }
            wire.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
            let mut pieces = Vec::new();
            let mut at = 0;
            for n in splits.iter().cycle() {
                if at == wire.len() {
                    break;
                }
                let end = (at + n).min(wire.len());
                pieces.push(wire[at..end].to_vec());
                at = end;
            }
            let (answer, keep) = answer_of(pieces, false, 300).expect("read");
            proptest::prop_assert_eq!(answer.body, body);
            proptest::prop_assert!(keep);
        }

        #[test]
        fn any_bytes_after_a_status_line_end_in_an_answer_within_bounds_or_an_error(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            framing in proptest::sample::select(vec!["", "Content-Length: 10\r\n", "Transfer-Encoding: chunked\r\n"]),
            blank in proptest::prelude::any::<bool>(),
        ) {
            let mut wire = format!("HTTP/1.1 200 OK\r\n{framing}{}", if blank { "\r\n" } else { "" }).into_bytes();
            wire.extend_from_slice(&tail);
            if let Ok((answer, _)) = answer_of(vec![wire], true, 64) {
                proptest::prop_assert!(answer.body.len() <= 64);
            }
        }
    }

    #[test]
    fn framing_follows_the_head() {
        let head = |raw: &str| parse_head(raw.as_bytes()).unwrap().unwrap();
        let of = |raw: &str| framing(&head(raw), false);
        assert!(matches!(of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), Ok(Framing::Length(5))));
        assert!(matches!(of("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), Ok(Framing::Length(5))));
        assert!(of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n").is_err());
        assert!(of("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(of("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n").is_err());
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n";
        assert!(matches!(of(chunked), Ok(Framing::Chunked)));
        assert!(matches!(of("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), Ok(Framing::Close)));
        assert!(matches!(of("HTTP/1.0 200 OK\r\n\r\n"), Ok(Framing::Close)));
        assert!(matches!(of("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), Ok(Framing::None)));
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").http11);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n").close);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n").close);
    }

    #[test]
    fn an_answers_headers_are_read_from_its_head() {
        let raw = "HTTP/1.1 302 Found\r\nX-Tps-Trace-ID: abc\r\nlocation:\t/there \r\nX-Tps-Trace-Id: second\r\n\
                   Empty:\r\nBlank:  \r\nBare: lf\n\r\nAfter: the head\r\n";
        let answer = Answer { status: 302, head: raw.as_bytes().to_vec(), body: Vec::new() };
        assert_eq!(answer.header("x-tps-trace-id"), Some("abc"), "the first, in any case");
        assert_eq!(answer.header("Location"), Some("/there"));
        assert_eq!(answer.header("content-type"), None);
        assert_eq!(answer.redirected_to().as_deref(), Some("/there"));
        assert_eq!((answer.header("empty"), answer.header("blank")), (Some(""), Some("")));
        assert_eq!(answer.header("bare"), Some("lf"), "a line may end in a bare LF, as httparse allows");
        assert_eq!(answer.header("after"), None, "the head ends at its blank line");
        assert_eq!(answer.header("HTTP/1.1 302 Found"), None, "the status line is no header");
        let raw = "\r\n\nHTTP/1.1 200 OK\r\nX-Tps-Trace-Id: t\r\n\r\n";
        assert!(parse_head(raw.as_bytes()).unwrap().is_some(), "httparse takes blank lines first");
        let answer = Answer { status: 200, head: raw.as_bytes().to_vec(), body: Vec::new() };
        assert_eq!(answer.header("x-tps-trace-id"), Some("t"));
    }
}

//! The keys of a OneBot 11 `[[bot]]`, as written and validated.

use std::time::Duration;

use serde::Deserialize;

use crate::adapter::listener::Guard;
use crate::config::{Backoff, BotKeys, ConfigError, Secret};

/// How a OneBot 11 bot is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportName {
    /// Forward WebSocket: the runtime connects to the implementation's universal endpoint.
    Ws,
    /// Forward WebSocket with split endpoints: `<url>/api` for calls, `<url>/event` for events.
    WsSplit,
    /// Reverse WebSocket: the implementation connects to the runtime (`listen`).
    ReverseWs,
    /// HTTP API for calls (`url`), events by HTTP POST to `listen`, by SSE, or not at all.
    Http,
}

/// How an HTTP bot receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsName {
    /// The implementation POSTs events to `listen` (HTTP POST / webhook).
    Post,
    /// The runtime reads `GET <url>/_events` (server-sent events).
    Sse,
    /// No events (calls only).
    None,
}

/// A OneBot 11 `[[bot]]` table as written (`protocol = "onebot11"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBot {
    /// Name used in logs and by scripts to pick a bot.
    pub name: Option<String>,
    /// The transport (defaults to `ws`).
    pub transport: Option<TransportName>,
    /// Endpoint URL, e.g. `ws://127.0.0.1:3001/` or `http://127.0.0.1:3000`.
    pub url: Option<String>,
    /// Address the runtime listens on (reverse WebSocket, HTTP POST), e.g. `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Path the HTTP POST receiver serves (default `/`).
    pub path: Option<String>,
    /// Only this account may connect (reverse WebSocket `X-Self-ID`).
    pub self_id: Option<i64>,
    /// How an HTTP bot receives events: `post`, `sse` or `none`.
    pub events: Option<EventsName>,
    /// HMAC-SHA1 secret of HTTP POST events (`X-Signature`).
    pub secret: Option<String>,
    /// Environment variable holding the secret (wins over `secret`).
    pub secret_env: Option<String>,
    /// How long an HTTP POST waits for callbacks to ask for a quick operation.
    pub quick_timeout_ms: Option<u64>,
    /// Access token sent as `Authorization: Bearer`.
    pub access_token: Option<String>,
    /// Environment variable holding the access token (wins over `access_token`).
    pub access_token_env: Option<String>,
    /// First reconnect delay in milliseconds.
    pub reconnect_min_ms: Option<u64>,
    /// Longest reconnect delay in milliseconds.
    pub reconnect_max_ms: Option<u64>,
    /// Largest frame accepted from the wire, in bytes.
    pub max_frame_bytes: Option<usize>,
    /// Milliseconds a listener waits for a request's headers or body (reverse WS, HTTP POST).
    pub header_timeout_ms: Option<u64>,
    /// Connections a listener keeps open at most (reverse WS, HTTP POST).
    pub max_connections: Option<usize>,
}

/// Settings of a OneBot 11 bot.
#[derive(Debug, Clone)]
pub struct OneBotConfig {
    /// How it is reached.
    pub transport: OneBotTransport,
    /// Bearer token (sent, or required from the other end), empty when none.
    pub access_token: Secret,
    /// Reconnect back-off bounds.
    pub backoff: Backoff,
    /// Largest accepted frame or body.
    pub max_frame_bytes: usize,
    /// Timeouts and connection cap of a receiving transport's listener.
    pub listener: Guard,
    /// TLS for `wss://` and `https://` URLs.
    pub tls: crate::tls::ClientTls,
}

/// A OneBot 11 transport.
#[derive(Debug, Clone)]
pub enum OneBotTransport {
    /// Forward WebSocket to `url` (universal, or split into `/api` and `/event`).
    Ws {
        /// Endpoint.
        url: String,
        /// Split endpoints.
        split: bool,
    },
    /// Reverse WebSocket server.
    ReverseWs {
        /// Listen address.
        listen: String,
        /// Only this account may connect.
        self_id: Option<i64>,
    },
    /// HTTP API at `url`, with events from `events`.
    Http {
        /// API base URL.
        url: String,
        /// Event source.
        events: HttpEvents,
    },
}

/// Where an HTTP bot's events come from.
#[derive(Debug, Clone)]
pub enum HttpEvents {
    /// None.
    None,
    /// `GET <url>/_events`.
    Sse,
    /// POSTed to the runtime.
    Post {
        /// Listen address.
        listen: String,
        /// Path served.
        path: String,
        /// HMAC-SHA1 secret; empty accepts unsigned events.
        secret: Secret,
        /// How long to wait for a quick operation.
        quick_timeout: Duration,
    },
}

/// Checks the keys of a OneBot 11 `[[bot]]`.
pub fn validate(b: &RawBot, keys: &BotKeys<'_>) -> Result<OneBotConfig, ConfigError> {
    let access_token = keys.secret(&b.access_token, &b.access_token_env, "access_token")?;
    let url = |schemes: &[&str], example: &str| keys.url(&b.url, schemes, example);
    let listen = || keys.listen(&b.listen);
    let transport = match b.transport.unwrap_or(TransportName::Ws) {
        TransportName::Ws => OneBotTransport::Ws { url: url(&["ws", "wss"], "ws://127.0.0.1:3001/")?, split: false },
        TransportName::WsSplit => OneBotTransport::Ws { url: url(&["ws", "wss"], "ws://127.0.0.1:3001")?, split: true },
        TransportName::ReverseWs => OneBotTransport::ReverseWs { listen: listen()?, self_id: b.self_id },
        TransportName::Http => {
            let events = match b.events.unwrap_or(EventsName::None) {
                EventsName::None => HttpEvents::None,
                EventsName::Sse => HttpEvents::Sse,
                EventsName::Post => HttpEvents::Post {
                    listen: listen()?,
                    path: keys.route_path(&b.path)?,
                    secret: keys.secret(&b.secret, &b.secret_env, "secret")?,
                    quick_timeout: Duration::from_millis(b.quick_timeout_ms.unwrap_or(3000)),
                },
            };
            OneBotTransport::Http { url: url(&["http", "https"], "http://127.0.0.1:3000")?, events }
        }
    };
    let backoff = keys.backoff(b.reconnect_min_ms, b.reconnect_max_ms)?;
    let listener = keys.guard(b.header_timeout_ms, b.max_connections)?;
    Ok(OneBotConfig {
        transport,
        access_token,
        backoff,
        max_frame_bytes: b.max_frame_bytes.unwrap_or(16 << 20),
        listener,
        tls: keys.tls.clone(),
    })
}

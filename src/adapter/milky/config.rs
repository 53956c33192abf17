//! The keys of a Milky `[[bot]]`, as written and validated.

use serde::Deserialize;

use crate::adapter::listener::Guard;
use crate::config::{Backoff, BotKeys, ConfigError, Secret};

/// How a Milky bot receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsName {
    /// WebSocket `GET <url>/event` (the default).
    Ws,
    /// Server-sent events, `GET <url>/event` without an upgrade.
    Sse,
    /// The implementation POSTs events to `listen` (webhook).
    Webhook,
    /// No events (calls only).
    None,
}

/// A Milky `[[bot]]` table as written (`protocol = "milky"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBot {
    /// Name used in logs and by scripts to pick a bot.
    pub name: Option<String>,
    /// The implementation's base URL, e.g. `http://127.0.0.1:3000`: calls go to
    /// `<url>/api/<action>`, events come from `<url>/event`.
    pub url: Option<String>,
    /// How events arrive: `ws` (default), `sse`, `webhook` or `none`.
    pub events: Option<EventsName>,
    /// Access token: `Authorization: Bearer` on calls and on the event connection (not the
    /// webhook's: Milky's webhook carries no token, see `webhook_token`).
    pub access_token: Option<String>,
    /// Environment variable holding the access token (wins over `access_token`).
    pub access_token_env: Option<String>,
    /// Send the token on the event connection as `?access_token=` instead of a header.
    pub token_in_query: Option<bool>,
    /// Webhook: the address to listen on, e.g. `127.0.0.1:8082`.
    pub listen: Option<String>,
    /// Webhook: the path served (default `/`).
    pub path: Option<String>,
    /// Webhook: a token the sender must present as `Authorization: Bearer` (none by default:
    /// Milky 1.0 defines no webhook authentication, and LLBot and Lagrange send none).
    pub webhook_token: Option<String>,
    /// Environment variable holding the webhook token (wins over `webhook_token`).
    pub webhook_token_env: Option<String>,
    /// Webhook: take events beyond loopback with no `webhook_token`, from anyone who can reach
    /// the address (refused unless set).
    pub webhook_open: Option<bool>,
    /// First reconnect delay in milliseconds.
    pub reconnect_min_ms: Option<u64>,
    /// Longest reconnect delay in milliseconds.
    pub reconnect_max_ms: Option<u64>,
    /// Largest event accepted, in bytes.
    pub max_frame_bytes: Option<usize>,
    /// Webhook: milliseconds a request's headers and body may take.
    pub header_timeout_ms: Option<u64>,
    /// Webhook: connections kept open at most.
    pub max_connections: Option<usize>,
}

/// A Milky bot's settings.
#[derive(Debug, Clone)]
pub struct MilkyConfig {
    /// The implementation's base URL, without a trailing `/`.
    pub url: String,
    /// How events arrive.
    pub events: Events,
    /// Bearer token, empty when none.
    pub access_token: Secret,
    /// Token in the event connection's query instead of a header.
    pub token_in_query: bool,
    /// Reconnect back-off bounds.
    pub backoff: Backoff,
    /// Largest accepted event.
    pub max_frame_bytes: usize,
    /// TLS for an `https://` URL.
    pub tls: crate::tls::ClientTls,
}

/// Where a Milky bot's events come from.
#[derive(Debug, Clone)]
pub enum Events {
    /// WebSocket `<url>/event`.
    Ws,
    /// SSE `<url>/event`.
    Sse,
    /// POSTed to the runtime.
    Webhook {
        /// Listen address.
        listen: String,
        /// Path served.
        path: String,
        /// Timeouts and connection cap.
        guard: Guard,
        /// Bearer token required of the sender, empty when none.
        token: Secret,
    },
    /// None.
    None,
}

/// Checks the keys of a Milky `[[bot]]`.
pub fn validate(b: &RawBot, keys: &BotKeys<'_>) -> Result<MilkyConfig, ConfigError> {
    let access_token = keys.secret(&b.access_token, &b.access_token_env, "access_token")?;
    let url = keys.url(&b.url, &["http", "https"], "http://127.0.0.1:3000")?;
    let events = match b.events.unwrap_or(EventsName::Ws) {
        EventsName::Ws => Events::Ws,
        EventsName::Sse => Events::Sse,
        EventsName::None => Events::None,
        EventsName::Webhook => {
            // The real protocol (the seed has only /api and /event): Milky's guide says "WebHook
            // 不支持任何方式的鉴权", and LLBot and Lagrange send no header, so the API token is
            // not asked of the sender. A listener beyond loopback with no token of its own would
            // take events from anyone, which scripts act on: refused unless the config says so.
            let listen = keys.listen(&b.listen)?;
            let token = keys.secret(&b.webhook_token, &b.webhook_token_env, "webhook_token")?;
            let loopback = listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
            if !loopback && token.0.is_empty() && b.webhook_open != Some(true) {
                return Err(keys.invalid(
                    "webhook_token",
                    format!(
                        "a token: a webhook listening on {listen} (not loopback) would take events from anyone. \
                         Set webhook_token if the implementation sends one, listen on 127.0.0.1 (behind a proxy \
                         that checks the sender), or set webhook_open = true to take that risk"
                    ),
                ));
            }
            let guard = keys.guard(b.header_timeout_ms, b.max_connections)?;
            Events::Webhook { listen, path: keys.route_path(&b.path)?, guard, token }
        }
    };
    Ok(MilkyConfig {
        url: url.trim_end_matches('/').to_owned(),
        events,
        access_token,
        token_in_query: b.token_in_query.unwrap_or(false),
        backoff: keys.backoff(b.reconnect_min_ms, b.reconnect_max_ms)?,
        max_frame_bytes: b.max_frame_bytes.unwrap_or(16 << 20),
        tls: keys.tls.clone(),
    })
}

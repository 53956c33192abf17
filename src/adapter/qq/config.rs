//! The keys of an official-platform `[[bot]]`, as written and validated.

use std::path::PathBuf;

use serde::Deserialize;

use crate::adapter::listener::Guard;
use crate::config::{Backoff, BotKeys, ConfigError, Secret};

/// The platform's OpenAPI host today (the older `api.sgroup.qq.com` still answers; SDKs use it).
pub const DEFAULT_API: &str = "https://api.bot.qq.com";

/// Where AccessTokens come from.
pub const DEFAULT_TOKEN_HOST: &str = "https://bots.qq.com";

/// How an official-platform bot receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsName {
    /// The WebSocket gateway (the default).
    Gateway,
    /// The platform POSTs events to `listen` (the platform's recommended way).
    Webhook,
    /// No events (calls only).
    None,
}

/// An official-platform `[[bot]]` table as written (`protocol = "qq"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBot {
    /// Name used in logs and by scripts to pick a bot.
    pub name: Option<String>,
    /// The bot's AppID (from the developer console, q.qq.com).
    pub app_id: Option<String>,
    /// The bot's AppSecret.
    pub secret: Option<String>,
    /// Environment variable holding the AppSecret (wins over `secret`).
    pub secret_env: Option<String>,
    /// How events arrive: `gateway` (default), `webhook` or `none`.
    pub events: Option<EventsName>,
    /// The OpenAPI base URL (default `https://api.bot.qq.com`).
    pub api_url: Option<String>,
    /// The AccessToken host (default `https://bots.qq.com`).
    pub token_url: Option<String>,
    /// Gateway: the intents bitmask; by default computed from the events scripts handle.
    pub intents: Option<u32>,
    /// Gateway: how many shards to run (default: what `/gateway/bot` recommends).
    pub shards: Option<u32>,
    /// Webhook: the address to listen on, e.g. `127.0.0.1:8443`.
    pub listen: Option<String>,
    /// Webhook: the path served (default `/`).
    pub path: Option<String>,
    /// Webhook: serve HTTPS with this PEM certificate chain (with `tls_key`); without them the
    /// receiver speaks plain HTTP, for a TLS-terminating proxy in front.
    pub tls_cert: Option<PathBuf>,
    /// Webhook: the PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// OpenAPI calls in flight at most.
    pub max_in_flight: Option<usize>,
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

/// An official-platform bot's settings.
#[derive(Debug, Clone)]
pub struct QqConfig {
    /// AppID.
    pub app_id: String,
    /// AppSecret (also the seed of the webhook's Ed25519 key).
    pub secret: Secret,
    /// How events arrive.
    pub events: Events,
    /// OpenAPI base URL, without a trailing `/`.
    pub api_url: String,
    /// AccessToken host, without a trailing `/`.
    pub token_url: String,
    /// OpenAPI calls in flight at most.
    pub max_in_flight: usize,
    /// Reconnect back-off bounds.
    pub backoff: Backoff,
    /// Largest accepted event.
    pub max_frame_bytes: usize,
    /// TLS for outgoing HTTPS and `wss://`.
    pub tls: crate::tls::ClientTls,
}

/// Where an official-platform bot's events come from.
#[derive(Debug, Clone)]
pub enum Events {
    /// The gateway.
    Gateway {
        /// A fixed intents bitmask, or computed from the handlers.
        intents: Option<u32>,
        /// A fixed shard count, or what the platform recommends.
        shards: Option<u32>,
    },
    /// The webhook.
    Webhook {
        /// Listen address.
        listen: String,
        /// Path served.
        path: String,
        /// Timeouts and connection cap.
        guard: Guard,
        /// `(cert, key)` PEM files when the receiver serves HTTPS itself.
        tls: Option<(PathBuf, PathBuf)>,
    },
    /// None.
    None,
}

/// Checks the keys of an official-platform `[[bot]]`.
pub fn validate(b: &RawBot, keys: &BotKeys<'_>) -> Result<QqConfig, ConfigError> {
    let app_id = b
        .app_id
        .clone()
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| keys.invalid("app_id", "the bot's AppID (developer console, q.qq.com)".into()))?;
    // Sent as a header with every call.
    if hyper::http::HeaderValue::from_str(&app_id).is_err() {
        return Err(keys.invalid("app_id", "the bot's AppID, without control characters".into()));
    }
    let secret = keys.secret(&b.secret, &b.secret_env, "secret")?;
    if secret.0.is_empty() {
        return Err(
            keys.invalid("secret", "the bot's AppSecret (or secret_env naming a variable that holds it)".into())
        );
    }
    let https = |key: &str, value: &Option<String>, default: &str| -> Result<String, ConfigError> {
        let url = value.clone().unwrap_or_else(|| default.to_owned());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(keys.invalid(key, format!("an https:// URL, e.g. \"{default}\", got \"{url}\"")));
        }
        crate::adapter::api_client::check_base(&url).map_err(|why| keys.invalid(key, format!("a base URL: {why}")))?;
        Ok(url.trim_end_matches('/').to_owned())
    };
    let base = keys.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mode = b.events.unwrap_or(EventsName::Gateway);
    // A key of the other way of receiving events is a mistake, not something to ignore.
    let webhook_keys = [
        ("listen", b.listen.is_some()),
        ("path", b.path.is_some()),
        ("tls_cert", b.tls_cert.is_some()),
        ("tls_key", b.tls_key.is_some()),
        ("header_timeout_ms", b.header_timeout_ms.is_some()),
        ("max_connections", b.max_connections.is_some()),
    ];
    let gateway_keys = [("intents", b.intents.is_some()), ("shards", b.shards.is_some())];
    let stray = match mode {
        EventsName::Gateway => webhook_keys.iter().find(|k| k.1),
        EventsName::Webhook => gateway_keys.iter().find(|k| k.1),
        EventsName::None => webhook_keys.iter().chain(&gateway_keys).find(|k| k.1),
    };
    if let Some((key, _)) = stray {
        let wanted = if webhook_keys.iter().any(|k| k.0 == *key) { "webhook" } else { "gateway" };
        return Err(keys.invalid(key, format!("events = \"{wanted}\" for this key (events is {mode:?})")));
    }
    let events = match mode {
        EventsName::Gateway => {
            if b.shards == Some(0) {
                return Err(keys.invalid("shards", "at least 1".into()));
            }
            Events::Gateway { intents: b.intents, shards: b.shards }
        }
        EventsName::None => Events::None,
        EventsName::Webhook => {
            let listen = keys.listen(&b.listen)?;
            let guard = keys.guard(b.header_timeout_ms, b.max_connections)?;
            let tls = match (&b.tls_cert, &b.tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => {
                    let (cert, key) = (base.join(cert), base.join(key));
                    crate::tls::server(&cert, &key).map_err(|e| keys.invalid("tls_cert", e.to_string()))?;
                    Some((cert, key))
                }
                _ => return Err(keys.invalid("tls_cert", "tls_cert and tls_key together, or neither".into())),
            };
            let path = keys.route_path(&b.path)?;
            Events::Webhook { listen, path, guard, tls }
        }
    };
    let max_in_flight = b.max_in_flight.unwrap_or(16);
    if max_in_flight == 0 {
        return Err(keys.invalid("max_in_flight", "at least 1".into()));
    }
    Ok(QqConfig {
        app_id,
        secret,
        events,
        api_url: https("api_url", &b.api_url, DEFAULT_API)?,
        token_url: https("token_url", &b.token_url, DEFAULT_TOKEN_HOST)?,
        max_in_flight,
        backoff: keys.backoff(b.reconnect_min_ms, b.reconnect_max_ms)?,
        max_frame_bytes: b.max_frame_bytes.unwrap_or(16 << 20),
        tls: keys.tls.clone(),
    })
}

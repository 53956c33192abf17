//! Opening a client WebSocket, for every protocol that connects out (OneBot's forward
//! WebSocket, Milky's event socket): the access token as a Bearer header or in the query, a
//! frame-size backstop, a small read buffer, a connect timeout, and TLS for `wss://`.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client WebSocket.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How the token goes with the upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIn {
    /// `Authorization: Bearer <token>`.
    Header,
    /// `?access_token=<token>`.
    Query,
}

/// Connects to `url`, sending `token` (when not empty) as `token_in` says. Frames are limited
/// per message by the caller (an oversized one is skipped with a log line, not a dropped
/// connection); tungstenite's own cap is a backstop of four times `max_frame_bytes`.
/// `url` with `access_token=<token>` added to its query. The token is encoded as a query
/// component, so `+ / = & #` and spaces arrive as written; a space goes as %20, which form
/// decoding and plain percent decoding both read back (`+` would not be).
pub fn with_token_query(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let token = url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>().replace('+', "%20");
    format!("{url}{sep}access_token={token}")
}

pub async fn connect(
    url: &str,
    token: &str,
    token_in: TokenIn,
    max_frame_bytes: usize,
    tls: &crate::tls::ClientTls,
) -> Result<Socket, String> {
    let url = match token_in {
        TokenIn::Query if !token.is_empty() => with_token_query(url, token),
        _ => url.to_owned(),
    };
    let mut request = url.as_str().into_client_request().map_err(|e| e.to_string())?;
    if token_in == TokenIn::Header && !token.is_empty() {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        request.headers_mut().insert("Authorization", value);
    }
    let backstop = max_frame_bytes.saturating_mul(4).max(64 << 20);
    // A 4 KiB read buffer: tungstenite zero-fills up to this much of the buffer before every
    // read, and events are far smaller than its 128 KiB default. At 16 KiB the zeroing was
    // 2-3k instructions per event; at 4 KiB a burst takes more reads (OneBot at 64 outstanding:
    // 0.05 -> 0.14 per event), which cost no more CPU than the zeroing they replace.
    let config = WebSocketConfig::default()
        .max_message_size(Some(backstop))
        .max_frame_size(Some(backstop))
        .read_buffer_size(4 << 10);
    let connector = tokio_tungstenite::Connector::Rustls(tls.clone());
    let connecting = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(connector));
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(WsError::Http(response))) => {
            Err(format!("HTTP {} (check access_token and url)", response.status().as_u16()))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

//! The HTTP client protocol APIs are called with (OneBot 11 over HTTP, Milky, the official
//! platform's OpenAPI): hyper's pooled HTTP/1.1 client over rustls, as twilight-http does, without
//! reqwest's layers.
//!
//! On these protocols every reply is a request, so whatever a request costs beyond its bytes is
//! paid per reply. reqwest parses each URL with the `url` crate twice (building the request, and
//! again in its redirect layer) and runs redirect and retry layers an API call never needs. Here
//! the base URL is parsed once, and a request parses only its own path. Answers are read within a
//! size bound. Redirects are not followed (an API that redirects is misconfigured: its status is
//! the answer), and proxies from the environment are not used: the APIs are called directly.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::http::{HeaderMap, HeaderValue, Method, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::tls::ClientTls;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle connection stays in the pool. A server that closes its end sooner (Node's
/// default is 5 s) is noticed when its close arrives, and the connection leaves the pool then.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The connection failed while reading it.
    #[error("cannot read the answer: {0}")]
    Read(String),
}

/// An answer: its status, its headers and its whole body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// Where a redirect points (its `Location`, shortened for a log), `None` when this is not one.
    /// Redirects are not followed: an API that redirects has a wrong base URL.
    pub fn redirected_to(&self) -> Option<String> {
        (300..400).contains(&self.status).then(|| {
            let to = self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("nowhere");
            crate::logsafe::preview(to.as_bytes())
        })
    }
}

/// Where requests go: the base URL's scheme, host and path, parsed once.
#[derive(Debug, Clone)]
struct Base {
    scheme: Scheme,
    authority: Authority,
    /// The base URL's path without its trailing `/`; a request's path is appended to it.
    prefix: String,
}

/// A pooled client for the API at one base URL.
#[derive(Debug, Clone)]
pub struct ApiClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The base, or why the URL cannot be one (each request fails with it).
    base: Result<Base, String>,
}

impl ApiClient {
    /// A client for `base` (`http://` or `https://`, with or without a path), using `tls` for
    /// `https://`.
    pub fn new(base: &str, tls: &ClientTls) -> ApiClient {
        crate::tls::ensure_provider();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((**tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        ApiClient { client, base: parse_base(base) }
    }

    /// Sends `method` to the base URL's path followed by `path_and_query` (which starts with
    /// `/`), with `headers` and, when given, a JSON `body`; reads the answer's body up to `limit`
    /// bytes. Any status is an answer.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        json: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Answer, RequestError> {
        let base = self.base.as_ref().map_err(|url| RequestError::BadTarget(url.clone()))?;
        let target = format!("{}{path_and_query}", base.prefix);
        let bad = |target: &str| RequestError::BadTarget(format!("{}://{}{target}", base.scheme, base.authority));
        let path = PathAndQuery::try_from(target.as_str()).map_err(|_| bad(&target))?;
        let uri = Uri::builder()
            .scheme(base.scheme.clone())
            .authority(base.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| bad(&target))?;
        let has_body = json.is_some();
        let mut request = hyper::Request::new(Full::new(Bytes::from(json.unwrap_or_default())));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        request.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if has_body {
            request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response =
            self.client.request(request).await.map_err(|e| RequestError::Unreachable(crate::logsafe::chain(&e)))?;
        let (parts, mut body) = response.into_parts();
        let status = parts.status.as_u16();
        let fail = |reason| RequestError::Body { status, reason };
        let announced = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(fail(BodyError::TooLarge { limit }));
        }
        let mut read = Vec::with_capacity(announced.map_or(0, |n| n as usize));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| fail(BodyError::Read(crate::logsafe::chain(&e))))?;
            if let Ok(data) = frame.into_data() {
                if read.len() + data.len() > limit {
                    return Err(fail(BodyError::TooLarge { limit }));
                }
                read.extend_from_slice(&data);
            }
        }
        Ok(Answer { status, headers: parts.headers, body: read })
    }
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
    let authority = uri.authority().cloned().ok_or_else(|| format!("{url} (no host)"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{url} (a user and password in the URL are not sent; use access_token)"));
    }
    if uri.query().is_some() {
        return Err(format!("{url} (a base URL takes no query)"));
    }
    Ok(Base { scheme, authority, prefix: uri.path().trim_end_matches('/').to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_keeps_its_path_and_refuses_what_is_not_one() {
        let base = parse_base("http://127.0.0.1:3000/milky/").unwrap();
        assert_eq!(
            (base.scheme, base.authority.as_str(), base.prefix.as_str()),
            (Scheme::HTTP, "127.0.0.1:3000", "/milky")
        );
        assert_eq!(parse_base("https://api.sgroup.qq.com").unwrap().prefix, "");
        for bad in
            ["ftp://x/", "127.0.0.1:3000", "http://x/?a=1", "http://exa mple/", "http://u:p@x/", "http://例子.测试/"]
        {
            assert!(parse_base(bad).is_err(), "{bad}");
        }
    }
}

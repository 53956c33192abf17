//! `http::` — an HTTP client for scripts, bounded like everything else a script does: a
//! request blocks only its worker and never past the callback's total budget; it has a timeout
//! and a response size cap (`[http]` in the config); and by default it refuses loopback,
//! private, link-local and other non-public addresses, checked after DNS resolution and on
//! every redirect, so neither a hostname nor a redirect can reach the bot's own network.
//!
//! ```rhai
//! let r = http::get("https://api.example.com/quote");
//! if r.status == 200 { ev.reply(r.json.text); }
//! let r = http::request(#{ method: "POST", url: u, json: #{ q: "hi" }, headers: #{ "x-key": k }, timeout_ms: 5000 });
//! ```
//!
//! A failure (unreachable, timeout, refused address, too large) is a catchable error map
//! `#{kind: "http", url, message}`; an HTTP error status is an answer, not a failure.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, Map, Module, NativeCallContext, Position};
use serde_json::Value;

use super::convert::{at_call, to_dynamic, to_json};
use super::{Services, documented};
use crate::script::context;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// `[http]`: how far scripts' requests may go.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default per-request timeout.
    pub timeout: Duration,
    /// Largest response body read.
    pub max_body_bytes: usize,
    /// Whether loopback, private and link-local addresses may be reached.
    pub allow_private: bool,
    /// Redirects followed at most.
    pub max_redirects: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { timeout: Duration::from_secs(10), max_body_bytes: 4 << 20, allow_private: false, max_redirects: 5 }
    }
}

/// Whether `ip` is an address on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast, unspecified or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19))) // benchmarking
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
            if s[0] == 0x2002 {
                let v4 = std::net::Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
                return is_public(IpAddr::V4(v4));
            }
            !(v6.is_loopback()
                || (s[..6] == [0; 6]) // IPv4-compatible ::/96 (deprecated; maps to private ranges)
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64: an IPv4 address in disguise
        }
    }
}

/// Resolves names, keeping only public addresses unless private ones are allowed.
#[derive(Debug)]
struct Resolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
            if kept.is_empty() {
                let why =
                    if found.is_empty() { "resolves to no address" } else { "resolves only to non-public addresses" };
                return Err(format!("{host} {why} (set [http] allow_private = true to reach them)").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The scripts' HTTP client of one runtime.
#[derive(Debug)]
pub struct Client {
    client: reqwest::Client,
    settings: Settings,
}

/// A literal IP host in `url` that may not be reached, if any.
fn refused_literal(url: &reqwest::Url, allow_private: bool) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    (!allow_private && !is_public(ip))
        .then(|| format!("{ip} is not a public address (set [http] allow_private = true to reach it)"))
}

impl Client {
    /// A client with `settings`, trusting `tls`'s roots for `https://`.
    pub fn new(settings: Settings, tls: &crate::tls::ClientTls) -> Client {
        crate::tls::ensure_provider();
        let allow_private = settings.allow_private;
        let max_redirects = settings.max_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(format!("more than {max_redirects} redirects"));
            }
            let scheme = attempt.url().scheme().to_owned();
            if !matches!(scheme.as_str(), "http" | "https") {
                return attempt.error(format!("a redirect to {scheme}:// is not http(s)"));
            }
            match refused_literal(attempt.url(), allow_private) {
                Some(why) => attempt.error(format!("a redirect to {why}")),
                None => attempt.follow(),
            }
        });
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((**tls).clone())
            .no_proxy()
            .dns_resolver(Arc::new(Resolver { allow_private }))
            .redirect(policy)
            .user_agent(concat!("rhaibot/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!("cannot set up the scripts' HTTP client ({e}); http:: calls will fail");
                reqwest::Client::new()
            });
        Client { client, settings }
    }

    /// Performs `req` within `timeout`: the answer as `#{status, headers, body, json}`.
    async fn perform(&self, req: &Request, timeout: Duration) -> Result<Map, String> {
        let url = reqwest::Url::parse(&req.url).map_err(|e| format!("bad URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("only http:// and https:// URLs, not {}://", url.scheme()));
        }
        if let Some(why) = refused_literal(&url, self.settings.allow_private) {
            return Err(why);
        }
        let method = reqwest::Method::from_bytes(req.method.to_uppercase().as_bytes())
            .map_err(|_| format!("bad method {:?}", req.method))?;
        let mut builder = self.client.request(method, url).timeout(timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        builder = match &req.body {
            Body::None => builder,
            Body::Text(t) => builder.body(t.clone()),
            Body::Json(v) => builder.json(v),
        };
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                return format!("no answer within {} ms", timeout.as_millis());
            }
            // The innermost cause says why (a refused address, a DNS failure, ...), whole.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let what = if e.is_connect() {
                "cannot connect"
            } else if e.is_redirect() {
                "redirect refused"
            } else {
                "request failed"
            };
            format!("{what}: {}", crate::logsafe::short(&cause.to_string()))
        })?;
        let status = response.status().as_u16();
        let mut headers = Map::new();
        for (k, v) in response.headers() {
            headers.insert(k.as_str().into(), String::from_utf8_lossy(v.as_bytes()).into_owned().into());
        }
        let bytes =
            crate::adapter::http_api::read(response, self.settings.max_body_bytes).await.map_err(|e| e.to_string())?;
        let json = serde_json::from_slice::<Value>(&bytes).map_or(Dynamic::UNIT, |v| to_dynamic(&v));
        let mut out = Map::new();
        out.insert("status".into(), Dynamic::from_int(i64::from(status)));
        out.insert("headers".into(), headers.into());
        out.insert("body".into(), String::from_utf8_lossy(&bytes).into_owned().into());
        out.insert("json".into(), json);
        Ok(out)
    }
}

#[derive(Debug, Default)]
enum Body {
    #[default]
    None,
    Text(String),
    Json(Value),
}

#[derive(Debug, Default)]
struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Body,
    timeout: Option<Duration>,
}

fn string(v: &Dynamic) -> String {
    if v.is_string() { v.clone().into_string().unwrap_or_default() } else { v.to_string() }
}

impl Request {
    /// Reads `http::request`'s map.
    fn from_map(m: Map) -> Result<Request, String> {
        let mut r = Request { method: "GET".into(), ..Request::default() };
        for (k, v) in m {
            match k.as_str() {
                "method" => r.method = string(&v),
                "url" => r.url = string(&v),
                "headers" => r.headers = pairs(v, "headers")?,
                "query" => r.query = pairs(v, "query")?,
                "body" => r.body = Body::Text(string(&v)),
                "json" => r.body = Body::Json(to_json(&v, "http::request").map_err(|e| e.to_string())?),
                "timeout_ms" => {
                    let ms = v.as_int().map_err(|t| format!("timeout_ms is a number of milliseconds, not {t}"))?;
                    r.timeout = Some(Duration::from_millis(ms.max(1) as u64));
                }
                other => {
                    return Err(format!(
                        "`{other}` is not a request key (method, url, headers, query, body, json, timeout_ms)"
                    ));
                }
            }
        }
        if r.url.is_empty() {
            return Err("the request has no url".into());
        }
        Ok(r)
    }
}

fn pairs(v: Dynamic, what: &str) -> Result<Vec<(String, String)>, String> {
    let m = v.try_cast::<Map>().ok_or_else(|| format!("{what} must be a map"))?;
    Ok(m.into_iter().map(|(k, v)| (k.to_string(), string(&v))).collect())
}

fn http_error(url: &str, message: String) -> Box<EvalAltResult> {
    let mut m = Map::new();
    m.insert("kind".into(), "http".into());
    m.insert("url".into(), url.into());
    m.insert("message".into(), format!("{url}: {message}").into());
    EvalAltResult::ErrorRuntime(m.into(), Position::NONE).into()
}

/// Runs `req` from a script: blocks this worker, at most the request's timeout and never past
/// the callback's total budget.
fn run(services: &Services, req: Result<Request, String>, url_hint: &str) -> RhaiResult<Map> {
    let req = req.map_err(|e| http_error(url_hint, e))?;
    let (Some(client), Some(rt)) = (&services.http, &services.rt) else {
        return Err(http_error(&req.url, "no HTTP client here (offline: check or api list)".into()));
    };
    super::out_of_time()?;
    if let Some(store) = &services.store {
        // A request may carry what the callback wrote: it leaves once that is durable.
        store.commit_before_sending().map_err(|e| http_error(&req.url, format!("not sent: {e}")))?;
    }
    let mut timeout = req.timeout.unwrap_or(client.settings.timeout);
    if let Some(left) = context::total_left() {
        timeout = timeout.min(left.max(Duration::from_millis(1)));
    }
    let started = Instant::now();
    let result = crate::script::wait::blocking(|| {
        rt.block_on(async {
            tokio::time::timeout(timeout, client.perform(&req, timeout))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())))
        })
    });
    context::extend(started.elapsed());
    super::out_of_time()?;
    result.map_err(|e| http_error(&req.url, e))
}

/// Builds the `http` module.
pub fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    documented("get", &["url: string"], "GET a URL: #{status, headers, body, json}").set_into_module(
        &mut m,
        move |ctx: NativeCallContext, url: &str| {
            let req = Request { method: "GET".into(), url: url.into(), ..Request::default() };
            run(&s, Ok(req), url).map_err(|e| at_call(e, &ctx))
        },
    );
    let s = services.clone();
    documented("get", &["url: string", "options: map"], "GET with #{headers, query, timeout_ms}").set_into_module(
        &mut m,
        move |ctx: NativeCallContext, url: &str, mut opts: Map| {
            opts.insert("url".into(), url.into());
            opts.insert("method".into(), "GET".into());
            run(&s, Request::from_map(opts), url).map_err(|e| at_call(e, &ctx))
        },
    );
    let s = services.clone();
    documented("post", &["url: string", "body: any"], "POST text (a string) or JSON (anything else)").set_into_module(
        &mut m,
        move |ctx: NativeCallContext, url: &str, body: Dynamic| {
            let go = || {
                let body = if body.is_string() {
                    Body::Text(string(&body))
                } else {
                    Body::Json(to_json(&body, "http::post").map_err(|e| http_error(url, e.to_string()))?)
                };
                run(&s, Ok(Request { method: "POST".into(), url: url.into(), body, ..Request::default() }), url)
            };
            go().map_err(|e| at_call(e, &ctx))
        },
    );
    let s = services;
    documented(
        "request",
        &["request: map"],
        "any request: #{method, url, headers, query, body, json, timeout_ms} -> #{status, headers, body, json}",
    )
    .set_into_module(&mut m, move |ctx: NativeCallContext, req: Map| {
        let url = req.get("url").map(string).unwrap_or_default();
        run(&s, Request::from_map(req), &url).map_err(|e| at_call(e, &ctx))
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "::127.0.0.1",
            "2002:7f00:1::1",
            "fec0::1",
            "2001:0:a00:1::1",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "255.255.255.255",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}

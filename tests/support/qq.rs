//! A fake of the official platform's token endpoint (`POST /app/getAppAccessToken`), written
//! from the platform's docs: `{appId, clientSecret}` in, `{access_token, expires_in}` out, with
//! `expires_in` as a string of seconds; wrong credentials get an error message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use serde_json::{Value, json};

use super::Faults;

/// The fake.
pub struct FakePlatform {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    issued: Arc<AtomicU64>,
    _faults: Faults,
}

#[derive(Clone)]
struct Shared {
    app_id: String,
    secret: String,
    lifetime_secs: u64,
    issued: Arc<AtomicU64>,
}

impl FakePlatform {
    /// Issues tokens living `lifetime_secs` to app `app_id` with `secret`.
    pub async fn start(app_id: &str, secret: &str, lifetime_secs: u64) -> FakePlatform {
        let issued = Arc::new(AtomicU64::new(0));
        let shared = Shared { app_id: app_id.into(), secret: secret.into(), lifetime_secs, issued: issued.clone() };
        let app = axum::Router::new().route("/app/getAppAccessToken", axum::routing::post(token)).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let faults = Faults::default();
        faults.reporter().spawn(async move { axum::serve(listener, app).await.expect("fake serves") });
        FakePlatform { url, issued, _faults: faults }
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }
}

async fn token(State(s): State<Shared>, axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    if body["appId"] != s.app_id.as_str() || body["clientSecret"] != s.secret.as_str() {
        return axum::Json(json!({"code": 100016, "message": "invalid appid or secret"}));
    }
    let n = s.issued.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({"access_token": format!("token-{n}"), "expires_in": s.lifetime_secs.to_string()}))
}

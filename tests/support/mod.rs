//! Fake protocol ends that speak the real wire protocol over loopback, written from the seeds,
//! plus helpers to run the runtime against them.

#![allow(dead_code)]

pub mod milky;
pub mod onebot;
pub mod onebot_http;
pub mod process;
pub mod qq;
pub mod tls;

use std::path::Path;
use std::time::Duration;

use rhaibot::config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// How many unrelated calls a test passes over while it waits for the one it expects.
pub const MAX_SKIPPED: usize = 10_000;

/// A runtime running in the test's tokio runtime; stops when dropped or on [`Running::stop`].
pub struct Running {
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// The runtime's data dir (its SQLite database lives here).
    pub data_dir: std::path::PathBuf,
    /// The temporary dir holding `scripts/`, `stdlib/` and `data/`.
    pub root: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Writes `scripts` (name, source) into a fresh scripts dir (names starting with `stdlib/`
    /// go to the stdlib dir) and runs the runtime with the given TOML config (its `scripts_dir`,
    /// `stdlib_dir` and `data_dir` are filled in).
    pub fn start(config_toml: &str, scripts: &[(&str, &str)]) -> Running {
        // The runtime's log goes to the test's output, shown when a test fails.
        let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info,rhaibot=debug").try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let scripts_dir = dir.path().join("scripts");
        std::fs::create_dir(&scripts_dir).expect("scripts dir");
        std::fs::create_dir(dir.path().join("stdlib")).expect("stdlib dir");
        for (name, source) in scripts {
            let path = match name.strip_prefix("stdlib/") {
                Some(module) => dir.path().join("stdlib").join(module),
                None => scripts_dir.join(name),
            };
            std::fs::write(path, source).expect("write script");
        }
        let text = format!(
            "scripts_dir = {:?}\nstdlib_dir = {:?}\ndata_dir = {:?}\n{config_toml}",
            scripts_dir,
            dir.path().join("stdlib"),
            dir.path().join("data")
        );
        let config = Config::parse(&text, &dir.path().join("rhaibot.toml")).expect("valid test config");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            rhaibot::runtime::run(config, token).await.expect("runtime runs");
        });
        Running {
            shutdown,
            task: Some(task),
            data_dir: dir.path().join("data"),
            root: dir.path().to_owned(),
            _dir: dir,
        }
    }

    /// Shuts down in order and waits for the runtime to return.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// Like [`Running::stop`], keeping the data dir for inspection.
    pub async fn stop_in_place(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task).await.expect("runtime stops in time").expect("runtime task");
        }
    }

    /// Writes (or with `None` deletes) a file under the root, e.g. `scripts/a.rhai`. Writes are
    /// atomic (a temporary file renamed over the old one), as editors save.
    pub fn write(&self, rel: &str, source: Option<&str>) {
        let path = self.root.join(rel);
        match source {
            Some(text) => {
                let tmp = self.root.join(".saving.tmp");
                std::fs::write(&tmp, text).expect("write file");
                std::fs::rename(&tmp, &path).expect("rename into place");
            }
            None => std::fs::remove_file(&path).expect("delete file"),
        }
    }

    /// Asks the running bot for its scripts' status (through the admin socket).
    pub async fn status(&self) -> Vec<serde_json::Value> {
        self.admin_status().await["scripts"].as_array().cloned().unwrap_or_default()
    }

    async fn admin_status(&self) -> serde_json::Value {
        let data_dir = self.data_dir.clone();
        let request = move || rhaibot::admin::request(&data_dir, &serde_json::json!({"cmd": "status"}));
        loop {
            // The admin socket opens after the scripts loaded; until then, ask again.
            match tokio::task::spawn_blocking(request.clone()).await.expect("status task") {
                Ok(answer) => return answer,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    }

    /// The address bot `name` listens on (its config says port 0, so the OS picked one).
    pub async fn listen_addr(&self, name: &str) -> std::net::SocketAddr {
        within("the bot's listener", async {
            loop {
                let status = self.admin_status().await;
                let bot = status["bots"].as_array().and_then(|b| b.iter().find(|b| b["name"] == name).cloned());
                if let Some(addr) = bot.and_then(|b| b["listen"].as_str().and_then(|a| a.parse().ok())) {
                    return addr;
                }
            }
        })
        .await
    }

    /// Waits until the status of `script` satisfies `ok`.
    pub async fn wait_status(&self, script: &str, what: &str, ok: impl Fn(Option<&serde_json::Value>) -> bool) {
        within(what, async {
            loop {
                // Each round trip to the bot paces the loop.
                let status = self.status().await;
                if ok(status.iter().find(|s| s["name"] == script)) {
                    return;
                }
            }
        })
        .await
    }

    /// Sends an admin command (`reload`, `resume`, `jobs`) for `script` to the running bot.
    pub async fn admin(&self, cmd: &str, script: &str) -> Result<serde_json::Value, String> {
        self.admin_status().await; // the admin socket is up
        let data_dir = self.data_dir.clone();
        let request = serde_json::json!({"cmd": cmd, "script": script});
        tokio::task::spawn_blocking(move || rhaibot::admin::request(&data_dir, &request)).await.expect("admin task")
    }

    /// Opens the runtime's database (also while it runs).
    pub fn store(&self) -> rhaibot::storage::Store {
        rhaibot::storage::Store::open_in(&self.data_dir).expect("database opens")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The `rhaibot` binary built for these tests.
pub fn rhaibot_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rhaibot"))
}

/// Where a fake's tasks report their own panics, so a broken fake fails the test with its
/// message instead of showing up as a timeout.
pub struct Faults {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Default for Faults {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Faults { tx, rx }
    }
}

impl Faults {
    /// A handle for the fake's tasks to report through.
    pub fn reporter(&self) -> Reporter {
        Reporter(self.tx.clone())
    }

    /// Waits for `fut` like [`within`], failing at once if the fake panicked meanwhile.
    pub async fn within<T>(&mut self, what: &str, fut: impl std::future::Future<Output = T>) -> T {
        tokio::select! {
            v = within(what, fut) => v,
            Some(p) = self.rx.recv() => panic!("the fake panicked while the test waited for {what}: {p}"),
        }
    }
}

/// Reports a fake's panics to its [`Faults`].
#[derive(Clone)]
pub struct Reporter(tokio::sync::mpsc::UnboundedSender<String>);

impl Reporter {
    /// Spawns a task of the fake; if it panics, the test waiting on the fake fails with the message.
    pub fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        use futures_util::FutureExt;
        let tx = self.0.clone();
        tokio::spawn(async move {
            if let Err(panic) = std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let _ = tx.send(message);
            }
        });
    }

    /// Reports a fault found outside a spawned task (a handler that cannot panic usefully).
    pub fn report(&self, message: String) {
        let _ = self.0.send(message);
    }
}

/// A loopback port that refuses connections, held for as long as the socket lives: bound but
/// never listening, so the kernel answers a connect with a reset and no other test can take it
/// meanwhile (a port bound and released could be).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("address")).expect("bind loopback");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// An HTTP client for tests (the runtime's TLS provider installed first, as reqwest needs).
pub fn http_client() -> reqwest::Client {
    rhaibot::tls::ensure_provider();
    reqwest::Client::new()
}

/// A WebSocket client connection.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to a reverse WebSocket listener as an implementation does: `X-Self-ID`,
/// `X-Client-Role` and an optional Bearer token. `Err` holds the HTTP status of a refusal.
pub async fn reverse_connect(port: u16, token: Option<&str>, role: &str, self_id: i64) -> Result<Socket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://127.0.0.1:{port}/onebot/v11/ws").into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert("X-Self-ID", self_id.to_string().parse().expect("header"));
    headers.insert("X-Client-Role", role.parse().expect("header"));
    if let Some(t) = token {
        headers.insert("Authorization", format!("Bearer {t}").parse().expect("header"));
    }
    // The listener may still be starting: retry the TCP connect, not the handshake's verdict.
    loop {
        match tokio_tungstenite::connect_async(request.clone()).await {
            Ok((ws, _)) => return Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => return Err(resp.status().as_u16()),
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

/// Waits for `fut`, failing the test with `what` after [`WAIT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

//! The local admin endpoint: a Unix socket in the data dir (`rhaibot.sock`, mode 0600, so only
//! the user running the bot can use it) answering one JSON request per connection.
//! `rhaibot status`, `rhaibot resume` and `rhaibot reload` talk to it.
//!
//! Requests: `{"cmd": "status"}`, `{"cmd": "jobs"}`, `{"cmd": "resume", "script": "x.rhai"}`,
//! `{"cmd": "reload", "script": "x.rhai"}`. Answers: `{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`.

use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::script::ScriptHost;

/// The socket's path in `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rhaibot.sock")
}

/// Serves the admin socket until `shutdown`. The caller holds the data dir's lock, so an
/// existing socket file is a leftover and is replaced.
pub fn serve(data_dir: &Path, host: Arc<ScriptHost>, shutdown: CancellationToken) -> std::io::Result<()> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => { warn!("admin socket: {e}"); continue; }
                },
            };
            let host = host.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if tokio::io::BufReader::new(read).read_line(&mut line).await.is_err() {
                    return;
                }
                // Reloading runs a script's top level, which may block: keep it off the reactor.
                let answer = tokio::task::spawn_blocking(move || handle(&host, &line))
                    .await
                    .unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()}));
                let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn handle(host: &ScriptHost, line: &str) -> Value {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"ok": false, "error": format!("not a JSON request: {e}")}),
    };
    debug!(%request, "admin request");
    let script = request.get("script").and_then(Value::as_str).unwrap_or_default();
    match request.get("cmd").and_then(Value::as_str) {
        Some("status") => {
            let bots: Vec<Value> = host
                .services()
                .bots
                .iter()
                .map(|b| {
                    json!({
                        "name": b.name,
                        "protocol": b.protocol.name,
                        "self_id": b.self_id().map(|id| id.to_string()),
                        "accounts": b.accounts().iter().filter_map(|a| a.self_id()).map(|id| id.to_string()).collect::<Vec<_>>(),
                        "listen": b.listening().map(|a| a.to_string()),
                    })
                })
                .collect();
            json!({"ok": true, "scripts": host.status(), "bots": bots})
        }
        Some("jobs") => {
            let jobs: Vec<Value> = host
                .jobs()
                .into_iter()
                .map(|j| {
                    json!({"script": j.owner, "name": j.name, "schedule": j.schedule,
                           "next": j.next.map(|t| t.to_rfc3339()), "running": j.running, "paused": j.paused})
                })
                .collect();
            json!({"ok": true, "jobs": jobs})
        }
        Some("resume") if host.resume(script) => json!({"ok": true}),
        Some("resume") => json!({"ok": false, "error": format!("no running script `{script}`")}),
        Some("reload") => {
            let name = if script.ends_with(".rhai") { script.to_owned() } else { format!("{script}.rhai") };
            let path = host.scripts_dir().join(&name);
            match host.reload(&path) {
                true => json!({"ok": true}),
                false => json!({"ok": false, "error": format!("`{name}` did not load; see the bot's log")}),
            }
        }
        _ => json!({"ok": false, "error": "unknown command (expected status, jobs, resume, reload)"}),
    }
}

/// Sends one request to the running bot whose data dir is `data_dir` (client side, blocking).
pub fn request(data_dir: &Path, request: &Value) -> Result<Value, String> {
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        format!("no running rhaibot answers at {} ({e}); is the bot running with this data_dir?", path.display())
    })?;
    stream.write_all(format!("{request}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&line).map_err(|e| format!("bad answer from the bot: {e}"))?;
    if answer["ok"] == true {
        Ok(answer)
    } else {
        Err(answer["error"].as_str().unwrap_or("the bot refused").to_owned())
    }
}

//! Cold start: from starting `rhaibot run` to the reply to its first event.
//!
//! It serves a OneBot 11 forward WebSocket on loopback, starts rhaibot with the given scripts
//! dir pointed at it, pushes one group message as soon as rhaibot connects, and stops the clock
//! when the reply arrives; then it stops rhaibot. Repeated `RUNS` times; prints the median, the
//! fastest and the slowest in milliseconds.
//!
//! usage: coldstart RHAIBOT SCRIPTS_DIR TEXT [RUNS]

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, rhaibot, scripts, text, rest @ ..] = args.as_slice() else {
        eprintln!("usage: coldstart RHAIBOT SCRIPTS_DIR TEXT [RUNS]");
        return ExitCode::FAILURE;
    };
    let runs: usize = rest.first().and_then(|r| r.parse().ok()).unwrap_or(10);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("coldstart: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        match runtime.block_on(once(Path::new(rhaibot), Path::new(scripts), text)) {
            Ok(t) => times.push(t.as_secs_f64() * 1e3),
            Err(e) => {
                eprintln!("coldstart: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"runs\":{},\"median_ms\":{:.1},\"min_ms\":{:.1},\"max_ms\":{:.1}}}",
        times.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    ExitCode::SUCCESS
}

/// One start: the time from spawning rhaibot to the reply to the first event.
async fn once(rhaibot: &Path, scripts: &Path, text: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("rhaibot.toml");
    let scripts = std::fs::canonicalize(scripts)?;
    std::fs::write(
        &config,
        format!(
            "scripts_dir = {scripts:?}\ndata_dir = {data:?}\n[log]\nlevel = \"warn\"\n[[bot]]\nname = \"cold\"\n\
             protocol = \"onebot11\"\nurl = \"ws://127.0.0.1:{port}/\"\nreconnect_min_ms = 10\n",
            scripts = scripts.display().to_string(),
            data = dir.path().join("data").display().to_string(),
        ),
    )?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(rhaibot)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let exchange = async {
        let (tcp, _) = listener.accept().await?;
        let mut socket = tokio_tungstenite::accept_async(tcp).await?;
        let event = json!({
            "time": 1_700_000_000, "self_id": 10_000, "post_type": "message", "message_type": "group",
            "sub_type": "normal", "message_id": 1, "user_id": 100_001, "group_id": 123_456,
            "message": [{"type": "text", "data": {"text": text}}], "raw_message": text, "font": 14,
            "sender": {"user_id": 100_001, "nickname": "cold", "card": "", "role": "member"}
        });
        socket.send(Message::text(event.to_string())).await?;
        while let Some(frame) = socket.next().await {
            let Message::Text(frame) = frame? else { continue };
            let call: Value = serde_json::from_str(frame.as_str())?;
            if call.get("params").and_then(|p| p.get("message")).is_some() {
                return Ok::<_, Box<dyn std::error::Error>>(started.elapsed());
            }
        }
        Err("rhaibot closed the connection before replying".into())
    };
    let elapsed =
        tokio::time::timeout(Duration::from_secs(30), exchange).await.map_err(|_| "no reply within 30 s")??;
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(elapsed)
}

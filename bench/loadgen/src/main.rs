//! `loadgen`: a load generator for rhaibot's hot path that plays the OneBot 11 implementation.
//!
//! It listens on loopback as a forward-WebSocket server (universal endpoint `/`), waits for a
//! running rhaibot to connect, pushes group-message events whose text is `--text` with `{i}` replaced
//! by a sequence number, answers every action call, and matches each sent message to its event by the
//! first number in its text. It reports throughput, latency percentiles and, given rhaibot's pid, its
//! CPU time per event and peak RSS.
//!
//! ```text
//! cargo run --release -p rhaibot-loadgen -- --port-file /tmp/lg/port --pid-file /tmp/lg/pid
//! # then point a `protocol = "onebot11"` bot at ws://127.0.0.1:<port>/, with a script such as
//! # command("echo", |ev, args| ev.reply(args));
//! # and write rhaibot's pid to /tmp/lg/pid as soon as it is started.
//! ```
//!
//! `--mode throughput` keeps `--window` events outstanding; `--mode latency` sends at a fixed
//! `--rate` and times each reply from the event's scheduled send time. Everything but the latency
//! pacer runs on one thread, leaving the other cores to rhaibot.

mod session;
mod stats;
mod wire;

use std::error::Error;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::net::TcpListener;

use session::{Outcome, Session, Socket};
use stats::Percentiles;
use wire::EventTemplate;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(version, about = "Load generator for rhaibot: a fake OneBot 11 implementation on loopback")]
struct Args {
    /// Port to listen on at 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    mode: Mode,
    /// Measured events [default: 200000 in throughput mode, 5000 in latency mode].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    events: Option<u64>,
    /// Throughput mode (and warm-up): most events sent but not yet answered.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// Latency mode: events per second.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Event text; `{i}` is replaced by the event's sequence number, which the reply must contain.
    #[arg(long, default_value = "/echo {i}")]
    text: String,
    /// Number of distinct group ids to spread events over.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    groups: u64,
    /// rhaibot's pid, for CPU time and peak memory.
    #[arg(long)]
    pid: Option<u32>,
    /// File holding rhaibot's pid, read when it connects (instead of --pid).
    #[arg(long, conflicts_with = "pid")]
    pid_file: Option<PathBuf>,
    /// Pause after the client connects, answering calls, before any event.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// Events sent and answered before measuring, not counted.
    #[arg(long, default_value_t = 1000)]
    warmup_events: u64,
    /// How long to wait for the client to connect, and for replies once sending stopped.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_secs: u64,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write the listening port to this file.
    #[arg(long)]
    port_file: Option<PathBuf>,
}

/// What a run measures.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Replies per second with a bounded number of events outstanding.
    Throughput,
    /// Reply latency at a fixed send rate.
    Latency,
}

impl Mode {
    /// The name used on the command line and in the JSON output.
    fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Latency => "latency",
        }
    }
}

/// The measured part of a run.
struct Report {
    /// What was measured.
    mode: Mode,
    /// Counts and timing of the events.
    outcome: Outcome,
    /// Latency percentiles of matched events.
    latency: Option<Percentiles>,
    /// Latency mode: percentiles of the pacer's own lateness.
    send_lag: Option<Percentiles>,
    /// rhaibot's CPU time per matched event, in µs.
    cpu_us_per_event: Option<f64>,
    /// rhaibot's peak RSS, in MiB.
    peak_rss_mib: Option<f64>,
}

impl Report {
    /// Matched replies per second of measured time.
    fn replies_per_sec(&self) -> f64 {
        if self.outcome.seconds > 0.0 { self.outcome.matched as f64 / self.outcome.seconds } else { 0.0 }
    }

    /// The report as one JSON object.
    fn to_json(&self) -> String {
        let o = &self.outcome;
        json!({
            "mode": self.mode.name(),
            "events": o.sent,
            "matched": o.matched,
            "missing": o.missing(),
            "unexpected": o.unexpected,
            "seconds": o.seconds,
            "replies_per_sec": self.replies_per_sec(),
            "p50_us": self.latency.map(|p| p.p50),
            "p90_us": self.latency.map(|p| p.p90),
            "p99_us": self.latency.map(|p| p.p99),
            "max_us": self.latency.map(|p| p.max),
            "cpu_us_per_event": self.cpu_us_per_event,
            "peak_rss_mib": self.peak_rss_mib,
        })
        .to_string()
    }

    /// The report as a human-readable summary.
    fn to_text(&self) -> String {
        let o = &self.outcome;
        let mut lines = vec![
            format!("mode        {}", self.mode.name()),
            format!(
                "events      {} sent, {} matched, {} missing, {} unexpected{}",
                o.sent,
                o.matched,
                o.missing(),
                o.unexpected,
                if o.timed_out { " (gave up waiting)" } else { "" }
            ),
            format!("time        {:.3} s, {:.0} replies/s", o.seconds, self.replies_per_sec()),
        ];
        lines.push(match self.latency {
            Some(p) => format!("latency     p50 {} µs, p90 {} µs, p99 {} µs, max {} µs", p.p50, p.p90, p.p99, p.max),
            None => "latency     no replies".to_owned(),
        });
        if let Some(lag) = self.send_lag {
            lines.push(format!(
                "send lag    p50 {} µs, p99 {} µs, max {} µs (loadgen's own lateness, part of the latency)",
                lag.p50, lag.p99, lag.max
            ));
        }
        let cpu = self.cpu_us_per_event.map_or("?".to_owned(), |us| format!("{us:.1}"));
        let rss = self.peak_rss_mib.map_or("?".to_owned(), |mib| format!("{mib:.1}"));
        lines.push(format!("rhaibot     {cpu} µs CPU per event, peak RSS {rss} MiB"));
        lines.join("\n")
    }
}

/// Parses the options, runs on a single-threaded runtime and prints the report.
fn main() -> ExitCode {
    let args = Args::parse();
    // Let timers of this thread and the threads it starts (the latency pacer) fire on time instead of
    // up to 50 µs late, Linux's default slack; the pacer's lateness counts as latency. Best effort.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            println!("{}", if args.json { report.to_json() } else { report.to_text() });
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Listens, serves one client through warm-up and the measured phase, and measures it.
async fn run(args: &Args) -> Result<Report, Box<dyn Error>> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
    let port = listener.local_addr()?.port();
    eprintln!("listening on ws://127.0.0.1:{port}/");
    if let Some(path) = &args.port_file {
        write_atomically(path, &format!("{port}\n"))?;
    }
    let socket = tokio::time::timeout(timeout, accept(&listener))
        .await
        .map_err(|_| format!("no client connected within {} s", args.timeout_secs))??;
    drop(listener);
    let mut pid = args.pid.or_else(|| args.pid_file.as_deref().and_then(read_pid));

    let mut session = Session::new(socket, EventTemplate::new(&args.text, args.groups), timeout);
    session.send(wire::LIFECYCLE);
    session.idle(Duration::from_millis(args.warmup_ms)).await;
    if args.warmup_events > 0 {
        let warm = session.window(args.warmup_events, args.window).await;
        if warm.missing() > 0 || warm.unexpected > 0 {
            eprintln!(
                "warning: warm-up: {} of {} replies missing, {} unexpected",
                warm.missing(),
                warm.sent,
                warm.unexpected
            );
        }
    }

    if pid.is_none()
        && let Some(path) = &args.pid_file
    {
        pid = read_pid(path);
        if pid.is_none() {
            eprintln!("warning: no pid in {}; CPU and memory not measured", path.display());
        }
    }
    let ticks_before = pid.and_then(stats::cpu_ticks);
    let mut outcome = match args.mode {
        Mode::Throughput => session.window(args.events.unwrap_or(200_000), args.window).await,
        Mode::Latency => session.paced(args.events.unwrap_or(5_000), f64::from(args.rate)).await,
    };
    let ticks_after = pid.and_then(stats::cpu_ticks);
    let peak_rss_mib = pid.and_then(stats::peak_rss_kib).map(|kib| kib as f64 / 1024.0);

    if let Some(why) = &session.closed {
        eprintln!("warning: connection ended early: {why}");
    }
    if session.malformed > 0 {
        eprintln!("warning: {} malformed frames skipped", session.malformed);
    }
    session.close().await;

    let cpu_us_per_event = match (ticks_before, ticks_after) {
        (Some(before), Some(after)) if outcome.matched > 0 => {
            let micros = after.saturating_sub(before) as f64 * 1e6 / stats::clock_ticks_per_sec() as f64;
            Some(micros / outcome.matched as f64)
        }
        _ => None,
    };
    let latency = Percentiles::of(&mut outcome.latencies_us);
    let send_lag = Percentiles::of(&mut outcome.send_lag_us);
    Ok(Report { mode: args.mode, outcome, latency, send_lag, cpu_us_per_event, peak_rss_mib })
}

/// Accepts connections until one completes the WebSocket handshake.
async fn accept(listener: &TcpListener) -> std::io::Result<Socket> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        match tokio_tungstenite::accept_async(tcp).await {
            Ok(socket) => {
                eprintln!("client connected from {peer}");
                return Ok(socket);
            }
            Err(e) => eprintln!("warning: WebSocket handshake with {peer} failed: {e}"),
        }
    }
}

/// Reads a pid from `path`, if it holds one.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes `contents` to `path` through a rename, so a reader never sees a partial file.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

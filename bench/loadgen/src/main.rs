//! `loadgen`: a load generator for rhaibot's hot path that plays the bot backend: a OneBot 11
//! implementation, a Milky implementation, or the official QQ bot platform (`--protocol`).
//!
//! It listens on loopback (HTTP/1.1 and WebSocket on one port), waits for a running rhaibot to
//! open its event socket, pushes group-message events whose text is `--text` with `{i}` replaced
//! by a sequence number, answers every call, and matches each sent message to its event by the
//! first number in its text. It reports throughput, latency percentiles and, given rhaibot's pid,
//! its CPU time and context switches per event (per thread too) and peak RSS.
//!
//! ```text
//! cargo run --release -p rhaibot-loadgen -- --port-file /tmp/lg/port --pid-file /tmp/lg/pid
//! # then point a bot at the port (onebot11: url = "ws://127.0.0.1:<port>/"; milky: url =
//! # "http://127.0.0.1:<port>"; qq: api_url and token_url = "http://127.0.0.1:<port>"), with a
//! # script such as  command("echo", |ev, args| ev.reply(args));
//! # and write rhaibot's pid to /tmp/lg/pid as soon as it is started.
//! ```
//!
//! Layout: `server` (the shared HTTP/WebSocket server and its notes to the session), one module
//! per protocol (`onebot11`, `milky`, `qq`: frames and answers), `session` (sending, pacing and
//! matching, the same for all), `wire` (the event text and its number), `stats` (percentiles and
//! `/proc`).
//!
//! `--mode throughput` keeps `--window` events outstanding; `--mode latency` sends at a fixed
//! `--rate` and times each reply from the event's scheduled send time. Everything but the latency
//! pacer runs on one thread, leaving the other cores to rhaibot.

mod milky;
mod onebot11;
mod qq;
mod server;
mod session;
mod stats;
mod wire;

use std::collections::BTreeMap;

use std::error::Error;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::json;
use tokio::net::TcpListener;

use session::{Outcome, Session};
use stats::{Percentiles, Threads};
use wire::{EventTemplate, Protocol};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(version, about = "Load generator for rhaibot: a fake bot backend (OneBot 11, Milky, QQ) on loopback")]
struct Args {
    /// The bot backend to play.
    #[arg(long, value_enum, default_value_t = Protocol::Onebot11)]
    protocol: Protocol,
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
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
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
    /// The protocol played.
    protocol: Protocol,
    /// Counts and timing of the events.
    outcome: Outcome,
    /// Latency percentiles of matched events.
    latency: Option<Percentiles>,
    /// Latency mode: percentiles of the pacer's own lateness.
    send_lag: Option<Percentiles>,
    /// rhaibot's CPU time per matched event, in µs.
    cpu_us_per_event: Option<f64>,
    /// rhaibot's context switches per matched event.
    ctx_switches_per_event: Option<f64>,
    /// rhaibot's CPU time per matched event by thread name, in µs.
    threads: Option<BTreeMap<String, f64>>,
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
            "protocol": self.protocol.name(),
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
            "ctx_switches_per_event": self.ctx_switches_per_event,
            "threads": self.threads,
            "peak_rss_mib": self.peak_rss_mib,
        })
        .to_string()
    }

    /// The report as a human-readable summary.
    fn to_text(&self) -> String {
        let o = &self.outcome;
        let mut lines = vec![
            format!("mode        {} ({})", self.mode.name(), self.protocol.name()),
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
        let switches = self.ctx_switches_per_event.map_or("?".to_owned(), |n| format!("{n:.2}"));
        lines.push(format!(
            "rhaibot     {cpu} µs CPU per event, {switches} context switches per event, peak RSS {rss} MiB"
        ));
        for (name, us) in self.threads.iter().flatten() {
            lines.push(format!("  thread    {name}: {us:.1} µs per event"));
        }
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
    eprintln!("playing {} on 127.0.0.1:{port}", args.protocol.name());
    if let Some(path) = &args.port_file {
        write_atomically(path, &format!("{port}\n"))?;
    }
    let server = server::start(listener, args.protocol)?;
    let socket = tokio::time::timeout(timeout, server.connected)
        .await
        .map_err(|_| format!("no client opened the event socket within {} s", args.timeout_secs))?
        .map_err(|_| "the server stopped")?;
    eprintln!("client connected");
    let mut pid = args.pid.or_else(|| args.pid_file.as_deref().and_then(read_pid));

    let events = EventTemplate::new(args.protocol, &args.text, args.groups);
    let mut session = Session::new(socket, server.notes, events, timeout);
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
    let threads_before = pid.and_then(Threads::of);
    let mut outcome = match args.mode {
        Mode::Throughput => session.window(args.events.unwrap_or(200_000), args.window).await,
        Mode::Latency => session.paced(args.events.unwrap_or(5_000), f64::from(args.rate)).await,
    };
    let threads_after = pid.and_then(Threads::of);
    let peak_rss_mib = pid.and_then(stats::peak_rss_kib).map(|kib| kib as f64 / 1024.0);

    if let Some(why) = &session.closed {
        eprintln!("warning: connection ended early: {why}");
    }
    if session.malformed > 0 {
        eprintln!("warning: {} malformed frames or requests skipped", session.malformed);
    }
    session.close().await;

    // Threads that ended during the phase are not counted (their time is gone from /proc).
    let usage = match (threads_before, threads_after) {
        (Some(before), Some(after)) if outcome.matched > 0 => Some(after.since(&before)),
        _ => None,
    };
    let per_event = |x: u64| x as f64 / outcome.matched as f64;
    let cpu_us_per_event = usage.as_ref().map(|u| per_event(u.cpu_ns) / 1000.0);
    let ctx_switches_per_event = usage.as_ref().map(|u| per_event(u.switches));
    let threads = usage.map(|u| u.by_name.into_iter().map(|(name, ns)| (name, per_event(ns) / 1000.0)).collect());
    let latency = Percentiles::of(&mut outcome.latencies_us);
    let send_lag = Percentiles::of(&mut outcome.send_lag_us);
    Ok(Report {
        mode: args.mode,
        protocol: args.protocol,
        outcome,
        latency,
        send_lag,
        cpu_us_per_event,
        ctx_switches_per_event,
        threads,
        peak_rss_mib,
    })
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

//! The `rhaibot` command line: parse, call the library, print one error and exit.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rhaibot::admin;
use rhaibot::config::{Config, LogFormat};
use rhaibot::storage::Store;

/// Run QQ bots written as Rhai scripts.
#[derive(Debug, Parser)]
#[command(name = "rhaibot", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bots (the console chat when no config is given).
    Run {
        /// Config file (TOML); without one, the console backend runs the scripts dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
        /// Scripts directory (overrides the config).
        #[arg(long, short)]
        scripts: Option<PathBuf>,
        /// Modules directory for `import` (overrides the config).
        #[arg(long)]
        stdlib: Option<PathBuf>,
    },
    /// Find mistakes in scripts without running them: syntax, unknown functions and methods,
    /// imports, event names, cron expressions, protocol arguments; each as file:line:col.
    Check {
        /// Script files; without any, every script of the scripts dir.
        files: Vec<PathBuf>,
        /// Config file, for its scripts dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
        /// Print the findings as a JSON array (for editors and CI).
        #[arg(long)]
        json: bool,
    },
    /// Run the scenario tests (`*.test.toml` beside the scripts) against a fake bot.
    Test {
        /// Scenario files (`*.test.toml`, not scripts); without any, every one in the scripts dir.
        files: Vec<PathBuf>,
        /// Config file, for its scripts dir and settings.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the script reference (Markdown) and Rhai definition files (.d.rhai, for editors)
    /// into DIR.
    Docs {
        /// Where to write (created if needed).
        #[arg(default_value = "docs/api")]
        dir: PathBuf,
    },
    /// Create a ready bot project in a new directory NAME.
    New {
        /// The directory to create.
        name: PathBuf,
    },
    /// Read or change a script's stored data (works while the bot runs).
    Kv {
        /// Config file, for its data dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: KvCommand,
    },
    /// List scheduled jobs with their next fire times, as the running bot registered them.
    Jobs {
        /// Config file, for its data dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show every script of the running bot: state, version time, counters.
    Status {
        /// Config file, for its data dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a quarantined script of the running bot run again.
    Resume {
        /// The script's file name.
        script: String,
        /// Config file, for its data dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Reload a script of the running bot now.
    Reload {
        /// The script's file name.
        script: String,
        /// Config file, for its data dir.
        #[arg(long, short, env = "RHAIBOT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Inspect the script API.
    Api {
        #[command(subcommand)]
        command: ApiCommand,
    },
}

/// SCRIPT is a script's file name (`hello.rhai` or `hello`), or `@name` for the shared space
/// `kv::space("name")` (`@shared` for `kv::shared_space()`).
#[derive(Debug, Subcommand)]
enum KvCommand {
    /// List keys (optionally only those starting with PREFIX).
    List { script: String, prefix: Option<String> },
    /// Print a value as JSON.
    Get { script: String, key: String },
    /// Store a value, given as JSON (text that is not JSON is stored as a string).
    Set { script: String, key: String, value: String },
    /// Delete a key.
    Delete { script: String, key: String },
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Print every function and event name scripts can use (those containing FILTER).
    List {
        /// Only names containing this text (case-insensitive).
        filter: Option<String>,
        /// As JSON: {"functions": [...], "events": [...]}.
        #[arg(long)]
        json: bool,
    },
}

/// mimalloc, not glibc's malloc: the reactor and the workers free each other's blocks on every
/// event, which glibc serves under an arena lock (bench/NOTES.md, the sixth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sizes mimalloc for a bot before the first allocation (Rust's runtime allocates only after
/// the constructors have run), unless the environment sets these options: arenas committed as
/// they are used rather than up front (its default doubled the peak RSS), and memory a page no
/// longer uses given back at once rather than a second later (0.7 MiB of peak RSS, no CPU
/// measurable). `mi_option_set` marks an option as read, so this holds whether mimalloc's own
/// constructor runs before this one (clang) or after it (gcc).
#[cfg(target_os = "linux")]
#[unsafe(link_section = ".init_array.00200")]
#[used]
static MIMALLOC_OPTIONS: extern "C" fn() = {
    extern "C" fn set() {
        // Indices of `mi_option_e` in mimalloc 3's mimalloc.h, which keeps retired options in
        // place so the numbers never move: arena_eager_commit, purge_delay.
        const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        for (option, name) in
            [(ARENA_EAGER_COMMIT, c"MIMALLOC_ARENA_EAGER_COMMIT"), (PURGE_DELAY, c"MIMALLOC_PURGE_DELAY")]
        {
            // SAFETY: runs once before main, when no other thread exists; the name is static.
            unsafe {
                if libc::getenv(name.as_ptr()).is_null() {
                    libmimalloc_sys::mi_option_set(option, 0);
                }
            }
        }
    }
    set
};

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Api { .. }
            | Command::Check { .. }
            | Command::Kv { .. }
            | Command::Jobs { .. }
            | Command::Status { .. }
    ) {
        end_quietly_on_a_closed_pipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rhaibot: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A listing piped into a reader that stops early (`rhaibot api list | head`) ends the command
/// quietly, as it does other Unix tools, instead of a panic in `println!`. Rust ignores
/// SIGPIPE; the commands that only print (and talk to a running bot over its Unix socket,
/// written with `MSG_NOSIGNAL`) get its default back. `run` and `test` keep it ignored: their
/// scripts' HTTP clients write sockets with `writev`, which would raise it.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition, before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// glibc's malloc still serves the C code (SQLite, libc); Rust's allocations go to mimalloc.
/// glibc gives every thread that allocates its own malloc arena; with a worker pool, a reactor
/// and blocking threads that is several MiB of mostly idle memory. Two arenas serve a bot
/// well (the same as `MALLOC_ARENA_MAX=2`, which still wins when set).
///
/// glibc also gives memory back whenever more than 128 KiB is free at the top of the heap.
/// A callback that writes to kv frees about that much (SQLite's scratch space), so the heap
/// shrank and grew again about every other event: a `brk` each time, and, since the memory
/// is shared by every thread, the kernel interrupting the other core to flush its TLB, then
/// zeroed pages faulted back in. Memory is now given back past 2 MiB free, and blocks from
/// 1 MiB up are mapped apart (setting the first stops glibc raising the second itself). The
/// peak is unchanged; after a burst up to 2 MiB per arena may stay. The environment
/// (`MALLOC_*_`, `GLIBC_TUNABLES`) still decides when set.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none() && std::env::var_os("GLIBC_TUNABLES").is_none();
        // SAFETY: called once at start, before any other thread exists.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if unset("MALLOC_TRIM_THRESHOLD_") && unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 2 << 20);
                libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
            }
        }
    }
}

/// The config given, else `./rhaibot.toml` when there is one (a project made by `rhaibot
/// new`), else the console defaults.
fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let here = std::path::Path::new("rhaibot.toml");
    Ok(match path {
        Some(p) => Config::load(p)?,
        None if here.is_file() => Config::load(here)?,
        None => Config::console_default(),
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config, scripts, stdlib } => {
            let mut config = load_config(config.as_ref())?;
            if let Some(dir) = scripts {
                config.scripts_dir = dir;
            }
            if let Some(dir) = stdlib {
                config.stdlib_dir = dir;
            }
            init_logging(&config.log_level, config.log_format);
            // One network thread, this one: scripts run on their own workers, storage on blocking
            // threads, and a second reactor thread would only add cross-thread wake-ups on the
            // hot path. Workers' `Handle::block_on` calls rely on this thread driving the I/O
            // and timers, which it does for as long as the bot runs.
            let rt = tokio::runtime::Builder::new_current_thread()
                .thread_name("rhaibot-net")
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async {
                let shutdown = tokio_util::sync::CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                rhaibot::runtime::run(config, shutdown).await
            })?;
            // The console reader may still be parked on stdin; do not wait for it.
            rt.shutdown_background();
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { files, config, json } => {
            let config = load_config(config.as_ref())?;
            let files = if files.is_empty() {
                rhaibot::script::script_files(&config.scripts_dir)
                    .with_context(|| format!("cannot read scripts dir {}", config.scripts_dir.display()))?
            } else {
                files
            };
            let store = rhaibot::storage::Store::in_memory().ok().map(std::sync::Arc::new);
            let globals = rhaibot::script::Globals::new(
                rhaibot::bindings::Services::offline(store),
                config.limits.clone(),
                Some(config.stdlib_dir.clone()),
                Some(rhaibot::scheduler::Scheduler::new(None)),
                config.timezone,
            );
            let engine = rhaibot::script::full_engine(&globals);
            let known = rhaibot::script::check::Known::from_engine(&engine);
            let mut findings = Vec::new();
            for f in &files {
                match std::fs::read_to_string(f) {
                    Ok(source) => findings.extend(rhaibot::script::check::check_source(
                        f,
                        &source,
                        &engine,
                        &known,
                        Some(&config.stdlib_dir),
                    )),
                    Err(e) => findings.push(rhaibot::script::check::Finding {
                        file: f.display().to_string(),
                        line: 0,
                        column: 0,
                        message: format!("cannot read: {e}"),
                        hint: None,
                    }),
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                for f in &files {
                    if !findings.iter().any(|x| x.file == f.display().to_string()) {
                        println!("{}: ok", f.display());
                    }
                }
                for x in &findings {
                    eprintln!("{x}");
                }
            }
            Ok(if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Test { files, config } => {
            let config = load_config(config.as_ref())?;
            let files = if files.is_empty() {
                rhaibot::scenario::find(&config.scripts_dir)
                    .with_context(|| format!("cannot read scripts dir {}", config.scripts_dir.display()))?
            } else {
                files
            };
            if files.is_empty() {
                eprintln!("rhaibot: no scenarios (*.test.toml) in {}", config.scripts_dir.display());
                return Ok(ExitCode::FAILURE);
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            // Warnings and errors (a script that did not load, a callback that threw) are shown
            // with the scenario that failed.
            let logged = rhaibot::scenario::Logged::default();
            let _ = tracing_subscriber::fmt()
                .with_writer(logged.clone())
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .with_max_level(tracing::Level::WARN)
                .try_init();
            let (mut passed, mut failed) = (0, 0);
            for f in &files {
                let outcome = rhaibot::scenario::run(f, &config, rt.handle(), &logged);
                match &outcome.failure {
                    None => {
                        passed += 1;
                        println!("ok    {} ({})", outcome.name, f.display());
                    }
                    Some(why) => {
                        failed += 1;
                        println!("FAIL  {} ({})\n  {}", outcome.name, f.display(), why.replace('\n', "\n  "));
                    }
                }
            }
            println!("{passed} passed, {failed} failed");
            rt.shutdown_background();
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Docs { dir } => {
            rhaibot::catalog::write_docs(&dir, Some(&Config::console_default().stdlib_dir))?;
            println!("wrote {}/reference.md and the .d.rhai definitions", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::New { name } => {
            rhaibot::project::create(&name)?;
            println!("created {}: cd {} && rhaibot test && rhaibot run", name.display(), name.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Kv { config, command } => {
            let config = load_config(config.as_ref())?;
            let store = Store::open_existing(&config.data_dir)?;
            let ns = |script: &str| script.strip_suffix(".rhai").unwrap_or(script).to_owned();
            match command {
                KvCommand::List { script, prefix } => {
                    let mut after: Option<String> = None;
                    loop {
                        let page =
                            store.kv_keys(&ns(&script), prefix.as_deref().unwrap_or(""), after.as_deref(), 1000)?;
                        for k in &page {
                            println!("{k}");
                        }
                        match page.last() {
                            Some(last) if page.len() == 1000 => after = Some(last.clone()),
                            _ => break,
                        }
                    }
                }
                KvCommand::Get { script, key } => match store.kv_get(&ns(&script), &key)? {
                    Some(json) => println!("{json}"),
                    None => {
                        eprintln!("rhaibot: no key `{key}` in {script}");
                        return Ok(ExitCode::FAILURE);
                    }
                },
                KvCommand::Set { script, key, value } => {
                    let json =
                        serde_json::from_str::<serde_json::Value>(&value).unwrap_or(serde_json::Value::String(value));
                    store.kv_set(&ns(&script), &key, &json.to_string(), None)?;
                }
                KvCommand::Delete { script, key } => {
                    if !store.kv_delete(&ns(&script), &key)? {
                        eprintln!("rhaibot: no key `{key}` in {script}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Jobs { config } => {
            let config = load_config(config.as_ref())?;
            // The running bot knows each job's real next time (an `every` job's moves on every
            // run); the database is the fallback when none runs.
            if let Ok(answer) = admin::request(&config.data_dir, &serde_json::json!({"cmd": "jobs"})) {
                let jobs = answer["jobs"].as_array().cloned().unwrap_or_default();
                if jobs.is_empty() {
                    println!("no scheduled jobs");
                }
                for j in jobs {
                    let next = j["next"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                    let next = next.map_or_else(
                        || "-".to_owned(),
                        |t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S%.3f %:z").to_string(),
                    );
                    let running = if j["running"] == true { "  (running)" } else { "" };
                    println!(
                        "{}  {}  [{}]  next {next}{running}",
                        j["script"].as_str().unwrap_or("?"),
                        j["name"].as_str().unwrap_or("?"),
                        j["schedule"].as_str().unwrap_or("?")
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let store = Store::open_existing(&config.data_dir)?;
            let show = |ms: Option<i64>| {
                ms.and_then(chrono::DateTime::from_timestamp_millis).map_or_else(
                    || "-".to_owned(),
                    |t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S %:z").to_string(),
                )
            };
            // No bot runs: what it had scheduled, by its last run.
            let jobs = store.jobs_all()?;
            if jobs.is_empty() {
                println!("no scheduled jobs");
            } else {
                println!("(no bot is running: its jobs as it last registered them)");
            }
            for j in jobs {
                println!(
                    "{}  {}  [{}]  next {}  last {}",
                    j.script,
                    j.name,
                    j.spec,
                    show(j.next_fire),
                    show(j.last_run)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { config, json } => {
            let config = load_config(config.as_ref())?;
            let answer =
                admin::request(&config.data_dir, &serde_json::json!({"cmd": "status"})).map_err(anyhow::Error::msg)?;
            if json {
                let status = serde_json::json!({"bots": answer["bots"], "scripts": answer["scripts"]});
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                for b in answer["bots"].as_array().into_iter().flatten() {
                    let listen = b["listen"].as_str().map(|l| format!(", listening on {l}")).unwrap_or_default();
                    println!(
                        "bot {} ({}, self id {}{listen})",
                        b["name"].as_str().unwrap_or("?"),
                        b["protocol"].as_str().unwrap_or("?"),
                        b["self_id"]
                    );
                }
                print_status(&answer["scripts"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Resume { script, config } => admin_command("resume", &script, config.as_ref()),
        Command::Reload { script, config } => admin_command("reload", &script, config.as_ref()),
        Command::Api { command: ApiCommand::List { filter, json } } => {
            let mut list = rhaibot::catalog::api_list(Some(&Config::console_default().stdlib_dir));
            if let Some(f) = filter.map(|f| f.to_lowercase()) {
                list.functions.retain(|x| x.name.to_lowercase().contains(&f));
                list.events.retain(|x| x.name.to_lowercase().contains(&f));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for f in &list.functions {
                    let call = match f.kind {
                        rhaibot::catalog::Kind::Property => f.name.clone(),
                        rhaibot::catalog::Kind::Index => {
                            format!("{}[{}]", f.name.trim_end_matches("[]"), f.params.join(", "))
                        }
                        _ => format!("{}({})", f.name, f.params.join(", ")),
                    };
                    println!("{call}  {}", f.doc);
                }
                for e in &list.events {
                    println!("on(\"{}\")  [{}] {}", e.name, e.protocol, e.doc);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn admin_command(cmd: &str, script: &str, config: Option<&PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    admin::request(&config.data_dir, &serde_json::json!({"cmd": cmd, "script": script})).map_err(anyhow::Error::msg)?;
    let done = match cmd {
        "reload" => "reloaded",
        "resume" => "resumed",
        other => other,
    };
    println!("{script}: {done}");
    Ok(ExitCode::SUCCESS)
}

fn print_status(scripts: &serde_json::Value) {
    let local = |ms: &serde_json::Value| {
        ms.as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(|| "-".to_owned(), |t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
    };
    println!(
        "{:<24} {:<12} {:<19} {:>9} {:>6} {:>8} {:>7} {:>9} {:>9}",
        "SCRIPT", "STATE", "VERSION", "CALLBACKS", "ERRORS", "TIMEOUTS", "DROPPED", "AVG", "MAX"
    );
    for s in scripts.as_array().into_iter().flatten() {
        let c = &s["counters"];
        let ms = |v: &serde_json::Value| {
            v.as_u64().map_or_else(|| "-".to_owned(), |us| format!("{:.2}ms", us as f64 / 1000.0))
        };
        let n = |v: &serde_json::Value| v.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!(
            "{:<24} {:<12} {:<19} {:>9} {:>6} {:>8} {:>7} {:>9} {:>9}",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            local(&s["loaded_at"]),
            n(&c["callbacks"]),
            n(&c["errors"]),
            n(&c["timeouts"]),
            n(&c["dropped"]),
            ms(&c["avg_us"]),
            ms(&c["max_us"]),
        );
        if let Some(e) = s["error"].as_str() {
            println!("    last load error: {e}");
        }
    }
}

/// SIGINT/SIGTERM start an orderly shutdown; a second signal exits at once.
async fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    next_signal(&mut term).await;
    shutdown.cancel();
    next_signal(&mut term).await;
    eprintln!("rhaibot: second signal, exiting now");
    std::process::exit(130);
}

async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) {
    match term {
        Some(t) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} },
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

//! TOML configuration in two layers: [`RawConfig`] mirrors the file exactly as written,
//! [`Config`] is the validated runtime view with defaults applied and secrets resolved.
//!
//! Every error names the file, the key and what was expected, so a typo is one message away
//! from being fixed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::adapter::listener::Guard;
use serde::Deserialize;

/// A configuration problem, always tied to the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("config file {path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message, which names the line, the key and what was expected.
        message: String,
    },
    /// A value parsed but makes no sense.
    #[error("config file {path}: key `{key}`: {expected}")]
    Invalid {
        /// The config file (or `<defaults>`).
        path: PathBuf,
        /// Dotted key, e.g. `bot[0].url`.
        key: String,
        /// What was expected instead.
        expected: String,
    },
}

/// The config file exactly as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory holding the bot scripts (`*.rhai`).
    pub scripts_dir: Option<PathBuf>,
    /// Directory of importable `.rhai` modules shipped with the runtime.
    pub stdlib_dir: Option<PathBuf>,
    /// Directory for the runtime's data (SQLite database).
    pub data_dir: Option<PathBuf>,
    /// Default time zone of cron jobs: an IANA name or `local` (the default).
    pub timezone: Option<String>,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
    /// Script limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// TLS for outgoing https:// and wss:// connections.
    #[serde(default)]
    pub tls: RawTls,
    /// Scripts' HTTP client (`http::`).
    #[serde(default)]
    pub http: RawHttp,
    /// How commands are recognised.
    #[serde(default)]
    pub commands: RawCommands,
    /// Bots to connect; none means the console backend.
    #[serde(default, rename = "bot")]
    pub bots: Vec<toml::Spanned<toml::Table>>,
}

/// `[log]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.
    pub level: Option<String>,
    /// `text` or `json`.
    pub format: Option<LogFormat>,
}

/// `[tls]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// A PEM file of extra certificate authorities to trust (private deployments), besides the
    /// bundled public roots.
    pub ca_file: Option<PathBuf>,
}

/// `[commands]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommands {
    /// Prefixes that start a command (`["/"]`); `""` allows none.
    pub prefixes: Option<Vec<String>>,
    /// Whether command names match in any case (false).
    pub case_insensitive: Option<bool>,
    /// Said to a user who lacks a command's permission (silence when unset).
    pub refuse_message: Option<String>,
    /// Said to a user whose command is cooling down; `{secs}` is the cooldown (silence when unset).
    pub cooldown_message: Option<String>,
}

/// `[http]` as written: how far scripts' `http::` requests may go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Default per-request timeout in milliseconds (10000).
    pub timeout_ms: Option<u64>,
    /// Largest response body read, in bytes (4 MiB).
    pub max_body_bytes: Option<usize>,
    /// Let scripts reach loopback, private and link-local addresses (false).
    pub allow_private: Option<bool>,
    /// Redirects followed at most (5).
    pub max_redirects: Option<usize>,
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[limits]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Worker threads that run script callbacks.
    pub workers: Option<usize>,
    /// Callbacks waiting for a worker before new events are dropped.
    pub queue: Option<usize>,
    /// Rhai operations one callback may perform.
    pub max_operations: Option<u64>,
    /// Wall-clock milliseconds one callback may run (time blocked in API calls excluded).
    pub callback_timeout_ms: Option<u64>,
    /// Wall-clock milliseconds one callback may take in all, time blocked in calls included.
    pub callback_total_ms: Option<u64>,
    /// Jobs and timers one script may have at once.
    pub max_jobs: Option<usize>,
    /// Shortest period of `every`, in milliseconds.
    pub min_timer_ms: Option<u64>,
    /// Milliseconds running callbacks get to finish at shutdown.
    pub shutdown_timeout_ms: Option<u64>,
    /// Milliseconds one protocol API call may take.
    pub call_timeout_ms: Option<u64>,
    /// Longest string a script may build, in bytes.
    pub max_string_size: Option<usize>,
    /// Largest array a script may build.
    pub max_array_size: Option<usize>,
    /// Largest object map a script may build.
    pub max_map_size: Option<usize>,
    /// Deepest function call nesting.
    pub max_call_depth: Option<usize>,
    /// Callbacks of one script that may run at once.
    pub script_concurrency: Option<usize>,
    /// Events one script may have waiting before new ones are dropped.
    pub script_queue: Option<usize>,
    /// The longest a callback may wait for a user's next message (`ev.prompt`), in ms.
    pub max_wait_ms: Option<u64>,
    /// Failed callbacks (errors or timeouts) within the window that quarantine a script; 0 never.
    pub quarantine_failures: Option<usize>,
    /// The quarantine window in seconds.
    pub quarantine_window_secs: Option<u64>,
}

/// One `[[bot]]` table as written, checked against its protocol's own keys (`protocol`
/// picks the shape; see [`RawBot::parse`]).
#[derive(Debug)]
pub enum RawBot {
    /// The embedded terminal chat.
    Console(RawConsoleBot),
    /// OneBot 11 (LLBot, NapCat, Lagrange, go-cqhttp).
    Onebot11(Box<crate::adapter::onebot11::config::RawBot>),
    /// Milky (LLBot, Lagrange.Milky).
    Milky(Box<crate::adapter::milky::config::RawBot>),
    /// The official QQ bot platform.
    Qq(Box<crate::adapter::qq::config::RawBot>),
}

/// The `protocol` values a `[[bot]]` may have.
const PROTOCOLS: &str = "\"console\", \"onebot11\", \"milky\" or \"qq\"";

impl RawBot {
    /// Reads a `[[bot]]` table into its protocol's shape; the error names the key at fault.
    pub fn parse(mut table: toml::Table) -> Result<RawBot, String> {
        fn shape<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
            toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().trim().to_owned())
        }
        let protocol = match table.remove("protocol") {
            Some(toml::Value::String(p)) => p,
            Some(other) => return Err(format!("`protocol` must be {PROTOCOLS}, got {other}")),
            None => {
                let keys: Vec<&String> = table.keys().collect();
                return Err(format!("missing `protocol` ({PROTOCOLS}); the table has {keys:?}"));
            }
        };
        match protocol.as_str() {
            "console" => shape(table).map(RawBot::Console),
            "onebot11" => shape(table).map(RawBot::Onebot11),
            "milky" => shape(table).map(RawBot::Milky),
            "qq" => shape(table).map(RawBot::Qq),
            other => Err(format!("unknown protocol \"{other}\", expected {PROTOCOLS}")),
        }
    }

    /// The `name` key, whatever the protocol.
    fn name(&self) -> Option<&str> {
        match self {
            RawBot::Console(b) => b.name.as_deref(),
            RawBot::Onebot11(b) => b.name.as_deref(),
            RawBot::Milky(b) => b.name.as_deref(),
            RawBot::Qq(b) => b.name.as_deref(),
        }
    }
}

/// A console `[[bot]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsoleBot {
    /// Name used in logs and by scripts to pick a bot.
    pub name: Option<String>,
    /// The protocol it imitates: `onebot11` (default) or `milky` (its events and actions).
    pub flavour: Option<String>,
}

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<empty>" } else { "<redacted>" })
    }
}

/// The validated configuration the runtime runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding the bot scripts.
    pub scripts_dir: PathBuf,
    /// Directory of importable modules.
    pub stdlib_dir: PathBuf,
    /// Directory for runtime data.
    pub data_dir: PathBuf,
    /// Default time zone of cron jobs.
    pub timezone: crate::scheduler::Zone,
    /// Log filter directive.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Script limits.
    pub limits: Limits,
    /// Bots, at least one.
    pub bots: Vec<BotConfig>,
    /// TLS for outgoing connections.
    pub tls: crate::tls::ClientTls,
    /// Scripts' HTTP client settings.
    pub http: crate::bindings::http::Settings,
    /// How commands are recognised and refused.
    pub commands: crate::script::command::Settings,
}

/// Script limits with defaults applied.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Worker threads running callbacks.
    pub workers: usize,
    /// Bounded queue of callbacks waiting for a worker.
    pub queue: usize,
    /// Operation budget per callback.
    pub max_operations: u64,
    /// Wall-clock budget per callback.
    pub callback_timeout: Duration,
    /// Total budget per callback, time blocked in calls included.
    pub callback_total: Duration,
    /// Jobs and timers per script.
    pub max_jobs: usize,
    /// Shortest timer period.
    pub min_timer: Duration,
    /// How long running callbacks get to finish at shutdown.
    pub shutdown_timeout: Duration,
    /// Timeout of one protocol API call.
    pub call_timeout: Duration,
    /// String size cap.
    pub max_string_size: usize,
    /// Array size cap.
    pub max_array_size: usize,
    /// Map size cap.
    pub max_map_size: usize,
    /// Call depth cap.
    pub max_call_depth: usize,
    /// Callbacks of one script running at once.
    pub script_concurrency: usize,
    /// Events one script may have waiting.
    pub script_queue: usize,
    /// Failures within `quarantine_window` that quarantine a script (0: never).
    pub quarantine_failures: usize,
    /// The quarantine window.
    pub quarantine_window: Duration,
    /// The longest a callback may wait for a user's next message.
    pub max_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 16,
            queue: 4096,
            max_operations: 50_000_000,
            callback_timeout: Duration::from_millis(1000),
            callback_total: Duration::from_secs(30),
            max_jobs: 100,
            min_timer: Duration::from_millis(100),
            shutdown_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(10),
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_call_depth: 64,
            script_concurrency: 4,
            script_queue: 1024,
            quarantine_failures: 10,
            quarantine_window: Duration::from_secs(60),
            max_wait: Duration::from_secs(600),
        }
    }
}

/// One bot, validated.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Unique name.
    pub name: String,
    /// Users it obeys whatever their role (`superusers`, any protocol): account ids as text.
    pub superusers: Vec<String>,
    /// Protocol and transport settings.
    pub kind: BotKind,
}

/// Protocol-specific settings of a bot.
#[derive(Debug, Clone)]
pub enum BotKind {
    /// The terminal chat, imitating OneBot 11 or (`milky`) Milky.
    Console {
        /// Whether it imitates Milky.
        milky: bool,
    },
    /// OneBot 11.
    OneBot11(crate::adapter::onebot11::config::OneBotConfig),
    /// Milky.
    Milky(crate::adapter::milky::config::MilkyConfig),
    /// The official QQ bot platform.
    Qq(crate::adapter::qq::config::QqConfig),
}

/// Exponential back-off bounds.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub min: Duration,
    /// Cap.
    pub max: Duration,
}

impl Config {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` is only used in messages and to resolve relative dirs.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::validate(raw, text, path, base, |name| std::env::var(name).ok())
    }

    /// The configuration used when no file is given: the console bot and `./scripts`.
    pub fn console_default() -> Config {
        Self::validate(RawConfig::default(), "", Path::new("<defaults>"), Path::new("."), |_| None)
            .expect("the built-in defaults are valid")
    }

    fn validate(
        raw: RawConfig,
        text: &str,
        path: &Path,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let invalid = |key: String, expected: String| ConfigError::Invalid { path: path.to_owned(), key, expected };
        let dir = |p: Option<PathBuf>, default: &str| {
            let p = p.unwrap_or_else(|| PathBuf::from(default));
            if p.is_absolute() { p } else { base.join(p) }
        };
        let d = Limits::default();
        let l = raw.limits;
        let positive = |key: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(invalid(format!("limits.{key}"), "a number greater than 0".into())),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let limits = Limits {
            workers: positive("workers", l.workers.map(|v| v as u64), d.workers as u64)? as usize,
            queue: positive("queue", l.queue.map(|v| v as u64), d.queue as u64)? as usize,
            max_operations: positive("max_operations", l.max_operations, d.max_operations)?,
            callback_timeout: Duration::from_millis(positive(
                "callback_timeout_ms",
                l.callback_timeout_ms,
                d.callback_timeout.as_millis() as u64,
            )?),
            callback_total: Duration::from_millis(positive(
                "callback_total_ms",
                l.callback_total_ms,
                d.callback_total.as_millis() as u64,
            )?),
            max_jobs: l.max_jobs.unwrap_or(d.max_jobs),
            min_timer: Duration::from_millis(positive("min_timer_ms", l.min_timer_ms, d.min_timer.as_millis() as u64)?),
            shutdown_timeout: Duration::from_millis(positive(
                "shutdown_timeout_ms",
                l.shutdown_timeout_ms,
                d.shutdown_timeout.as_millis() as u64,
            )?),
            call_timeout: Duration::from_millis(positive(
                "call_timeout_ms",
                l.call_timeout_ms,
                d.call_timeout.as_millis() as u64,
            )?),
            max_string_size: l.max_string_size.unwrap_or(d.max_string_size),
            max_array_size: l.max_array_size.unwrap_or(d.max_array_size),
            max_map_size: l.max_map_size.unwrap_or(d.max_map_size),
            max_call_depth: l.max_call_depth.unwrap_or(d.max_call_depth),
            script_concurrency: positive(
                "script_concurrency",
                l.script_concurrency.map(|v| v as u64),
                d.script_concurrency as u64,
            )? as usize,
            script_queue: positive("script_queue", l.script_queue.map(|v| v as u64), d.script_queue as u64)? as usize,
            quarantine_failures: l.quarantine_failures.unwrap_or(d.quarantine_failures),
            quarantine_window: Duration::from_secs(positive(
                "quarantine_window_secs",
                l.quarantine_window_secs,
                d.quarantine_window.as_secs(),
            )?),
            max_wait: Duration::from_millis(positive("max_wait_ms", l.max_wait_ms, d.max_wait.as_millis() as u64)?),
        };

        let ca_file = raw.tls.ca_file.map(|p| if p.is_absolute() { p } else { base.join(p) });
        let tls = crate::tls::client(ca_file.as_deref()).map_err(|e| invalid("tls.ca_file".into(), e.to_string()))?;
        let mut bots = Vec::new();
        for (i, table) in raw.bots.into_iter().enumerate() {
            let keys = BotKeys { index: i, tls: &tls, path, env: &env };
            let line = text.get(..table.span().start).map_or(0, |t| t.matches('\n').count() + 1);
            let mut table = table.into_inner();
            // `superusers` means the same on every protocol: read here, not by each adapter.
            let superusers = match table.remove("superusers") {
                None => Vec::new(),
                Some(toml::Value::Array(ids)) => ids
                    .into_iter()
                    .map(|id| match id {
                        toml::Value::String(s) => Ok(s),
                        toml::Value::Integer(n) => Ok(n.to_string()),
                        other => {
                            Err(keys.invalid("superusers", format!("account ids (numbers or strings), got {other}")))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => return Err(keys.invalid("superusers", format!("a list of account ids, got {other}"))),
            };
            let b = RawBot::parse(table).map_err(|e| {
                let at = if line > 0 { format!(" (the table at line {line})") } else { String::new() };
                ConfigError::Invalid { path: path.to_owned(), key: format!("bot[{i}]{at}"), expected: e }
            })?;
            let name = b.name().map_or_else(|| format!("bot{i}"), str::to_owned);
            if bots.iter().any(|x: &BotConfig| x.name == name) {
                return Err(keys.invalid("name", format!("a unique name, `{name}` is used twice")));
            }
            let kind = match b {
                RawBot::Console(b) => match b.flavour.as_deref() {
                    None | Some("onebot11") => BotKind::Console { milky: false },
                    Some("milky") => BotKind::Console { milky: true },
                    Some(other) => {
                        return Err(keys.invalid("flavour", format!("\"onebot11\" or \"milky\", not \"{other}\"")));
                    }
                },
                RawBot::Onebot11(b) => BotKind::OneBot11(crate::adapter::onebot11::config::validate(&b, &keys)?),
                RawBot::Milky(b) => BotKind::Milky(crate::adapter::milky::config::validate(&b, &keys)?),
                RawBot::Qq(b) => BotKind::Qq(crate::adapter::qq::config::validate(&b, &keys)?),
            };
            bots.push(BotConfig { name, superusers, kind });
        }
        if bots.is_empty() {
            bots.push(BotConfig {
                name: "console".into(),
                superusers: Vec::new(),
                kind: BotKind::Console { milky: false },
            });
        }

        let timezone = crate::scheduler::Zone::parse(raw.timezone.as_deref().unwrap_or("local"))
            .map_err(|e| invalid("timezone".into(), e))?;
        let hd = crate::bindings::http::Settings::default();
        let http = crate::bindings::http::Settings {
            timeout: Duration::from_millis(positive(
                "http.timeout_ms",
                raw.http.timeout_ms,
                hd.timeout.as_millis() as u64,
            )?),
            max_body_bytes: positive(
                "http.max_body_bytes",
                raw.http.max_body_bytes.map(|v| v as u64),
                hd.max_body_bytes as u64,
            )? as usize,
            allow_private: raw.http.allow_private.unwrap_or(hd.allow_private),
            max_redirects: raw.http.max_redirects.unwrap_or(hd.max_redirects),
        };
        let cd = crate::script::command::Settings::default();
        let mut prefixes = raw.commands.prefixes.unwrap_or(cd.prefixes);
        if prefixes.is_empty() {
            return Err(invalid("commands.prefixes".into(), "at least one prefix (\"\" for none)".into()));
        }
        // Longest first, so "//" is tried before "/" and "" last.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let commands = crate::script::command::Settings {
            prefixes,
            case_insensitive: raw.commands.case_insensitive.unwrap_or(cd.case_insensitive),
            refuse_message: raw.commands.refuse_message.unwrap_or_default(),
            cooldown_message: raw.commands.cooldown_message.unwrap_or_default(),
        };
        Ok(Config {
            commands,
            http,
            timezone,
            scripts_dir: dir(raw.scripts_dir, "scripts"),
            stdlib_dir: dir(raw.stdlib_dir, "stdlib"),
            data_dir: dir(raw.data_dir, "data"),
            log_level: raw.log.level.unwrap_or_else(|| "info".into()),
            log_format: raw.log.format.unwrap_or_default(),
            limits,
            bots,
            tls,
        })
    }
}

/// The context of one `[[bot]]` being checked: its place for error messages and the
/// environment secrets come from. Each protocol's `validate` uses it.
pub struct BotKeys<'a> {
    /// Its index among the `[[bot]]` tables.
    pub index: usize,
    /// TLS for its outgoing connections.
    pub tls: &'a crate::tls::ClientTls,
    /// The config file.
    pub path: &'a Path,
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl BotKeys<'_> {
    /// An error for key `key` of this bot: `bot[i].key: expected`.
    pub fn invalid(&self, key: &str, expected: String) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_owned(), key: format!("bot[{}].{key}", self.index), expected }
    }

    /// A secret from `value`, or from the environment variable named by `var` (which wins);
    /// `name` is the key, for the error when the variable is unset.
    pub fn secret(&self, value: &Option<String>, var: &Option<String>, name: &str) -> Result<Secret, ConfigError> {
        match var {
            Some(var) => (self.env)(var).map(Secret).ok_or_else(|| {
                self.invalid(
                    &format!("{name}_env"),
                    format!("expected the environment variable {var} to be set (it is not)"),
                )
            }),
            None => Ok(Secret(value.clone().unwrap_or_default())),
        }
    }

    /// A `host:port` to listen on from `value`.
    pub fn listen(&self, value: &Option<String>) -> Result<String, ConfigError> {
        let listen = value
            .clone()
            .ok_or_else(|| self.invalid("listen", "an address to listen on, e.g. \"127.0.0.1:8080\"".into()))?;
        listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| self.invalid("listen", format!("host:port, e.g. \"127.0.0.1:8080\", got \"{listen}\"")))?;
        Ok(listen)
    }

    /// The `path` key of a receiver (default `/`): a plain path, since it becomes a route, which
    /// takes `{..}` and `*` as captures and refuses a segment starting with `:`.
    pub fn route_path(&self, value: &Option<String>) -> Result<String, ConfigError> {
        let path = value.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.contains(['{', '}', '*', '?', '#']) || path.contains("/:") {
            return Err(self.invalid("path", format!("a plain path starting with /, e.g. \"/onebot\", got \"{path}\"")));
        }
        Ok(path)
    }

    /// The `url` key, which must start with one of `schemes` (`example` shows a good one).
    pub fn url(&self, value: &Option<String>, schemes: &[&str], example: &str) -> Result<String, ConfigError> {
        let url = value
            .clone()
            .ok_or_else(|| self.invalid("url", format!("the implementation's URL, e.g. \"{example}\"")))?;
        if !schemes.iter().any(|s| url.strip_prefix(s).is_some_and(|rest| rest.starts_with("://"))) {
            let what = schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ");
            return Err(self.invalid("url", format!("a {what} URL, got \"{url}\"")));
        }
        if schemes.contains(&"http") {
            crate::adapter::api_client::check_base(&url)
                .map_err(|why| self.invalid("url", format!("an API base URL: {why}")))?;
        }
        Ok(url)
    }

    /// A receiving listener's guard from `header_timeout_ms` and `max_connections`
    /// (defaults from [`Guard::default`]); zero in either would refuse every request.
    pub fn guard(&self, header_timeout_ms: Option<u64>, max_connections: Option<usize>) -> Result<Guard, ConfigError> {
        let d = Guard::default();
        let guard = Guard {
            header_timeout: header_timeout_ms.map_or(d.header_timeout, Duration::from_millis),
            max_connections: max_connections.unwrap_or(d.max_connections),
        };
        if guard.header_timeout.is_zero() || guard.max_connections == 0 {
            return Err(
                self.invalid("header_timeout_ms", "header_timeout_ms and max_connections greater than 0".into())
            );
        }
        Ok(guard)
    }

    /// Reconnect back-off bounds from `min_ms` and `max_ms` (defaults 1 s and 60 s).
    pub fn backoff(&self, min_ms: Option<u64>, max_ms: Option<u64>) -> Result<Backoff, ConfigError> {
        let backoff = Backoff {
            min: Duration::from_millis(min_ms.unwrap_or(1000)),
            max: Duration::from_millis(max_ms.unwrap_or(60_000)),
        };
        if backoff.min.is_zero() || backoff.min > backoff.max {
            return Err(
                self.invalid("reconnect_min_ms", "a delay greater than 0 and not above reconnect_max_ms".into())
            );
        }
        Ok(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/rhaibot.toml"))
    }

    #[test]
    fn empty_file_means_console() {
        let c = parse("").unwrap();
        assert!(matches!(c.bots[0].kind, BotKind::Console { .. }));
        assert_eq!(c.scripts_dir, Path::new("/etc/scripts"));
    }

    #[test]
    fn unknown_key_names_the_key_and_file() {
        let e = parse("[[bot]]\nprotocl = \"onebot11\"\n").unwrap_err().to_string();
        assert!(e.contains("/etc/rhaibot.toml") && e.contains("protocl"), "{e}");
    }

    #[test]
    fn each_protocol_has_its_own_keys() {
        let e = parse("[[bot]]\nprotocol = \"console\"\nurl = \"ws://x/\"\n").unwrap_err().to_string();
        assert!(e.contains("bot[0]") && e.contains("unknown field `url`"), "{e}");
        let e = parse("\n[[bot]]\nprotocol = \"onebot11\"\nurl = \"ws://x/\"\nacess_token = \"t\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("acess_token") && e.contains("access_token"), "{e}");
        let e = parse("[[bot]]\nprotocol = \"milk\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown protocol \"milk\"") && e.contains("onebot11"), "{e}");
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let e = parse("[tls]\nca_file = \"/nonexistent/ca.pem\"\n").unwrap_err().to_string();
        assert!(e.contains("tls.ca_file") && e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn onebot_needs_a_ws_url() {
        let e = parse("[[bot]]\nprotocol = \"onebot11\"\nurl = \"http://x\"\n").unwrap_err().to_string();
        assert!(e.contains("bot[0].url") && e.contains("ws://"), "{e}");
    }

    #[test]
    fn an_api_base_url_that_cannot_be_called_is_refused_at_load() {
        for (protocol, key) in [
            ("protocol = \"milky\"\nurl", "bot[0].url"),
            ("protocol = \"onebot11\"\ntransport = \"http\"\nurl", "bot[0].url"),
            ("protocol = \"qq\"\napp_id = \"1\"\nsecret = \"s\"\napi_url", "bot[0].api_url"),
        ] {
            for bad in ["http://u:p@h", "http://h/?a=1", "http://exa mple"] {
                let e = parse(&format!("[[bot]]\n{protocol} = \"{bad}\"\n")).unwrap_err().to_string();
                assert!(e.contains(key) && e.contains(bad), "{e}");
            }
        }
    }

    #[test]
    fn a_listener_that_would_refuse_everything_is_refused() {
        for protocol in [
            "protocol = \"onebot11\"\ntransport = \"reverse-ws\"",
            "protocol = \"milky\"\nurl = \"http://h\"\nevents = \"webhook\"",
            "protocol = \"qq\"\napp_id = \"1\"\nsecret = \"s\"\nevents = \"webhook\"",
        ] {
            for zero in ["max_connections = 0", "header_timeout_ms = 0"] {
                let text = format!("[[bot]]\n{protocol}\nlisten = \"127.0.0.1:8080\"\n{zero}\n");
                let e = parse(&text).unwrap_err().to_string();
                assert!(e.contains("bot[0].header_timeout_ms") && e.contains("greater than 0"), "{text}: {e}");
            }
        }
    }

    #[test]
    fn official_platform_bots_are_checked() {
        let qq = "[[bot]]\nprotocol = \"qq\"\napp_id = \"1\"\nsecret = \"s\"\n";
        assert!(matches!(parse(qq).unwrap().bots[0].kind, BotKind::Qq(_)));
        for (extra, key) in [
            ("listen = \"127.0.0.1:1\"\n", "bot[0].listen"),
            ("events = \"webhook\"\nlisten = \"127.0.0.1:1\"\nshards = 2\n", "bot[0].shards"),
            ("events = \"webhook\"\nlisten = \"127.0.0.1:1\"\npath = \"qq\"\n", "bot[0].path"),
            ("events = \"webhook\"\nlisten = \"127.0.0.1:1\"\npath = \"/{x}\"\n", "bot[0].path"),
            ("shards = 0\n", "bot[0].shards"),
            ("api_url = \"ftp://x\"\n", "bot[0].api_url"),
        ] {
            let e = parse(&format!("{qq}{extra}")).unwrap_err().to_string();
            assert!(e.contains(key), "{extra}: {e}");
        }
        let e = parse("[[bot]]\nprotocol = \"qq\"\napp_id = \"1\"\n").unwrap_err().to_string();
        assert!(e.contains("bot[0].secret") && e.contains("AppSecret"), "{e}");
    }

    #[test]
    fn a_bad_time_zone_is_named() {
        let e = parse("timezone = \"Asia/Nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("`timezone`") && e.contains("Asia/Nowhere"), "{e}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let e = parse("[limits]\nworkers = \"many\"\n").unwrap_err().to_string();
        assert!(e.contains("workers"), "{e}");
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rhaibot.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let raw: RawConfig = toml::from_str(&text).unwrap();
        let c = Config::validate(raw, &text, &path, Path::new("."), |_| Some("t".into())).unwrap();
        assert!(matches!(c.bots[0].kind, BotKind::OneBot11(_)));
    }

    #[test]
    fn the_example_configs_commented_bots_are_valid_too() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rhaibot.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut kinds = Vec::new();
        for block in text.split("\n\n").filter(|b| b.contains("# [[bot]]")) {
            let body: String = block
                .lines()
                .skip_while(|l| !l.starts_with("# [[bot]]"))
                .map(|l| l.strip_prefix("# ").unwrap_or(l))
                .filter(|l| !l.starts_with("tls_"))
                .map(|l| format!("{l}\n"))
                .collect();
            let raw: RawConfig = toml::from_str(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            let c = Config::validate(raw, &body, &path, Path::new("."), |_| Some("t".into())).unwrap();
            kinds.push(c.bots[0].kind.clone());
        }
        assert!(kinds.iter().any(|k| matches!(k, BotKind::Milky(_))), "the Milky block");
        assert!(kinds.iter().any(|k| matches!(k, BotKind::Qq(_))), "the official-platform block");
    }

    #[test]
    fn a_receivers_path_is_a_plain_path_for_every_protocol() {
        let bots = [
            "protocol = \"onebot11\"\ntransport = \"http\"\nurl = \"http://h\"\nevents = \"post\"\nlisten = \"127.0.0.1:0\"",
            "protocol = \"milky\"\nurl = \"http://h\"\nevents = \"webhook\"\nlisten = \"127.0.0.1:0\"",
            "protocol = \"qq\"\napp_id = \"1\"\nsecret = \"s\"\nevents = \"webhook\"\nlisten = \"127.0.0.1:0\"",
        ];
        for bot in bots {
            assert!(parse(&format!("[[bot]]\n{bot}\npath = \"/hook/in\"\n")).is_ok(), "{bot}");
            // Each of these made the router panic at start instead.
            for bad in ["onebot", "/:id", "/{id}", "/a/*rest"] {
                let e = parse(&format!("[[bot]]\n{bot}\npath = \"{bad}\"\n")).unwrap_err().to_string();
                assert!(e.contains("`bot[0].path`") && e.contains("a plain path"), "{bot} {bad}: {e}");
            }
        }
    }

    #[test]
    fn token_from_env() {
        let raw: RawConfig =
            toml::from_str("[[bot]]\nprotocol = \"onebot11\"\nurl = \"ws://h/\"\naccess_token_env = \"T\"\n").unwrap();
        let c = Config::validate(raw, "", Path::new("f"), Path::new("."), |_| Some("s3".into())).unwrap();
        let BotKind::OneBot11(ws) = &c.bots[0].kind else { panic!() };
        assert_eq!(ws.access_token.0, "s3");
        assert_eq!(format!("{:?}", ws.access_token), "<redacted>");
        let raw: RawConfig =
            toml::from_str("[[bot]]\nprotocol = \"onebot11\"\nurl = \"ws://h/\"\naccess_token_env = \"T\"\n").unwrap();
        let unset = Config::validate(raw, "", Path::new("f"), Path::new("."), |_| None).unwrap_err().to_string();
        assert_eq!(
            unset,
            "config file f: key `bot[0].access_token_env`: expected the environment variable T to be set (it is not)"
        );
    }
}

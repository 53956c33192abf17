//! `rhaibot test`: scenario files next to the scripts (`scripts/*.test.toml`), each run against
//! a fake bot with no network. A scenario is a list of steps, in order:
//!
//! ```toml
//! name = "sign-in"                       # optional
//! [answers]                              # what the fake bot answers to actions (default {})
//! get_group_member_info = { role = "admin" }
//!
//! [[step]]
//! send = "/signin"                       # a message; `user` (10001), `group` (private when
//! group = 100                            # absent), `role`, `nickname`, `at_bot` are optional
//! reply = " +10 points (streak 1), 10 in all"      # or reply_contains / reply_regex / no_reply
//!
//! [[step]]
//! event = { post_type = "notice", notice_type = "group_increase", group_id = 100, user_id = 8 }
//! call = "send_group_msg"                # an API call, with `params` it must include
//! params = { group_id = 100 }
//!
//! [[step]]
//! advance = "1d"                         # the virtual clock: due cron jobs and timers fire
//! kv = { script = "signin", key = "groups", equals = { "100" = 100 } }   # maps: the fields given
//! ```
//!
//! Each step's outputs (sends and other calls, in order) are matched by its expectations in
//! order: a reply expectation takes the first matching send (other scripts may answer too);
//! `no_reply` fails on any send. A failure shows every output of the step. Every scenario's
//! clock starts at Monday 2030-01-07 00:00 UTC and moves with the machine's, and ahead with
//! `advance`: `time::now()`, cron jobs, timers, kv expiry and cooldowns follow it. Every script
//! of the scripts dir is loaded, with a fresh store.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::adapter::EventSink;
use crate::bot::{Bot, CallError, InProcess, Link};
use crate::config::Config;
use crate::script::{Globals, Pool, ScriptHost};
use crate::storage::Store;

/// One scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: Option<String>,
    #[serde(default)]
    answers: BTreeMap<String, Value>,
    #[serde(default, rename = "step")]
    steps: Vec<Step>,
}

/// One step: something happens, then what must follow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    send: Option<String>,
    user: Option<i64>,
    group: Option<i64>,
    role: Option<String>,
    nickname: Option<String>,
    #[serde(default)]
    at_bot: bool,
    event: Option<Value>,
    advance: Option<String>,
    reply: Option<String>,
    reply_contains: Option<String>,
    reply_regex: Option<String>,
    #[serde(default)]
    no_reply: bool,
    call: Option<String>,
    params: Option<Value>,
    kv: Option<KvCheck>,
    kv_set: Option<KvSet>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvCheck {
    script: String,
    key: String,
    equals: Option<Value>,
    #[serde(default)]
    absent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvSet {
    script: String,
    key: String,
    value: Value,
}

/// The fake bot's end: records every call and answers from the scenario's answers.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<VecDeque<(String, Value)>>,
    answers: BTreeMap<String, Value>,
    next_id: AtomicI64,
}

impl InProcess for Recorder {
    fn call(&self, action: &str, params: &Value) -> Result<Value, CallError> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner).push_back((action.to_owned(), params.clone()));
        Ok(match self.answers.get(action) {
            Some(answer) => answer.clone(),
            None if action.starts_with("send_") => {
                json!({"message_id": self.next_id.fetch_add(1, Ordering::Relaxed) + 1})
            }
            None => json!({}),
        })
    }
}

/// The bot's own id in scenarios.
const SELF_ID: i64 = 10000;

/// What one scenario file came to.
#[derive(Debug)]
pub struct Outcome {
    /// The file.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// `None` when it passed; else what failed, with the step's outputs.
    pub failure: Option<String>,
}

/// What the runtime logged (warnings and errors: a script that did not load, a callback that
/// threw) while scenarios ran. A failing scenario shows it: a step that got no reply says
/// nothing of why. `rhaibot test` sends its log here; the last [`MAX_LOGGED`] bytes of it per
/// scenario are kept, since the failing step's error comes last.
#[derive(Debug, Clone, Default)]
pub struct Logged(Arc<Mutex<Log>>);

/// The log's bytes, and whether earlier ones were let go.
#[derive(Debug, Default)]
struct Log {
    bytes: Vec<u8>,
    cut: bool,
}

/// The most of the log a failing scenario shows.
pub const MAX_LOGGED: usize = 16 * 1024;

impl Logged {
    /// What was logged since the last take, as indented lines under a heading; empty if nothing.
    fn take(&self) -> String {
        let Log { bytes, cut } = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if cut && !lines.is_empty() {
            // The first line kept may have lost its start.
            lines.remove(0);
        }
        if lines.is_empty() {
            return String::new();
        }
        let cut = if cut { "\n  (earlier lines left out)" } else { "" };
        format!("\nthe runtime logged:{cut}\n  {}", lines.join("\n  "))
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logged {
    type Writer = Logged;

    fn make_writer(&'a self) -> Logged {
        self.clone()
    }
}

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        log.bytes.extend_from_slice(buf);
        if log.bytes.len() > MAX_LOGGED {
            let over = log.bytes.len() - MAX_LOGGED;
            log.bytes.drain(..over);
            log.cut = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The scenario files of `scripts_dir` (`*.test.toml`), sorted.
pub fn find(scripts_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scripts_dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.toml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Runs one scenario file against the scripts of `config`; a failure comes with what `logged`
/// took meanwhile.
pub fn run(file: &Path, config: &Config, rt: &tokio::runtime::Handle, logged: &Logged) -> Outcome {
    logged.take();
    let mut outcome = play_file(file, config, rt);
    if let Some(why) = &mut outcome.failure {
        why.push_str(&logged.take());
    }
    outcome
}

fn play_file(file: &Path, config: &Config, rt: &tokio::runtime::Handle) -> Outcome {
    let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut outcome = Outcome { file: file.to_owned(), name, failure: None };
    let scenario: Scenario = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str(&t).map_err(|e: toml::de::Error| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            outcome.failure = Some(format!("not a scenario: {e}"));
            return outcome;
        }
    };
    if let Some(n) = &scenario.name {
        outcome.name = n.clone();
    }
    outcome.failure = play(scenario, config, rt).err();
    outcome
}

/// Where every scenario's clock starts: Monday 2030-01-07 00:00 UTC, so whether an `advance`
/// crosses a cron time never depends on when the test runs.
const SCENARIO_START_MS: i64 = 1_893_974_400_000;

fn play(scenario: Scenario, config: &Config, rt: &tokio::runtime::Handle) -> Result<(), String> {
    crate::bindings::time::set_clock(SCENARIO_START_MS);
    let data = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
    // One clock for scripts, the store (expiry, cooldowns) and the scheduler: the machine's,
    // moved ahead by `advance`.
    let store = Arc::new(
        Store::open(&data.path().join("rhaibot.db"), Arc::new(crate::bindings::time::now_ms))
            .map_err(|e| e.to_string())?,
    );
    let recorder = Arc::new(Recorder { answers: scenario.answers, ..Recorder::default() });
    let bot = Arc::new(Bot::new(
        "test",
        &crate::adapter::console::PROTOCOL,
        Duration::from_secs(5),
        Link::InProcess(recorder.clone()),
    ));
    bot.set_self_id(crate::bot::BotId::Number(SELF_ID));
    let services = Arc::new(crate::bindings::Services {
        bots: vec![bot.clone()],
        rt: Some(rt.clone()),
        http: Some(crate::bindings::http::Client::new(config.http.clone(), &config.tls)),
        max_wait: config.limits.max_wait,
        commands: config.commands.clone(),
        store: Some(store.clone()),
    });
    let scheduler = crate::scheduler::Scheduler::new(Some(store.clone()));
    let globals = Globals::new(
        services,
        config.limits.clone(),
        Some(config.stdlib_dir.clone()),
        Some(scheduler.clone()),
        config.timezone.clone(),
    );
    let pool = Pool::new(config.limits.workers.clamp(1, 4), config.limits.queue).map_err(|e| e.to_string())?;
    let host = ScriptHost::new(globals, config.scripts_dir.clone(), pool);
    if host.load_all() == 0 {
        return Err(format!("no script loaded from {}", config.scripts_dir.display()));
    }
    let sink: EventSink = {
        let host = host.clone();
        Arc::new(move |ev| host.dispatch(ev))
    };
    let mut next_message = 0i64;
    let result = (|| {
        for (i, step) in scenario.steps.iter().enumerate() {
            let at = |what: String| format!("step {}: {what}", i + 1);
            if let Some(kv) = &step.kv_set {
                let ns = kv.script.trim_end_matches(".rhai");
                store.kv_set(ns, &kv.key, &kv.value.to_string(), None).map_err(|e| at(e.to_string()))?;
            }
            if let Some(text) = &step.send {
                next_message += 1;
                let ev = message(step, text, next_message, crate::bindings::time::now_ms());
                let ev = crate::adapter::onebot11::decode_event(&bot, ev, 1).map_err(|e| at(e.to_string()))?;
                sink(ev);
            }
            if let Some(raw) = &step.event {
                let mut raw = raw.clone();
                raw["self_id"] = json!(SELF_ID);
                raw["time"] = json!(crate::bindings::time::now_ms() / 1000);
                let ev = crate::adapter::onebot11::decode_event(&bot, raw, 1).map_err(|e| at(e.to_string()))?;
                sink(ev);
            }
            if let Some(advance) = &step.advance {
                let ms = duration_ms(advance).map_err(at)?;
                crate::bindings::time::advance_clock(ms);
                let now = crate::bindings::time::now_ms();
                let when = chrono::DateTime::from_timestamp_millis(now).unwrap_or_default();
                let (due, _) = scheduler.take_due(when);
                for d in due {
                    host.submit_job(d);
                }
            }
            // Every output of the step is in.
            ScriptHost::settle(&|| host.idle(), Duration::from_secs(10));
            let mut outputs: VecDeque<(String, Value)> =
                std::mem::take(&mut *recorder.calls.lock().unwrap_or_else(PoisonError::into_inner));
            let shown = outputs.iter().map(|(a, p)| describe(a, p)).collect::<Vec<_>>();
            let fail = |what: String| {
                let list = if shown.is_empty() {
                    "  (nothing)".to_owned()
                } else {
                    shown.iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n")
                };
                at(format!("{what}\n  the bot sent, in order:\n{list}"))
            };
            // A reply expectation takes the first send that matches it (other scripts may
            // answer too); each output is taken by at most one expectation.
            let take = |outputs: &mut VecDeque<(String, Value)>, ok: &dyn Fn(&str) -> bool| {
                let i = outputs
                    .iter()
                    .position(|(a, p)| is_send(a) && ok(&crate::adapter::console::render(&p["message"])))?;
                outputs.remove(i)
            };
            if let Some(want) = &step.reply
                && take(&mut outputs, &|got| got == want).is_none()
            {
                return Err(fail(format!("expected the reply {want:?}")));
            }
            if let Some(want) = &step.reply_contains
                && take(&mut outputs, &|got| got.contains(want.as_str())).is_none()
            {
                return Err(fail(format!("expected a reply containing {want:?}")));
            }
            if let Some(want) = &step.reply_regex {
                let re = regex::Regex::new(want).map_err(|e| at(format!("bad reply_regex: {e}")))?;
                if take(&mut outputs, &|got| re.is_match(got)).is_none() {
                    return Err(fail(format!("expected a reply matching /{want}/")));
                }
            }
            if let Some(action) = &step.call {
                let i = outputs
                    .iter()
                    .position(|(a, p)| a == action && step.params.as_ref().is_none_or(|want| includes(p, want)));
                match i {
                    Some(i) => {
                        outputs.remove(i);
                    }
                    None => {
                        let with = step.params.as_ref().map_or(String::new(), |p| format!(" with {p}"));
                        return Err(fail(format!("expected a call of {action}{with}")));
                    }
                }
            }
            if step.no_reply && outputs.iter().any(|(a, _)| is_send(a)) {
                return Err(fail("expected no reply".into()));
            }
            if let Some(kv) = &step.kv {
                let ns = kv.script.trim_end_matches(".rhai");
                let held = store.kv_get(ns, &kv.key).map_err(|e| at(e.to_string()))?;
                let held: Option<Value> = held.and_then(|t| serde_json::from_str(&t).ok());
                match (&kv.equals, kv.absent, &held) {
                    (_, true, Some(v)) => {
                        return Err(at(format!("expected kv {}:{} to be absent, it holds {v}", kv.script, kv.key)));
                    }
                    (Some(want), _, got) if !got.as_ref().is_some_and(|g| includes(g, want)) => {
                        return Err(at(format!(
                            "expected kv {}:{} = {want}, it holds {}",
                            kv.script,
                            kv.key,
                            got.as_ref().map_or("nothing".into(), Value::to_string)
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    })();
    host.drain(Duration::from_secs(5));
    result
}

fn is_send(action: &str) -> bool {
    matches!(action, "send_msg" | "send_group_msg" | "send_private_msg")
}

fn describe(action: &str, params: &Value) -> String {
    if is_send(action) {
        let place = if params.get("group_id").is_some_and(|g| !g.is_null()) {
            format!("group {}", params["group_id"])
        } else {
            format!("private {}", params["user_id"])
        };
        format!("reply [{place}] {:?}", crate::adapter::console::render(&params["message"]))
    } else {
        format!("call {action} {params}")
    }
}

/// Whether `have` includes every field of `want` (recursively for maps).
fn includes(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, v)| h.get(k).is_some_and(|hv| includes(hv, v))),
        (h, w) => h == w || crate::event::same_id(h, w),
    }
}

/// `90s`, `15m`, `2h`, `1d`, `500ms`, or a number of milliseconds.
fn duration_ms(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("advance {text:?}: a number with ms, s, m, h or d"))?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("advance {text:?}: unknown unit {other:?} (ms, s, m, h, d)")),
    };
    Ok(n.saturating_mul(factor))
}

/// A OneBot 11 message event for a step.
fn message(step: &Step, text: &str, id: i64, now_ms: i64) -> Value {
    let user = step.user.unwrap_or(10001);
    let mut segments = vec![json!({"type": "text", "data": {"text": text}})];
    if step.at_bot {
        segments.insert(0, json!({"type": "at", "data": {"qq": SELF_ID.to_string()}}));
    }
    let mut ev = json!({
        "time": now_ms / 1000, "self_id": SELF_ID, "post_type": "message", "message_type": "private",
        "sub_type": "friend", "message_id": id, "user_id": user, "message": segments,
        "raw_message": text, "font": 0,
        "sender": {"user_id": user, "nickname": step.nickname.clone().unwrap_or_else(|| format!("user{user}"))},
    });
    if let Some(group) = step.group {
        ev["message_type"] = json!("group");
        ev["sub_type"] = json!("normal");
        ev["group_id"] = json!(group);
        ev["sender"]["role"] = json!(step.role.clone().unwrap_or_else(|| "member".into()));
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failing scenario shows the end of a long log, where its error is, and says that
    /// earlier lines were left out.
    #[test]
    fn the_log_keeps_its_last_lines() {
        use std::io::Write;
        let logged = Logged::default();
        let mut w = logged.clone();
        for i in 0..2000 {
            writeln!(w, "WARN noise {i}").unwrap();
        }
        writeln!(w, "ERROR the cause").unwrap();
        let shown = logged.take();
        assert!(shown.contains("ERROR the cause") && shown.contains("(earlier lines left out)"), "{shown}");
        assert!(!shown.contains("noise 0\n") && shown.len() < 2 * MAX_LOGGED, "{}", shown.len());
        assert_eq!(logged.take(), "", "taken once");
    }

    #[test]
    fn durations_and_inclusion() {
        assert_eq!(duration_ms("90s").unwrap(), 90_000);
        assert_eq!(duration_ms("1d").unwrap(), 86_400_000);
        assert_eq!(duration_ms("250").unwrap(), 250);
        assert!(duration_ms("soon").is_err());
        assert!(includes(&json!({"a": 1, "b": {"c": "2", "d": 3}}), &json!({"b": {"c": 2}})));
        assert!(!includes(&json!({"a": 1}), &json!({"a": 2})));
    }
}

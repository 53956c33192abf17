//! The key-value store and the scheduler, end to end: scripts over the wire, a real SQLite
//! file, a process killed with SIGKILL.

use crate::support::onebot::{FakeOneBot, group_message, message_text};
use crate::support::process::BotDir;
use crate::support::{Running, within};

fn config(url: &str, extra: &str) -> String {
    format!(
        "timezone = \"UTC\"\n{extra}\n[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nurl = \"{url}\"\nreconnect_min_ms = 20\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callbacks_never_lose_an_increment() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "done" { onebot::send_private_msg(1, "read"); return; }
            kv::incr("n");
            kv::update("m", |v| (v ?? 0) + 1);
        });
    "#;
    let mut rt = Running::start(&config(&fake.url, "[limits]\nworkers = 8\n"), &[("count.rhai", script)]);
    fake.accept().await;
    for i in 0..300 {
        fake.push(group_message(1, i, "x"));
    }
    // Frames are read in order: the answer to the last one proves all 300 were dispatched,
    // and shutdown lets every queued callback finish.
    fake.push(group_message(1, 0, "done"));
    assert_eq!(message_text(&fake.next_action().await.params), "read");
    rt.stop_in_place().await;
    let store = rt.store();
    assert_eq!(store.kv_get("count", "n").unwrap().as_deref(), Some("300"));
    assert_eq!(store.kv_get("count", "m").unwrap().as_deref(), Some("300"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reporting_a_write_leaves_only_once_the_write_is_on_disk() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"on("message.group", |ev| { let n = kv::incr("n"); ev.reply(`${n}`); });"#;
    let mut rt = Running::start(&config(&fake.url, ""), &[("count.rhai", script)]);
    fake.accept().await;
    let events = 200;
    // All at once, so that the writes of many callbacks share commits.
    for i in 0..events {
        fake.push(group_message(1, i, "x"));
    }
    // Another process's view of the file: a reply must never be ahead of it.
    let other = rhaibot::storage::Store::open_existing(&rt.data_dir).unwrap();
    for _ in 0..events {
        let n: i64 = message_text(&fake.next_action().await.params).parse().unwrap();
        let stored: i64 = other.kv_get("count", "n").unwrap().unwrap_or_default().parse().unwrap();
        assert!(stored >= n, "the reply `{n}` left while the file held {stored}");
    }
    rt.stop_in_place().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_wrote_and_then_waits_has_its_prompt_sent() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        command("name", |ev, rest| {
            kv::set("asked", ev.user_id);
            let answer = ev.prompt("your name?", 20000);
            ev.reply(`hi ${answer.text}`);
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("ask.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 7, "/name"));
    assert_eq!(message_text(&fake.next_action().await.params), "your name?");
    fake.push(group_message(1, 7, "Alice"));
    assert_eq!(message_text(&fake.next_action().await.params), "hi Alice");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_jobs_and_timers_call_the_bot_over_the_wire() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        cron("tick", "* * * * * *", || onebot::send_group_msg(1, "tick"));
        after(20, || onebot::send_group_msg(2, "after"));
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("jobs.rhai", script)]);
    fake.accept().await;
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        seen.insert(message_text(&fake.next_action().await.params));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["after", "tick"]);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signin_example_keeps_points_and_schedules_its_leaderboard() {
    let mut fake = FakeOneBot::start(None).await;
    let script = include_str!("../../scripts/signin.rhai");
    let rt = Running::start(&config(&fake.url, ""), &[("signin.rhai", script)]);
    fake.accept().await;
    let mut say = async |user: i64, text: &str| {
        fake.push(group_message(42, user, text));
        message_text(&fake.next_action().await.params)
    };
    assert_eq!(say(7, "/signin").await, " +10 points (streak 1), 10 in all");
    assert_eq!(say(7, "/signin").await, " already signed in today");
    assert_eq!(say(8, "/签到").await, " +10 points (streak 1), 10 in all");
    assert_eq!(say(8, "/points").await, "you have 10 points");
    assert_eq!(say(8, "/top").await, "leaderboard:\n1. 7: 10\n2. 8: 10");

    let jobs = rt.store().jobs_active().unwrap();
    assert_eq!((jobs[0].script.as_str(), jobs[0].name.as_str()), ("signin.rhai", "morning"));
    let next = chrono::DateTime::from_timestamp_millis(jobs[0].next_fire.unwrap()).unwrap();
    assert_eq!(next.format("%H:%M:%S").to_string(), "08:00:00");
    rt.stop().await;
}

#[test]
fn a_returned_write_survives_sigkill() {
    let script =
        "for i in 0..100 { kv::set(`k${i}`, i); }\nkv::set(\"last\", #{ n: 42, s: \"x\" });\nprint(\"written\");\n";
    let dir = BotDir::new(&[("durable.rhai", script)]);
    let mut bot = dir.spawn(&["run"]);
    bot.wait_for_log("written");
    bot.kill(); // SIGKILL: no shutdown, no flush
    let store = rhaibot::storage::Store::open_in(&dir.path().join("data")).unwrap();
    assert_eq!(store.kv_get("durable", "last").unwrap().as_deref(), Some(r#"{"n":42,"s":"x"}"#));
    assert_eq!(store.kv_get("durable", "k99").unwrap().as_deref(), Some("99"));
}

#[test]
fn the_kv_cli_reads_and_writes_a_scripts_data() {
    let dir = BotDir::new(&[]);
    // Where no bot ever ran there is no database, and the tools do not make one.
    let none = dir.run(&["kv", "list", "hello"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no database here"), "{none:?}");
    assert!(!dir.path().join("data").exists(), "kv must not create a data dir");
    assert!(!dir.run(&["jobs"]).status.success());
    assert!(dir.run(&["run"]).status.success(), "a run (console, no input) makes the database");
    let run = |args: &[&str]| {
        let out = dir.run(&[&["kv"], args].concat());
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert!(run(&["set", "hello.rhai", "a:1", r#"{"x": [1, 2]}"#]).0);
    assert!(run(&["set", "hello", "a:2", "plain text"]).0);
    assert_eq!(run(&["get", "hello", "a:1"]), (true, "{\"x\":[1,2]}\n".into()));
    assert_eq!(run(&["get", "hello", "a:2"]), (true, "\"plain text\"\n".into()));
    assert_eq!(run(&["list", "hello", "a:"]), (true, "a:1\na:2\n".into()));
    assert!(run(&["delete", "hello", "a:1"]).0);
    assert!(!run(&["get", "hello", "a:1"]).0);
    let jobs = dir.run(&["jobs"]);
    assert_eq!(String::from_utf8_lossy(&jobs.stdout), "no scheduled jobs\n");
}

#[test]
fn a_second_runtime_on_the_same_data_dir_is_refused() {
    let dir = BotDir::new(&[]);
    let mut first = dir.spawn(&["run"]);
    first.wait_for_log("scripts loaded");
    let second = dir.run(&["run"]);
    assert!(!second.status.success());
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(msg.contains("in use by another rhaibot process"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_vanish_at_once() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "set" { kv::set("t", "v", 1); }
            onebot::send_private_msg(1, `${kv::get("t", "none")}`);
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("ttl.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 1, "set"));
    assert_eq!(message_text(&fake.next_action().await.params), "v");
    // Wait for expiry by asking until the answer changes; each answer is a fresh read.
    within("the key to expire", async {
        loop {
            fake.push(group_message(1, 1, "get"));
            if message_text(&fake.next_action().await.params) == "none" {
                break;
            }
        }
    })
    .await;
    rt.stop().await;
}

/// With no bot running, `rhaibot jobs` shows what the bot had scheduled, and says it is not
/// running.
#[test]
fn jobs_of_a_stopped_bot_are_listed_as_last_registered() {
    let dir = BotDir::new(&[("j.rhai", "cron(\"morning\", \"0 0 8 * * *\", || print(\"x\"));\n")]);
    assert!(dir.run(&["run"]).status.success());
    let out = dir.run(&["jobs"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("no bot is running") && stdout.contains("j.rhai  morning  [cron 0 0 8 * * *"), "{stdout}");
}

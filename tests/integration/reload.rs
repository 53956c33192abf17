//! Hot reload and supervision over the wire: edits go live, broken edits keep the old version,
//! deleted scripts stop, failing scripts are quarantined and come back, importers of a changed
//! module reload, and a blocked callback never stalls the others.

use std::sync::Arc;

use crate::support::onebot::{self, FakeOneBot, Reply, group_message, message_text};
use crate::support::{Running, within};

fn config(url: &str, extra: &str) -> String {
    format!("{extra}\n[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nurl = \"{url}\"\nreconnect_min_ms = 20\n")
}

fn replying(text: &str) -> String {
    format!(r#"on("message.group", |ev| {{ if ev.text == "ping" {{ ev.reply("{text}"); }} }});"#)
}

/// Sends "ping" until the answer is `expected` (each answer is one round trip).
async fn ping_until(fake: &mut FakeOneBot, expected: &str) {
    within(&format!("the reply {expected:?}"), async {
        loop {
            fake.push(group_message(1, 2, "ping"));
            if message_text(&fake.next_action().await.params) == expected {
                return;
            }
        }
    })
    .await
}

/// Sends one "ping" and collects the `n` replies it gets, sorted.
async fn ping_replies(fake: &mut FakeOneBot, n: usize) -> Vec<String> {
    fake.push(group_message(1, 2, "ping"));
    let mut replies = Vec::new();
    for _ in 0..n {
        replies.push(message_text(&fake.next_action().await.params));
    }
    replies.sort();
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_goes_live_a_broken_edit_keeps_the_old_version_and_a_deletion_stops_it() {
    let mut fake = FakeOneBot::start(None).await;
    let v1 = format!("{}\ncron(\"yearly\", \"0 0 0 1 1 *\", || ());", replying("v1"));
    let rt = Running::start(&config(&fake.url, ""), &[("a.rhai", &v1), ("other.rhai", &replying("other"))]);
    fake.accept().await;
    assert_eq!(ping_replies(&mut fake, 2).await, ["other", "v1"]);
    assert_eq!(rt.store().jobs_active().unwrap()[0].name, "yearly");

    let status = rt.status().await;
    let v1_loaded = status.iter().find(|s| s["name"] == "a.rhai").unwrap()["loaded_at"].clone();
    rt.write("scripts/a.rhai", Some(&replying("v2")));
    let fresh =
        |s: Option<&serde_json::Value>| s.is_some_and(|s| s["state"] == "running" && s["loaded_at"] != v1_loaded);
    rt.wait_status("a.rhai", "the edit to load", fresh).await;
    assert_eq!(ping_replies(&mut fake, 2).await, ["other", "v2"]);
    assert!(rt.store().jobs_active().unwrap().is_empty(), "the old version's cron job went with it");

    rt.write("scripts/a.rhai", Some("on(\"message\", |ev| {\n    let x = ;\n});\n"));
    rt.wait_status("a.rhai", "the broken edit to be rejected", |s| s.is_some_and(|s| s["state"] == "stale")).await;
    let status = rt.status().await;
    let a = status.iter().find(|s| s["name"] == "a.rhai").unwrap();
    assert!(a["error"].as_str().unwrap().contains("a.rhai:2:13: syntax error"), "{a}");
    assert_eq!(ping_replies(&mut fake, 2).await, ["other", "v2"], "the old version still answers");

    rt.write("scripts/a.rhai", None);
    rt.wait_status("a.rhai", "the deletion to unload it", |s| s.is_none()).await;
    // Two pings, two answers, both from the other script: a.rhai answers no more.
    assert_eq!(ping_replies(&mut fake, 1).await, ["other"]);
    assert_eq!(ping_replies(&mut fake, 1).await, ["other"]);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_is_quarantined_and_an_edit_brings_it_back() {
    let mut fake = FakeOneBot::start(None).await;
    let failing = r#"on("message.group", |ev| { throw "broken"; });"#;
    let limits = "[limits]\nquarantine_failures = 3\nquarantine_window_secs = 600\n";
    let rt = Running::start(&config(&fake.url, limits), &[("bad.rhai", failing)]);
    fake.accept().await;
    for _ in 0..3 {
        fake.push(group_message(1, 2, "x"));
    }
    rt.wait_status("bad.rhai", "quarantine", |s| s.is_some_and(|s| s["state"] == "quarantined")).await;
    let status = rt.status().await;
    assert_eq!(status[0]["counters"]["errors"], 3);

    rt.write("scripts/bad.rhai", Some(&replying("fixed")));
    rt.wait_status("bad.rhai", "the fixed version", |s| s.is_some_and(|s| s["state"] == "running")).await;
    assert_eq!(ping_replies(&mut fake, 1).await, ["fixed"]);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_script_resumes_on_command() {
    let mut fake = FakeOneBot::start(None).await;
    let flaky = r#"on("message.group", |ev| { if ev.text != "ping" { throw "no"; } ev.reply("up"); });"#;
    let limits = "[limits]\nquarantine_failures = 2\n";
    let rt = Running::start(&config(&fake.url, limits), &[("flaky.rhai", flaky)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "x"));
    fake.push(group_message(1, 2, "x"));
    rt.wait_status("flaky.rhai", "quarantine", |s| s.is_some_and(|s| s["state"] == "quarantined")).await;
    let data_dir = rt.data_dir.clone();
    let resume = move || rhaibot::admin::request(&data_dir, &serde_json::json!({"cmd": "resume", "script": "flaky"}));
    tokio::task::spawn_blocking(resume).await.unwrap().unwrap();
    fake.push(group_message(1, 2, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "up");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_an_imported_module_reloads_its_importers() {
    let mut fake = FakeOneBot::start(None).await;
    let importer = r#"import "greet" as g; on("message.group", |ev| ev.reply(g::text()));"#;
    let rt = Running::start(
        &config(&fake.url, ""),
        &[("stdlib/greet.rhai", r#"fn text() { "hello v1" }"#), ("uses.rhai", importer)],
    );
    fake.accept().await;
    ping_until(&mut fake, "hello v1").await;
    rt.write("stdlib/greet.rhai", Some(r#"fn text() { "hello v2" }"#));
    ping_until(&mut fake, "hello v2").await;
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_blocked_in_a_call_does_not_stall_the_same_script() {
    let responder: onebot::Responder = Arc::new(|action, params| match action {
        "get_group_info" => Reply::Silent,
        a => onebot::default_response(a, params),
    });
    let mut fake = FakeOneBot::with_responder(None, responder).await;
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "slow" { try { onebot::get_group_info(1); } catch {} return; }
            ev.reply("fast");
        });
    "#;
    let rt = Running::start(&config(&fake.url, "[limits]\ncall_timeout_ms = 3000\n"), &[("s.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "slow"));
    assert_eq!(fake.next_action().await.action, "get_group_info");
    fake.push(group_message(1, 2, "quick"));
    assert_eq!(message_text(&fake.next_action().await.params), "fast");
    rt.stop().await;
}

/// A save in the middle of a conversation: the waiting callback of the old version still gets
/// its answer (and the new version does not take it as a message of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_survives_a_reload_of_its_script() {
    let version = |v: &str| {
        format!(
            r#"command("ask", |ev| {{ let a = ev.prompt("{v}: name?", 20000); ev.reply(`{v}: got ${{a.text}}`); }});
               on("message.group", |ev| {{ if ev.text == "ping" {{ ev.reply("{v}"); }} else if !ev.text.starts_with("/") {{ ev.reply(`{v} saw ${{ev.text}}`); }} }});"#
        )
    };
    let mut fake = FakeOneBot::start(None).await;
    let rt = Running::start(&config(&fake.url, ""), &[("talk.rhai", &version("v1"))]);
    fake.accept().await;
    fake.push(group_message(1, 2, "/ask"));
    assert_eq!(message_text(&fake.next_action().await.params), "v1: name?");
    rt.write("scripts/talk.rhai", Some(&version("v2")));
    // Another member pings until v2 answers (a ping of the asker's own would be the answer).
    within("v2 to answer", async {
        loop {
            fake.push(group_message(1, 3, "ping"));
            if message_text(&fake.next_action().await.params) == "v2" {
                return;
            }
        }
    })
    .await;
    fake.push(group_message(1, 2, "Ann"));
    assert_eq!(message_text(&fake.next_action().await.params), "v1: got Ann");
    fake.push(group_message(1, 2, "Bob"));
    assert_eq!(message_text(&fake.next_action().await.params), "v2 saw Bob", "the conversation is over");
    rt.stop().await;
}

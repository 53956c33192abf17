//! Regression tests for what hostile input and fault injection found (issue "Hardening"), each
//! over the real wire against the fakes, plus replies per chat in order.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::onebot::{self, FakeOneBot, SELF_ID, group_message, heartbeat, message_text};
use crate::support::{Running, reverse_connect, within};

const PING: &str = r#"on("message", |ev| { if ev.text == "ping" { ev.reply("pong"); } });"#;

fn config(url: &str, extra: &str) -> String {
    format!(
        "{extra}\n[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nurl = \"{url}\"\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
    )
}

fn reverse_config(extra: &str, bot_extra: &str) -> String {
    format!(
        "{extra}\n[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\ntransport = \"reverse-ws\"\nlisten = \"127.0.0.1:0\"\n{bot_extra}\n"
    )
}

/// The next action frame on a reverse WebSocket, answered with `ok`.
async fn answer_next(ws: &mut crate::support::Socket) -> Value {
    let frame = within("an action frame", ws.next()).await.expect("socket open").expect("frame");
    let call: Value = serde_json::from_str(frame.to_text().expect("text")).expect("JSON");
    let ok = json!({"status": "ok", "retcode": 0, "data": {"message_id": 1}, "echo": call["echo"]});
    ws.send(Message::Text(ok.to_string().into())).await.expect("answer");
    call
}

/// 1. One 400 KB event name once made memory and time grow with its square.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_dotted_event_name_is_skipped_and_the_bot_keeps_answering() {
    let mut fake = FakeOneBot::start(None).await;
    let rt = Running::start(&config(&fake.url, ""), &[("ping.rhai", PING)]);
    fake.accept().await;
    let name = "a.".repeat(200_000);
    fake.push(json!({"time": 1, "self_id": 10001, "post_type": name}));
    fake.push(json!({"time": 1, "self_id": 10001, "post_type": "notice", "notice_type": "a.".repeat(1000)}));
    fake.push(group_message(1, 2, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    rt.stop().await;
}

/// 2. Each reverse WebSocket account is its own bot: replies go back where the event came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_websocket_answers_each_account_on_its_own_connection() {
    let who = r#"on("message", |ev| { ev.reply(`${ev.text} from ${ev.self_id}`); });
                 on("notice.notify.poke", |ev| { bot(10001); onebot::send_private_msg(5, "picked 10001"); });"#;
    let rt = Running::start(&reverse_config("", ""), &[("who.rhai", who)]);
    let port = rt.listen_addr("main").await.port();
    let mut a = within("account A", reverse_connect(port, None, "Universal", 10001)).await.expect("A accepted");
    let mut b = within("account B", reverse_connect(port, None, "Universal", 10002)).await.expect("B accepted");
    for (ws, id) in [(&mut a, 10001), (&mut b, 10002)] {
        let mut ev = group_message(7, 8, "hi");
        ev["self_id"] = json!(id);
        ws.send(Message::Text(ev.to_string().into())).await.unwrap();
    }
    // Each socket gets exactly its own account's answer.
    assert_eq!(message_text(&answer_next(&mut a).await["params"]), "hi from 10001");
    assert_eq!(message_text(&answer_next(&mut b).await["params"]), "hi from 10002");
    // bot(self_id) picks an account, from an event of the other one.
    let poke = json!({"time": 1, "self_id": 10002, "post_type": "notice", "notice_type": "notify",
                      "sub_type": "poke", "user_id": 8, "target_id": 10002});
    b.send(Message::Text(poke.to_string().into())).await.unwrap();
    assert_eq!(message_text(&answer_next(&mut a).await["params"]), "picked 10001");

    // A second Universal connection of account A replaces the first, which is closed.
    let mut a2 = within("account A again", reverse_connect(port, None, "Universal", 10001)).await.expect("accepted");
    let closed = within("the replaced connection to close", async {
        loop {
            match a.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed);
    let mut ev = group_message(7, 8, "again");
    ev["self_id"] = json!(10001);
    a2.send(Message::Text(ev.to_string().into())).await.unwrap();
    assert_eq!(message_text(&answer_next(&mut a2).await["params"]), "again from 10001");
    rt.stop().await;
}

/// 2. An account's API and Event connections pair up, apart from another account's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_websocket_pairs_the_api_and_event_roles_of_one_account() {
    let rt = Running::start(&reverse_config("", ""), &[("p.rhai", PING)]);
    let port = rt.listen_addr("main").await.port();
    let mut api_a = reverse_connect(port, None, "API", 10001).await.expect("accepted");
    let mut events_a = reverse_connect(port, None, "Event", 10001).await.expect("accepted");
    let mut api_b = reverse_connect(port, None, "API", 10002).await.expect("accepted");
    let mut ev = group_message(3, 4, "ping");
    ev["self_id"] = json!(10001);
    events_a.send(Message::Text(ev.to_string().into())).await.unwrap();
    assert_eq!(answer_next(&mut api_a).await["params"]["group_id"], 3);
    let mut ev = group_message(5, 4, "ping");
    ev["self_id"] = json!(10002);
    // B has no event socket; its API socket may carry events too (any role that sends them).
    api_b.send(Message::Text(ev.to_string().into())).await.unwrap();
    assert_eq!(answer_next(&mut api_b).await["params"]["group_id"], 5);
    rt.stop().await;
}

/// 3. A peer that stops reading blocks writes; the heartbeat watchdog must still fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_dropped_by_the_watchdog_and_reconnected() {
    let mut fake = FakeOneBot::start(None).await;
    let flood = r#"
        on("message", |ev| {
            if ev.text == "flood" {
                let big = "x";
                while big.len() < 500000 { big += big; }
                for i in 0..60 { ev.reply(big); }
            } else if ev.text == "ping" { ev.reply("pong"); }
        });
    "#;
    let rt = Running::start(&config(&fake.url, "[limits]\ncallback_timeout_ms = 5000\n"), &[("f.rhai", flood)]);
    fake.accept().await;
    fake.push(heartbeat(200));
    fake.stop_reading();
    fake.push(group_message(1, 2, "flood"));
    within("the watchdog's reconnect", fake.accept()).await;
    fake.push(group_message(1, 2, "ping"));
    // Replies of the flood that were still queued may arrive first on the new connection.
    fake.next_action_where(|c| message_text(&c.params) == "pong").await;
    rt.stop().await;
}

/// 4. A job still running when its next time comes is skipped, never started twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_job_never_overlaps_itself() {
    let mut fake = FakeOneBot::start(None).await;
    let job = r#"
        every(100, || {
            let running = kv::incr("running");
            let t = timestamp();
            while t.elapsed < 0.3 {}
            kv::decr("running");
            onebot::send_private_msg(1, `running ${running}`);
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("job.rhai", job)]);
    fake.accept().await;
    for _ in 0..3 {
        assert_eq!(message_text(&fake.next_action().await.params), "running 1");
    }
    rt.stop().await;
}

/// 5. Jobs count against their script's concurrency, so blocked jobs cannot take every worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_blocked_in_calls_leave_workers_for_other_scripts() {
    let silent: onebot::Responder = Arc::new(|action, params| match action {
        "get_status" => onebot::Reply::Silent,
        a => onebot::default_response(a, params),
    });
    let mut fake = FakeOneBot::with_responder(None, silent).await;
    let mut jobs = String::new();
    for _ in 0..8 {
        jobs += "every(100, || { try { onebot::get_status(); } catch (e) {} });\n";
    }
    // Calls time out at last, so shutdown can finish the jobs' runs.
    let limits = "[limits]\nworkers = 8\nscript_concurrency = 4\ncall_timeout_ms = 1500\n";
    let rt = Running::start(&config(&fake.url, limits), &[("a_jobs.rhai", &jobs), ("ping.rhai", PING)]);
    fake.accept().await;
    // Wait until the jobs hold what they may (four calls hang unanswered).
    for _ in 0..4 {
        assert_eq!(fake.next_action().await.action, "get_status");
    }
    fake.push(group_message(1, 2, "ping"));
    fake.next_action_where(|call| {
        assert_ne!(call.action, "get_status", "a fifth job started: jobs exceed the script's concurrency");
        message_text(&call.params) == "pong"
    })
    .await;
    rt.stop().await;
}

/// 5. A callback looping over calls that time out is stopped at its total budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_blocked_in_calls_are_stopped_at_their_total_budget() {
    let silent: onebot::Responder = Arc::new(|action, params| match action {
        "get_status" => onebot::Reply::Silent,
        a => onebot::default_response(a, params),
    });
    let mut fake = FakeOneBot::with_responder(None, silent).await;
    let hang =
        r#"on("message", |ev| { if ev.text == "hang" { loop { try { onebot::get_status(); } catch (e) {} } } });"#;
    let limits = "[limits]\nworkers = 2\ncall_timeout_ms = 100\ncallback_total_ms = 1000\n";
    let scripts = [("a_hang.rhai", hang), ("b_hang.rhai", hang), ("ping.rhai", PING)];
    let rt = Running::start(&config(&fake.url, limits), &scripts);
    fake.accept().await;
    fake.push(group_message(1, 2, "hang"));
    fake.push(group_message(3, 2, "hang"));
    fake.push(group_message(5, 2, "ping"));
    fake.next_action_where(|call| call.action == "send_group_msg" && message_text(&call.params) == "pong").await;
    let stopped = |s: Option<&Value>| s.is_some_and(|s| s["counters"]["timeouts"].as_u64() >= Some(1));
    rt.wait_status("a_hang.rhai", "the hanging callback to be stopped", stopped).await;
    rt.stop().await;
}

/// 6. A top level that blocks holds up only its own file's load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_top_level_does_not_block_loading_other_scripts() {
    let silent: onebot::Responder = Arc::new(|action, params| match action {
        "get_status" => onebot::Reply::Silent,
        a => onebot::default_response(a, params),
    });
    let mut fake = FakeOneBot::with_responder(None, silent).await;
    let limits = "[limits]\ncall_timeout_ms = 200\ncallback_total_ms = 8000\n";
    let rt = Running::start(&config(&fake.url, limits), &[("ping.rhai", PING)]);
    fake.accept().await;
    rt.write("scripts/slow.rhai", Some("loop { try { onebot::get_status(); } catch (e) {} }"));
    assert_eq!(fake.next_action().await.action, "get_status", "the slow top level runs");
    rt.write("scripts/other.rhai", Some(r#"on("message", |ev| { if ev.text == "x" { ev.reply("other"); } });"#));
    let loaded = |s: Option<&Value>| s.is_some_and(|s| s["state"] == "running");
    rt.wait_status("other.rhai", "the other script to load", loaded).await;
    fake.push(group_message(1, 2, "x"));
    let call = fake.next_action_where(|call| call.action != "get_status").await;
    assert_eq!(message_text(&call.params), "other");
    rt.stop().await;
}

/// 7. Timers are bounded: a minimum period and a cap per script, with clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_floods_are_refused_with_clear_errors() {
    let mut fake = FakeOneBot::start(None).await;
    let flood = r#"
        let errors = [];
        try { every(1, || {}); } catch (e) { errors.push(e); }
        try { for i in 0..5000 { every(60000, || {}); } } catch (e) { errors.push(e); }
        on("message", |ev| { ev.reply(errors[0] + " | " + errors[1] + " | " + jobs().len()); });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("flood.rhai", flood)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "?"));
    let reply = message_text(&fake.next_action().await.params);
    assert!(reply.contains("every(1): the period must be at least 100 ms (limits.min_timer_ms)"), "{reply}");
    assert!(reply.contains("already has 100 jobs and timers (limits.max_jobs)"), "{reply}");
    assert!(reply.ends_with("| 100"), "{reply}");
    rt.stop().await;
}

/// 7. A quarantined script's jobs stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_scripts_jobs_are_paused() {
    let mut fake = FakeOneBot::start(None).await;
    let failing = r#"every(100, || { onebot::send_private_msg(1, "tick"); throw "boom"; });"#;
    let limits = "[limits]\nquarantine_failures = 2\n";
    let rt = Running::start(&config(&fake.url, limits), &[("fail.rhai", failing)]);
    fake.accept().await;
    for _ in 0..2 {
        assert_eq!(message_text(&fake.next_action().await.params), "tick");
    }
    let quarantined = |s: Option<&Value>| s.is_some_and(|s| s["state"] == "quarantined");
    rt.wait_status("fail.rhai", "quarantine", quarantined).await;
    let jobs = rt.admin("jobs", "").await.expect("jobs");
    assert_eq!(jobs["jobs"][0]["paused"], true, "{jobs}");
    rt.stop().await;
}

/// 8. Half-open connections time out, and a listener keeps to its connection cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_time_out_and_the_listener_is_capped() {
    let cfg = reverse_config("", "header_timeout_ms = 300\nmax_connections = 3");
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    let addr = rt.listen_addr("main").await;
    let mut half_open = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.expect("half a request");
        half_open.push(s);
    }
    // Over the cap: closed at once.
    let mut extra = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let n = within("the refused connection to close", extra.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "a connection over the cap is closed");
    // The half-open ones are closed by the header timeout, which frees the listener.
    for s in &mut half_open {
        let closed = within("the header timeout", async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {} // a 408 answer, then the close
                }
            }
        })
        .await;
        assert!(closed);
    }
    let mut ws = within("a legitimate client", reverse_connect(addr.port(), None, "Universal", SELF_ID))
        .await
        .expect("accepted once the half-open connections are gone");
    ws.send(Message::Text(group_message(1, 2, "ping").to_string().into())).await.unwrap();
    assert_eq!(message_text(&answer_next(&mut ws).await["params"]), "pong");
    rt.stop().await;
}

/// 10. Dedup drops only what is truly the same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_keeps_distinct_events_and_drops_the_same_event_from_two_transports() {
    let mut fake = FakeOneBot::start(None).await;
    // Two bots on one account: every event can come twice, once per connection.
    let cfg = format!(
        "{}\n[[bot]]\nname = \"second\"\nprotocol = \"onebot11\"\nurl = \"{}\"\n",
        config(&fake.url, ""),
        fake.url
    );
    let script = r#"
        on("message", |ev| { onebot::send_private_msg(1, `message ${ev.message_id} ${ev.text}`); });
        on("notice.notify.poke", |ev| { onebot::send_private_msg(1, "poke"); });
        on("notice.group_upload", |ev| { onebot::send_private_msg(1, `upload ${ev.raw.file.name}`); });
    "#;
    let rt = Running::start(&cfg, &[("d.rhai", script)]);
    fake.accept().await;
    fake.accept().await;
    let poke = json!({"time": 5, "self_id": SELF_ID, "post_type": "notice", "notice_type": "notify",
                      "sub_type": "poke", "group_id": 9, "user_id": 2, "target_id": SELF_ID});
    fake.push(poke.clone());
    fake.push(poke);
    for file in ["a.txt", "b.txt"] {
        fake.push(json!({"time": 5, "self_id": SELF_ID, "post_type": "notice", "notice_type": "group_upload",
                         "group_id": 9, "user_id": 2, "file": {"id": file, "name": file, "size": 1, "busid": 1}}));
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(message_text(&fake.next_action().await.params));
    }
    seen.sort();
    assert_eq!(seen, ["poke", "poke", "upload a.txt", "upload b.txt"], "equal events on one connection are two events");

    // The same message on both connections, its id a number on one and a string on the other.
    let mut msg = group_message(9, 2, "once");
    msg["message_id"] = json!(777);
    fake.push(msg.clone());
    msg["message_id"] = json!("777");
    fake.push_on(0, msg);
    fake.push(group_message(9, 2, "after"));
    let replies = [fake.next_action().await, fake.next_action().await];
    let texts: Vec<String> = replies.iter().map(|c| message_text(&c.params)).collect();
    assert!(texts[0].ends_with(" once"), "{texts:?}");
    assert!(texts[1].ends_with(" after"), "the copy from the other connection was dropped: {texts:?}");
    rt.stop().await;
}

/// 11. Wire input that breaks the protocol's rules cannot quarantine a script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_and_replies_without_a_target_do_not_quarantine_a_script() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        on("message", |ev| { ev.reply("pong"); });
        on("notice.client_status", |ev| { ev.reply("no one to tell"); });
    "#;
    let rt = Running::start(&config(&fake.url, "[limits]\nquarantine_failures = 3\n"), &[("s.rhai", script)]);
    fake.accept().await;
    for _ in 0..10 {
        let mut bad = group_message(1, 2, "x");
        bad.as_object_mut().unwrap().remove("group_id");
        bad.as_object_mut().unwrap().remove("user_id");
        fake.push(bad);
        fake.push(json!({"time": 1, "self_id": SELF_ID, "post_type": "notice", "notice_type": "client_status",
                         "online": true, "client": {}}));
    }
    fake.push(group_message(1, 2, "valid"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    let status = rt.status().await;
    assert_eq!(status[0]["state"], "running", "{status:?}");
    assert_eq!(status[0]["counters"]["errors"], 0, "{status:?}");
    rt.stop().await;
}

/// 13. A call the caller gave up on (timed out before the connection was up) is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_timed_out_before_the_connection_was_up_is_never_sent() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        try { onebot::get_status(); } catch (e) {}
        on("message", |ev| { ev.reply("pong"); });
    "#;
    let rt = Running::start(&config(&fake.url, "[limits]\ncall_timeout_ms = 100\n"), &[("s.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "ping"));
    let call = fake.next_action().await;
    assert_eq!(call.action, "send_group_msg", "the timed-out get_status went out late");
    rt.stop().await;
}

/// 14. Editors' hidden and temporary files are not scripts; an empty save keeps the old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_files_are_ignored_and_an_empty_save_keeps_the_old_version() {
    let mut fake = FakeOneBot::start(None).await;
    let echo = r#"on("message", |ev| { ev.reply(ev.text); });"#;
    let scripts = [
        ("echo.rhai", echo),
        (".#echo.rhai", echo),
        ("echo.rhai~", echo),
        (".echo.rhai.swp", echo),
        (".hidden.rhai", echo),
        ("#echo.rhai#", echo),
    ];
    let rt = Running::start(&config(&fake.url, ""), &scripts);
    fake.accept().await;
    fake.push(group_message(1, 2, "one"));
    fake.push(group_message(1, 2, "two"));
    assert_eq!(message_text(&fake.next_action().await.params), "one");
    assert_eq!(message_text(&fake.next_action().await.params), "two", "each message answered once");

    // A truncate-then-write save, caught while empty.
    std::fs::write(rt.root.join("scripts/echo.rhai"), "").unwrap();
    let answer = rt.admin("reload", "echo.rhai").await;
    assert!(answer.is_err(), "an empty file does not replace a script: {answer:?}");
    fake.push(group_message(1, 2, "three"));
    assert_eq!(message_text(&fake.next_action().await.params), "three");
    rt.stop().await;
}

/// Replies in one chat come out in order; a slow chat never delays another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_one_chat_keep_their_order_and_chats_run_side_by_side() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "slow" {
                let t = timestamp();
                while t.elapsed < 0.5 {}
                ev.reply("slow done");
                return;
            }
            // Some work, so parallel callbacks of one chat would overtake each other.
            let n = kv::incr(`seen:${ev.group_id}`);
            let t = timestamp();
            while t.elapsed < 0.001 {}
            ev.reply(`${ev.text}:${n}`);
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("order.rhai", script)]);
    fake.accept().await;
    for i in 1..=200 {
        fake.push(group_message(10, 2, &i.to_string()));
    }
    for i in 1..=200 {
        let call = fake.next_action().await;
        assert_eq!(message_text(&call.params), format!("{i}:{i}"), "reply {i} of one chat out of order");
    }
    fake.push(group_message(20, 2, "slow"));
    fake.push(group_message(30, 2, "fast"));
    let first = fake.next_action().await;
    assert_eq!((first.params["group_id"].clone(), message_text(&first.params)), (json!(30), "fast:1".to_owned()));
    assert_eq!(message_text(&fake.next_action().await.params), "slow done");
    rt.stop().await;
}

/// Fakes report their own panics instead of timing out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "the fake panicked")]
async fn a_panicking_fake_fails_the_test_with_its_message() {
    let broken: onebot::Responder = Arc::new(|action, _| panic!("no answer for {action}"));
    let mut fake = FakeOneBot::with_responder(None, broken).await;
    let rt =
        Running::start(&config(&fake.url, ""), &[("s.rhai", r#"on("meta_event", |ev| { onebot::get_status(); });"#)]);
    fake.accept().await;
    fake.next_action().await;
    rt.stop().await;
}

/// 8, 16. The HTTP POST receiver refuses an oversized body (413) and one that stalls (408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_post_receiver_refuses_oversized_and_stalled_bodies() {
    let fake = crate::support::onebot_http::FakeHttp::start(None).await;
    let cfg = format!(
        "[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\ntransport = \"http\"\nurl = \"{}\"\nevents = \"post\"\nlisten = \"127.0.0.1:0\"\nmax_frame_bytes = 1000\nheader_timeout_ms = 300\n",
        fake.url
    );
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    let addr = rt.listen_addr("main").await;
    let big = format!("{{\"post_type\": \"notice\", \"pad\": \"{}\"}}", "x".repeat(2000));
    let answer =
        crate::support::http_client().post(format!("http://{addr}/")).body(big).send().await.expect("answered");
    assert_eq!(answer.status().as_u16(), 413);

    let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stalled.write_all(head.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    within("the body timeout", stalled.read_to_end(&mut response)).await.expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    rt.stop().await;
}

/// An HTTP API answer larger than `max_frame_bytes` fails the call clearly instead of being
/// buffered whole; the bot goes on calling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_http_api_answer_fails_the_call_and_the_bot_goes_on() {
    let responder: crate::support::onebot::Responder = Arc::new(|action: &str, params: &Value| match action {
        "get_login_info" => onebot::Reply::Ok(json!({"user_id": 1, "nickname": "x".repeat(100_000)})),
        _ => onebot::default_response(action, params),
    });
    let mut fake = crate::support::onebot_http::FakeHttp::with_responder(None, responder).await;
    let cfg = format!(
        "[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\ntransport = \"http\"\nurl = \"{}\"\nmax_frame_bytes = 4096\n",
        fake.url
    );
    let script = r#"
        after(1, || {
            let seen = "no error";
            try { onebot::get_login_info(); } catch (e) { seen = e.message; }
            onebot::send_private_msg(1, seen);
        });
    "#;
    let rt = Running::start(&cfg, &[("h.rhai", script)]);
    assert_eq!(fake.next_action().await.action, "get_login_info");
    let said = message_text(&fake.next_action().await.params);
    assert!(said.contains("larger than 4096 bytes"), "{said}");
    rt.stop().await;
}

/// 9. An SSE event without an end is dropped at the size cap; the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_sse_event_is_dropped_and_the_stream_goes_on() {
    let mut fake = crate::support::onebot_http::FakeHttp::start(None).await;
    let cfg = format!(
        "[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\ntransport = \"http\"\nurl = \"{}\"\nevents = \"sse\"\nmax_frame_bytes = 65536\n",
        fake.url
    );
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    fake.stream_opened().await;
    let line = format!("data: {}\n", "x".repeat(1000));
    for _ in 0..64 {
        fake.push_raw(line.repeat(64)); // 4 MiB in all, no blank line
    }
    fake.push_raw("\n".into());
    fake.push(group_message(1, 2, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    rt.stop().await;
}

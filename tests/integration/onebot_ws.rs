//! OneBot 11 forward WebSocket: scripts answer over the wire, stay isolated, and the
//! connection heals itself.

use serde_json::json;

use crate::support::onebot::{self, FakeOneBot, group_message, heartbeat, message_text, private_cq_message};
use crate::support::{Running, within};

const PING: &str = r#"on("message", |ev| { if ev.text == "ping" { ev.reply("pong"); } });"#;

fn config(url: &str, extra: &str) -> String {
    format!(
        "{extra}\n[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nurl = \"{url}\"\naccess_token = \"s3cret\"\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_replies_to_a_group_message_over_the_wire() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let rt = Running::start(&config(&fake.url, ""), &[("ping.rhai", PING)]);
    let conn = fake.accept().await;
    assert_eq!(conn.authorization.as_deref(), Some("Bearer s3cret"));

    fake.push(group_message(555, 42, "ping"));
    let call = fake.next_action().await;
    assert_eq!(call.action, "send_group_msg");
    assert_eq!(call.params["group_id"], 555);
    assert_eq!(message_text(&call.params), "pong");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cq_string_messages_are_read_and_private_replies_target_the_user() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let rt = Running::start(&config(&fake.url, ""), &[("ping.rhai", PING)]);
    fake.accept().await;
    fake.push(private_cq_message(42, "ping"));
    let call = fake.next_action().await;
    assert_eq!((call.action.as_str(), &call.params["user_id"]), ("send_private_msg", &json!(42)));
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_loop_is_stopped_while_other_scripts_keep_answering() {
    // One worker: the pong can only come after the loop was stopped at its deadline.
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let spin = r#"on("message", |ev| { if ev.text == "spin" { loop {} } });"#;
    let limits = "[limits]\nworkers = 1\ncallback_timeout_ms = 200\n";
    let rt = Running::start(&config(&fake.url, limits), &[("a_spin.rhai", spin), ("ping.rhai", PING)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "spin"));
    fake.push(group_message(1, 2, "ping"));
    let call = fake.next_action().await;
    assert_eq!(message_text(&call.params), "pong");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throwing_script_does_not_affect_others() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let throws = r#"on("message", |ev| { throw "boom"; });"#;
    let broken_top = r#"let x = 1; throw "top level fails";"#;
    let scripts = [("a_throw.rhai", throws), ("b_broken.rhai", broken_top), ("ping.rhai", PING)];
    let rt = Running::start(&config(&fake.url, ""), &scripts);
    fake.accept().await;
    for _ in 0..3 {
        fake.push(group_message(1, 2, "ping"));
        assert_eq!(message_text(&fake.next_action().await.params), "pong");
    }
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_actions_raise_catchable_errors_with_retcode_and_wording() {
    let responder: onebot::Responder = std::sync::Arc::new(|action, params| match action {
        "get_group_info" => onebot::Reply::Fail(1404, format!("group {} not found", params["group_id"])),
        a => onebot::default_response(a, params),
    });
    let mut fake = FakeOneBot::with_responder(Some("s3cret"), responder).await;
    let script = r#"
        on("message.group", |ev| {
            try {
                onebot::get_group_info(#{ group_id: 777 });
            } catch (e) {
                ev.reply(`${e.kind} ${e.code} ${e.message}`);
            }
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("err.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "go"));
    assert_eq!(fake.next_action().await.action, "get_group_info");
    let reply = fake.next_action().await;
    assert_eq!(message_text(&reply.params), "failed 1404 get_group_info failed: retcode 1404: group 777 not found");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_argument_types_fail_before_anything_is_sent() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let script = r#"
        on("message.group", |ev| {
            let err = "";
            try { onebot::send_group_msg(true, "x"); } catch (e) { err = e.message; }
            onebot::send_private_msg(ev.user_id, err);
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("types.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "go"));
    let call = fake.next_action().await;
    assert_eq!(call.action, "send_private_msg", "the mistyped call must not reach the wire");
    assert_eq!(message_text(&call.params), "onebot::send_group_msg: parameter `group_id` must be int, got bool");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_connection_drops_and_delivers_later_events() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let rt = Running::start(&config(&fake.url, ""), &[("ping.rhai", PING)]);
    fake.accept().await;
    fake.drop_connection();
    fake.accept().await;
    fake.push(group_message(9, 2, "ping"));
    assert_eq!(fake.next_action().await.params["group_id"], 9);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_replaced_after_three_heartbeat_intervals() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let rt = Running::start(&config(&fake.url, ""), &[("ping.rhai", PING)]);
    fake.accept().await;
    fake.push(heartbeat(50));
    // The fake now stays silent but keeps the socket open: only the watchdog can notice.
    within("the watchdog's reconnect", fake.accept()).await;
    fake.push(group_message(3, 2, "ping"));
    assert_eq!(fake.next_action().await.params["group_id"], 3);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_skipped_and_the_connection_stays_up() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let on_meta =
        r#"on("meta_event.lifecycle", |ev| { onebot::send_private_msg(1, "lifecycle " + ev.raw.sub_type); });"#;
    let rt = Running::start(&config(&fake.url, ""), &[("ping.rhai", PING), ("meta.rhai", on_meta)]);
    fake.accept().await;
    assert_eq!(message_text(&fake.next_action().await.params), "lifecycle connect");
    fake.push_raw("{not json".into());
    fake.push(json!({"what": "unknown shape"}));
    fake.push(json!({"status": "ok", "retcode": 0, "data": null, "echo": "no-such-call"}));
    fake.push(group_message(4, 2, "ping"));
    assert_eq!(fake.next_action().await.params["group_id"], 4);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_events_are_delivered_raw_under_their_native_name() {
    let mut fake = FakeOneBot::start(Some("s3cret")).await;
    let script = r#"on("notice.brand_new", |ev| { onebot::send_private_msg(1, ev.name + " " + ev["extra"]); });"#;
    let rt = Running::start(&config(&fake.url, ""), &[("new.rhai", script)]);
    fake.accept().await;
    fake.push(json!({"time": 1, "self_id": 1, "post_type": "notice", "notice_type": "brand_new", "sub_type": "x", "extra": "kept"}));
    assert_eq!(message_text(&fake.next_action().await.params), "notice.brand_new.x kept");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_sends_without_waiting_and_reply_wait_raises() {
    let responder: onebot::Responder = std::sync::Arc::new(|action, params| match action {
        "send_group_msg" => onebot::Reply::Fail(100, "muted".into()),
        a => onebot::default_response(a, params),
    });
    let mut fake = FakeOneBot::with_responder(None, responder).await;
    let script = r#"
        on("message.group", |ev| {
            ev.reply("first");                         // fails on the other end: logged, not raised
            onebot::send_private_msg(1, "after");
            try { ev.reply_wait("second"); } catch (e) { onebot::send_private_msg(1, `caught ${e.code}`); }
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("r.rhai", script)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "go"));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let call = fake.next_action().await;
        seen.push(format!("{} {}", call.action, message_text(&call.params)));
    }
    assert_eq!(
        seen,
        ["send_group_msg first", "send_private_msg after", "send_group_msg second", "send_private_msg caught 100"]
    );
    rt.stop().await;
}

//! The cross-protocol verbs (`chat::`): one script, run unchanged on OneBot 11 and on Milky,
//! and the actions each protocol gets for it.

use serde_json::{Value, json};

use crate::support::Running;
use crate::support::milky::{self, FakeMilky};
use crate::support::onebot::{self, FakeOneBot};

const VERBS: &str = r#"
    on("message", |ev| {
        chat::send_group(20001, "g");
        chat::send_private(10002, "p");
        chat::recall_group(20001, 30001);
        chat::recall_private(10002, 30002);
        chat::mute(20001, 10002, 60);
        chat::unmute(20001, 10002);
        chat::kick(20001, 10002);
        chat::member_info(20001, 10002);
    });
    on("request.friend", |ev| chat::approve(ev));
    on("request.group", |ev| chat::reject(ev));
"#;

fn text(message: &Value) -> String {
    message.as_array().into_iter().flatten().filter_map(|s| s["data"]["text"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verbs_become_onebot_actions() {
    let mut fake = FakeOneBot::start(None).await;
    let cfg = format!("[[bot]]\nname = \"ob\"\nprotocol = \"onebot11\"\nurl = \"{}\"\n", fake.url);
    let rt = Running::start(&cfg, &[("verbs.rhai", VERBS)]);
    fake.accept().await;
    fake.push(onebot::group_message(20001, 10002, "go"));
    let mut got = Vec::new();
    for _ in 0..8 {
        let call = fake.next_action().await;
        got.push((call.action, call.params));
    }
    let expected = [
        ("send_group_msg", json!({"group_id": 20001})),
        ("send_private_msg", json!({"user_id": 10002})),
        ("delete_msg", json!({"message_id": 30001})),
        ("delete_msg", json!({"message_id": 30002})),
        ("set_group_ban", json!({"group_id": 20001, "user_id": 10002, "duration": 60})),
        ("set_group_ban", json!({"group_id": 20001, "user_id": 10002, "duration": 0})),
        ("set_group_kick", json!({"group_id": 20001, "user_id": 10002})),
        ("get_group_member_info", json!({"group_id": 20001, "user_id": 10002})),
    ];
    for ((action, params), (want, fields)) in got.iter().zip(expected) {
        assert_eq!(action, want);
        for (k, v) in fields.as_object().unwrap() {
            assert_eq!(&params[k], v, "{action}.{k}");
        }
    }
    assert_eq!(text(&got[0].1["message"]), "g");
    fake.push(json!({"time": 1, "self_id": onebot::SELF_ID, "post_type": "request", "request_type": "friend",
                     "user_id": 10003, "comment": "hi", "flag": "f-1"}));
    let call = fake.next_action().await;
    assert_eq!(
        (call.action.as_str(), &call.params),
        ("set_friend_add_request", &json!({"flag": "f-1", "approve": true}))
    );
    fake.push(json!({"time": 1, "self_id": onebot::SELF_ID, "post_type": "request", "request_type": "group",
                     "sub_type": "add", "group_id": 20001, "user_id": 10004, "comment": "", "flag": "g-1"}));
    let call = fake.next_action().await;
    assert_eq!(call.action, "set_group_add_request");
    assert_eq!(call.params, json!({"flag": "g-1", "sub_type": "add", "approve": false}));
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_verbs_become_milky_actions() {
    let mut fake = FakeMilky::start(None).await;
    let cfg = format!("[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{}\"\n", fake.url);
    let rt = Running::start(&cfg, &[("verbs.rhai", VERBS)]);
    fake.opened().await;
    fake.push(milky::group_message(20001, 10002, 30009, milky::text("go")));
    let mut got = Vec::new();
    for _ in 0..8 {
        let call = fake.next_call_where(|c| c.action != "get_impl_info").await;
        got.push((call.action, call.body));
    }
    let expected = [
        ("send_group_message", json!({"group_id": 20001})),
        ("send_private_message", json!({"user_id": 10002})),
        ("recall_group_message", json!({"group_id": 20001, "message_seq": 30001})),
        ("recall_private_message", json!({"user_id": 10002, "message_seq": 30002})),
        ("set_group_member_mute", json!({"group_id": 20001, "user_id": 10002, "duration": 60})),
        ("set_group_member_mute", json!({"group_id": 20001, "user_id": 10002, "duration": 0})),
        ("kick_group_member", json!({"group_id": 20001, "user_id": 10002})),
        ("get_group_member_info", json!({"group_id": 20001, "user_id": 10002})),
    ];
    for ((action, body), (want, fields)) in got.iter().zip(expected) {
        assert_eq!(action, want);
        for (k, v) in fields.as_object().unwrap() {
            assert_eq!(&body[k], v, "{action}.{k}");
        }
    }
    assert_eq!(got[0].1["message"], json!([{"type": "text", "data": {"text": "g"}}]));
    fake.push(json!({"time": 1, "self_id": milky::SELF_ID, "event_type": "friend_request",
                     "data": {"initiator_id": 10003, "initiator_uid": "u_3", "comment": "hi", "via": "search"}}));
    let call = fake.next_call().await;
    assert_eq!((call.action.as_str(), &call.body), ("accept_friend_request", &json!({"initiator_uid": "u_3"})));
    fake.push(json!({"time": 1, "self_id": milky::SELF_ID, "event_type": "group_join_request",
                     "data": {"group_id": 20001, "notification_seq": 40001, "is_filtered": true, "initiator_id": 10004, "comment": ""}}));
    let call = fake.next_call().await;
    assert_eq!(call.action, "reject_group_request");
    assert_eq!(
        call.body,
        json!({"notification_seq": 40001, "notification_type": "join_request", "group_id": 20001, "is_filtered": true})
    );
    fake.push(json!({"time": 1, "self_id": milky::SELF_ID, "event_type": "group_invited_join_request",
                     "data": {"group_id": 20001, "notification_seq": 40002, "initiator_id": 10004, "target_user_id": 10005}}));
    let call = fake.next_call().await;
    assert_eq!(call.action, "reject_group_request");
    assert_eq!(
        call.body,
        json!({"notification_seq": 40002, "notification_type": "invited_join_request", "group_id": 20001,
               "is_filtered": false})
    );
    rt.stop().await;
}

/// Milky's ids are integers: a chat:: verb given one as text sends the number, and refuses text
/// that is not one, as a milky:: call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milky_verbs_send_ids_given_as_text_as_integers() {
    let mut fake = FakeMilky::start(None).await;
    let cfg = format!("[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{}\"\n", fake.url);
    let script = r#"on("message", |ev| {
        chat::send_group("20001", "hi");
        chat::recall_private(" 10002 ", "30001");
        try { chat::send_group("g-1", "no"); } catch (e) { chat::send_private(10002, e.message); }
    });"#;
    let rt = Running::start(&cfg, &[("ids.rhai", script)]);
    fake.opened().await;
    fake.push(milky::group_message(20001, 10002, 30009, milky::text("go")));
    let call = fake.next_call_where(|c| c.action != "get_impl_info").await;
    assert_eq!((call.action.as_str(), &call.body["group_id"]), ("send_group_message", &json!(20001)));
    let call = fake.next_call_where(|c| c.action != "get_impl_info").await;
    assert_eq!(call.body, json!({"user_id": 10002, "message_seq": 30001}));
    let call = fake.next_call_where(|c| c.action != "get_impl_info").await;
    assert_eq!(call.action, "send_private_message");
    assert_eq!(
        text(&call.body["message"]),
        "chat::send_group: Milky's send_group_message: parameter `group_id` must be int, got string"
    );
    rt.stop().await;
}

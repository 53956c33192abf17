//! Every example bot in scripts/, driven over the wire.

use serde_json::json;

use crate::support::Running;
use crate::support::onebot::{FakeOneBot, SELF_ID, group_message, message_text};

fn config(url: &str) -> String {
    format!("[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nurl = \"{url}\"\nreconnect_min_ms = 20\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_helper_answers_welcomes_bans_and_pokes_back() {
    let mut fake = FakeOneBot::start(None).await;
    let rt =
        Running::start(&config(&fake.url), &[("group_helper.rhai", include_str!("../../scripts/group_helper.rhai"))]);
    fake.accept().await;

    fake.push(group_message(100, 7, "早"));
    let call = fake.next_action().await;
    assert_eq!((call.action.as_str(), message_text(&call.params)), ("send_group_msg", "早上好！".into()));

    fake.push(json!({"time": 1, "self_id": SELF_ID, "post_type": "notice", "notice_type": "group_increase",
                     "sub_type": "approve", "group_id": 100, "user_id": 8, "operator_id": 1}));
    let call = fake.next_action().await;
    assert_eq!(call.params["message"][1], json!({"type": "at", "data": {"qq": "8"}}));
    assert_eq!(message_text(&call.params), "欢迎  加入本群！发送「菜单」看看我会什么");

    let bad = group_message(100, 9, "便宜代刷，私聊");
    let bad_id = bad["message_id"].clone();
    fake.push(bad);
    let recall = fake.next_action().await;
    assert_eq!((recall.action.as_str(), &recall.params["message_id"]), ("delete_msg", &bad_id));
    let ban = fake.next_action().await;
    assert_eq!(ban.action, "set_group_ban");
    assert_eq!(ban.params, json!({"group_id": 100, "user_id": 9, "duration": 600}));
    assert_eq!(message_text(&fake.next_action().await.params), " 请文明发言，禁言 10 分钟");

    let poke = |target: i64| {
        json!({"time": 2, "self_id": SELF_ID, "post_type": "notice", "notice_type": "notify", "sub_type": "poke",
               "group_id": 100, "user_id": 7, "target_id": target})
    };
    fake.push(poke(12345)); // another member was poked: no reaction
    fake.push(poke(SELF_ID));
    let back = fake.next_action().await;
    assert_eq!((back.action.as_str(), &back.params), ("group_poke", &json!({"group_id": 100, "user_id": 7})));
    assert_eq!(message_text(&fake.next_action().await.params), "别戳啦～");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_example_answers_over_onebot_too() {
    let mut fake = FakeOneBot::start(None).await;
    let hello = include_str!("../../scripts/hello.rhai");
    let rt = Running::start(
        &config(&fake.url),
        &[("hello.rhai", hello), ("stdlib/args.rhai", include_str!("../../stdlib/args.rhai"))],
    );
    fake.accept().await;
    for (text, expected) in [("ping", "pong"), ("/add 2 40", "42"), ("/echo [CQ:at,qq=1]", "[CQ:at,qq=1]")] {
        fake.push(group_message(1, 2, text));
        assert_eq!(message_text(&fake.next_action().await.params), expected, "{text}");
    }
    rt.stop().await;
}

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

/// The same hello.rhai runs unchanged on OneBot 11 (above, and its welcome by the cross-protocol
/// `member.increase`), on Milky, and on the console (tests/integration/cli.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_example_runs_unchanged_on_milky_and_welcomes_on_both_protocols() {
    use crate::support::milky::{self, FakeMilky};
    let hello = include_str!("../../scripts/hello.rhai");
    let args = include_str!("../../stdlib/args.rhai");

    let mut ob = FakeOneBot::start(None).await;
    let rt = Running::start(&config(&ob.url), &[("hello.rhai", hello), ("stdlib/args.rhai", args)]);
    ob.accept().await;
    ob.push(json!({"time": 1, "self_id": SELF_ID, "post_type": "notice", "notice_type": "group_increase",
                   "sub_type": "approve", "group_id": 100, "user_id": 8, "operator_id": 1}));
    let call = ob.next_action().await;
    assert_eq!(
        call.params["message"],
        json!([{"type": "text", "data": {"text": "welcome "}}, {"type": "at", "data": {"qq": "8"}}])
    );
    rt.stop().await;

    let mut mk = FakeMilky::start(None).await;
    let cfg = format!("[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{}\"\nreconnect_min_ms = 20\n", mk.url);
    let rt = Running::start(&cfg, &[("hello.rhai", hello), ("stdlib/args.rhai", args)]);
    mk.opened().await;
    for (seq, (text, expected)) in
        [("ping", "pong"), ("/add 2 40", "42"), ("/echo [b] & c", "[b] & c")].into_iter().enumerate()
    {
        mk.push(milky::group_message(20001, 10002, 30001 + seq as i64, milky::text(text)));
        let call = next_send(&mut mk).await;
        let sent: String =
            call.body["message"].as_array().unwrap().iter().filter_map(|s| s["data"]["text"].as_str()).collect();
        assert_eq!(sent, expected, "{text}");
    }
    mk.push(json!({"time": 1, "self_id": milky::SELF_ID, "event_type": "group_member_increase",
                   "data": {"group_id": 20001, "user_id": 10009, "operator_id": null, "invitor_id": null}}));
    let call = next_send(&mut mk).await;
    assert_eq!((call.action.as_str(), &call.body["group_id"]), ("send_group_message", &json!(20001)));
    assert_eq!(
        call.body["message"],
        json!([{"type": "text", "data": {"text": "welcome "}}, {"type": "mention", "data": {"user_id": 10009}}])
    );
    rt.stop().await;
}

/// The next message the bot sent through a Milky fake (its get_impl_info and the like skipped).
async fn next_send(mk: &mut crate::support::milky::FakeMilky) -> crate::support::milky::ApiCall {
    mk.next_call_where(|c| c.action.starts_with("send_")).await
}

/// The example group bot runs unchanged on OneBot 11, Milky and the official platform: the same
/// conversation gets the same answers on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_bot_runs_unchanged_on_onebot_milky_and_the_official_platform() {
    use crate::support::milky::{self, FakeMilky};
    let bot = include_str!("../../scripts/group_bot.rhai");
    // (user, text, the answer). Two members' messages are two queues (each in order), so each
    // answer is awaited before the other member speaks; a message that gets no answer is
    // followed by one of the same member that does, which proves the first got none.
    let talk = [
        (7, "/learn hi hello there", "learned: hi -> hello there"),
        (8, "hi", "hello there"),
        (8, "/learn 晚安 好梦", "learned: 晚安 -> 好梦"),
        (7, "/words", "taught here: hi 晚安"),
        (7, "/keywords off", "keyword answers are off"),
        (7, "hi", ""),
        (7, "/keywords on", "keyword answers are on"),
        (8, "晚安", "好梦"),
        (7, "/forget hi", "forgot hi"),
        (7, "hi", ""),
        (7, "/forget hi", "hi was never taught here"),
    ];
    let mut ob = FakeOneBot::start(None).await;
    let rt = Running::start(&config(&ob.url), &[("group_bot.rhai", bot)]);
    ob.accept().await;
    for (user, text, answer) in talk {
        ob.push(group_message(100, user, text));
        if !answer.is_empty() {
            assert_eq!(message_text(&ob.next_action().await.params), answer, "onebot: {text}");
        }
    }
    rt.stop().await;

    let mut mk = FakeMilky::start(None).await;
    let cfg = format!("[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{}\"\nreconnect_min_ms = 20\n", mk.url);
    let rt = Running::start(&cfg, &[("group_bot.rhai", bot)]);
    mk.opened().await;
    for (seq, (user, text, answer)) in talk.into_iter().enumerate() {
        mk.push(milky::group_message(20001, user, 30001 + seq as i64, milky::text(text)));
        if answer.is_empty() {
            continue;
        }
        let call = next_send(&mut mk).await;
        let sent: String =
            call.body["message"].as_array().unwrap().iter().filter_map(|s| s["data"]["text"].as_str()).collect();
        assert_eq!(sent, answer, "milky: {text}");
    }
    rt.stop().await;

    let (mut fake, rt, url) = crate::qq_bot::webhook_bot(bot).await;
    for (i, (user, text, answer)) in talk.into_iter().enumerate() {
        let mut ev = crate::qq_bot::group_message("GROUP_AT_MESSAGE_CREATE", &format!("E{i}"), &format!("M{i}"), text);
        ev["d"]["author"]["member_openid"] = json!(format!("MEMBER{user}"));
        crate::qq_bot::post(&url, &ev).await;
        if !answer.is_empty() {
            let sent = crate::qq_bot::next_send(&mut fake).await;
            assert_eq!(sent.body["content"], answer, "qq: {text}");
        }
    }
    rt.stop().await;
}

/// A local quote service for fetch.rhai, and the script pointed at it.
async fn quote_service() -> String {
    let app = axum::Router::new().route(
        "/quote",
        axum::routing::get(|| async { axum::Json(json!({"hitokoto": "stay hungry", "from": "a speech"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    include_str!("../../scripts/fetch.rhai")
        .replace("https://v1.hitokoto.cn/?encode=json", &format!("http://127.0.0.1:{port}/quote"))
}

/// What the everyday bots (issue: keyword replies, sign-in, a conversation, an HTTP fetch)
/// answer to one conversation, the same on every protocol.
const EVERYDAY: &[(i64, &str, &str)] = &[
    (7, "/signin", " +10 points (streak 1), 10 in all"),
    (7, "/register", "what is your name? (\"cancel\" stops)"),
    (7, "Ada", "hi Ada, how old are you?"),
    (7, "old", "a whole number from 1 to 150, please:"),
    (7, "36", "registered Ada, 36"),
    (7, "/learn hi hello there", "learned: hi -> hello there"),
    (8, "hi", "hello there"),
    (8, "/quote", "stay hungry —— a speech"),
    (8, "/top", "leaderboard:\n1. 7: 10"),
];

fn everyday_scripts(fetch: &str) -> Vec<(&'static str, String)> {
    vec![
        ("signin.rhai", include_str!("../../scripts/signin.rhai").to_owned()),
        ("register.rhai", include_str!("../../scripts/register.rhai").to_owned()),
        ("group_bot.rhai", include_str!("../../scripts/group_bot.rhai").to_owned()),
        ("fetch.rhai", fetch.to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_everyday_bots_work_on_onebot_and_milky() {
    use crate::support::milky::{self, FakeMilky};
    let fetch = quote_service().await;
    let scripts = everyday_scripts(&fetch);
    let scripts: Vec<(&str, &str)> = scripts.iter().map(|(n, s)| (*n, s.as_str())).collect();

    let mut ob = FakeOneBot::start(None).await;
    let cfg = format!("[http]\nallow_private = true\n{}", config(&ob.url));
    let rt = Running::start(&cfg, &scripts);
    ob.accept().await;
    for (user, text, answer) in EVERYDAY {
        ob.push(group_message(100, *user, text));
        assert_eq!(message_text(&ob.next_action().await.params), *answer, "onebot: {text}");
    }
    rt.stop().await;

    let mut mk = FakeMilky::start(None).await;
    let cfg = format!(
        "[http]\nallow_private = true\n[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{}\"\nreconnect_min_ms = 20\n",
        mk.url
    );
    let rt = Running::start(&cfg, &scripts);
    mk.opened().await;
    for (seq, (user, text, answer)) in EVERYDAY.iter().enumerate() {
        mk.push(milky::group_message(20001, *user, 30001 + seq as i64, milky::text(text)));
        let call = next_send(&mut mk).await;
        let sent: String =
            call.body["message"].as_array().unwrap().iter().filter_map(|s| s["data"]["text"].as_str()).collect();
        assert_eq!(sent, *answer, "milky: {text}");
    }
    rt.stop().await;
}

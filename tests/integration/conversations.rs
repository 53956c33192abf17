//! Conversations: `ev.prompt` over the real wire, on OneBot 11 and Milky, with timeouts, fast
//! answers and a hundred at once.

use std::collections::BTreeSet;

use crate::support::Running;
use crate::support::milky::{self, FakeMilky};
use crate::support::onebot::{FakeOneBot, group_message, message_text};

const REGISTER: &str = r#"
    command("register", |ev, rest| {
        let name = ev.prompt("your name?", 20000);
        if name == () { ev.reply("too slow"); return; }
        let age = ev.prompt(`hi ${name.text}, your age?`, 20000);
        if age == () { ev.reply("too slow"); return; }
        ev.reply(`registered ${name.text}, ${age.text}`);
    });
    command("quick", |ev, rest| {
        let answer = ev.prompt("say something within 300 ms", 300);
        ev.reply(if answer == () { "too slow" } else { `got ${answer.text}` });
    });
    on("message", |ev| {
        if ev.text == "ping" { ev.reply("pong"); }
        if ev.text == "Alice" || ev.text == "30" { ev.reply(`a handler saw ${ev.text}`); }
    });
"#;

fn config(url: &str) -> String {
    format!("[[bot]]\nprotocol = \"onebot11\"\nurl = \"{url}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_to_the_waiting_callback_even_when_typed_right_behind() {
    let mut fake = FakeOneBot::start(None).await;
    let rt = Running::start(&config(&fake.url), &[("register.rhai", REGISTER)]);
    fake.accept().await;
    // All three at once: the answers arrive before the callback asks for them.
    for text in ["/register", "Alice", "30"] {
        fake.push(group_message(1, 7, text));
    }
    for expected in ["your name?", "hi Alice, your age?", "registered Alice, 30"] {
        assert_eq!(message_text(&fake.next_action().await.params), expected);
    }
    // Another member's message in the same group is not an answer.
    fake.push(group_message(1, 7, "/register"));
    assert_eq!(message_text(&fake.next_action().await.params), "your name?");
    fake.push(group_message(1, 8, "Alice"));
    fake.push(group_message(1, 7, "Bob"));
    fake.push(group_message(1, 7, "40"));
    let mut got: Vec<String> = Vec::new();
    for _ in 0..3 {
        got.push(message_text(&fake.next_action().await.params));
    }
    assert!(got.contains(&"a handler saw Alice".to_owned()), "{got:?}");
    assert!(got.contains(&"registered Bob, 40".to_owned()), "{got:?}");
    // Nobody answers: the prompt returns () at its timeout.
    fake.push(group_message(2, 9, "/quick"));
    assert_eq!(message_text(&fake.next_action().await.params), "say something within 300 ms");
    assert_eq!(message_text(&fake.next_action().await.params), "too slow");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_conversations_at_once_neither_exhaust_the_workers_nor_stall_other_chats() {
    let mut fake = FakeOneBot::start(None).await;
    // Fewer workers and drainers than conversations, on purpose.
    let cfg = format!("[limits]\nworkers = 4\nscript_concurrency = 2\n{}", config(&fake.url));
    let rt = Running::start(&cfg, &[("register.rhai", REGISTER)]);
    fake.accept().await;
    for user in 1..=100 {
        fake.push(group_message(1000 + user, user, "/register"));
    }
    for _ in 1..=100 {
        assert_eq!(message_text(&fake.next_action().await.params), "your name?");
    }
    // A hundred callbacks wait; another chat is answered at once.
    fake.push(group_message(5000, 1, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    for user in 1..=100 {
        fake.push(group_message(1000 + user, user, &format!("user{user}")));
    }
    let mut asked = BTreeSet::new();
    for _ in 1..=100 {
        asked.insert(message_text(&fake.next_action().await.params));
    }
    assert_eq!(asked.len(), 100, "each conversation asked its own second question");
    for user in 1..=100 {
        fake.push(group_message(1000 + user, user, "20"));
    }
    let mut done = BTreeSet::new();
    for _ in 1..=100 {
        done.insert(message_text(&fake.next_action().await.params));
    }
    let expected: BTreeSet<String> = (1..=100).map(|u| format!("registered user{u}, 20")).collect();
    assert_eq!(done, expected);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_work_over_milky_too() {
    let mut mk = FakeMilky::start(None).await;
    let cfg = format!("[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{}\"\nreconnect_min_ms = 20\n", mk.url);
    let rt = Running::start(&cfg, &[("register.rhai", REGISTER)]);
    mk.opened().await;
    for (seq, text) in ["/register", "Alice", "30"].into_iter().enumerate() {
        mk.push(milky::group_message(20001, 10002, 30001 + seq as i64, milky::text(text)));
    }
    for expected in ["your name?", "hi Alice, your age?", "registered Alice, 30"] {
        let call = mk.next_call_where(|c| c.action.starts_with("send_")).await;
        let sent: String =
            call.body["message"].as_array().unwrap().iter().filter_map(|s| s["data"]["text"].as_str()).collect();
        assert_eq!(sent, expected);
    }
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_members_conversation_does_not_hold_up_the_rest_of_the_group() {
    let mut fake = FakeOneBot::start(None).await;
    let rt = Running::start(&config(&fake.url), &[("register.rhai", REGISTER)]);
    fake.accept().await;
    fake.push(group_message(1, 7, "/register"));
    assert_eq!(message_text(&fake.next_action().await.params), "your name?");
    // Another member of the same group is answered while 7's conversation waits.
    fake.push(group_message(1, 8, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    fake.push(group_message(1, 8, "/register"));
    assert_eq!(message_text(&fake.next_action().await.params), "your name?");
    fake.push(group_message(1, 7, "Ann"));
    assert_eq!(message_text(&fake.next_action().await.params), "hi Ann, your age?");
    fake.push(group_message(1, 8, "Bob"));
    assert_eq!(message_text(&fake.next_action().await.params), "hi Bob, your age?");
    rt.stop().await;
}

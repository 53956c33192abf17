//! The binary as a user runs it: the console chat with piped input, `check`, a bad config,
//! and `api list --json`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::process::BotDir;
use crate::support::rhaibot_bin;

fn run_with_stdin(args: &[&str], stdin: &str, dir: &std::path::Path) -> Output {
    let mut child = Command::new(rhaibot_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("RHAIBOT_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rhaibot");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("rhaibot exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_console_answers_piped_input_with_the_example_bot_and_exits_cleanly() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = run_with_stdin(&["run"], "ping\n/echo a [b] & c\n:group 77\n/whoami\n", root.as_ref());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{}", out.status, text(&out.stderr));
    assert!(stdout.contains("[private 10001] bot: pong"), "{stdout}");
    assert!(stdout.contains("[private 10001] bot: a [b] & c"), "{stdout}");
    assert!(stdout.contains("[group 77] bot: you are 10001 in group 77"), "{stdout}");
}

#[test]
fn a_runaway_callback_is_logged_with_script_callback_and_line() {
    let spin = "on(\"message\", |ev| {\n    if ev.text == \"spin\" {\n        loop { }\n    }\n    ev.reply(\"alive\");\n});\n";
    let dir =
        BotDir::new(&[("spin.rhai", spin)]).file("rhaibot.toml", "[limits]\ncallback_timeout_ms = 100\nworkers = 1\n");
    let out = run_with_stdin(&["run", "--config", "rhaibot.toml"], "spin\nhello\n", dir.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("bot: alive"), "the script keeps working after being stopped: {stdout}");
    // A stopped runaway has no position of its own: the callback's registration line names it.
    assert!(stderr.contains("spin.rhai:1:1: in on("), "{stderr}");
    assert!(stderr.contains("stopped: ran past its deadline of 100 ms"), "{stderr}");
    assert!(stderr.contains("on(\\\"message\\\")") || stderr.contains("on(\"message\")"), "{stderr}");
}

#[test]
fn check_reports_syntax_errors_as_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.rhai");
    let bad = dir.path().join("bad.rhai");
    std::fs::write(&good, "on(\"message\", |ev| ev.reply(\"hi\"));\n").unwrap();
    std::fs::write(&bad, "let a = 1;\nlet b = ;\n").unwrap();
    let out = Command::new(rhaibot_bin()).arg("check").arg(&good).arg(&bad).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("{}:2:9: error: syntax error", bad.display())), "{stderr}");
    assert!(text(&out.stdout).contains("good.rhai: ok"));
}

#[test]
fn a_bad_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[[bot]]\nprotocol = \"onebot11\"\nurl = \"http://wrong\"\n").unwrap();
    let out = Command::new(rhaibot_bin()).arg("run").arg("--config").arg(&cfg).stdin(Stdio::null()).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&cfg.display().to_string()) && stderr.contains("bot[0].url"), "{stderr}");
    assert!(stderr.contains("ws://"), "{stderr}");
}

#[test]
fn api_list_json_lists_every_onebot_action_and_event() {
    let out = Command::new(rhaibot_bin()).args(["api", "list", "--json"]).output().unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let names: Vec<&str> = list["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    for expected in [
        "onebot::send_group_msg",
        "onebot::send_private_msg",
        "onebot::send_msg",
        "onebot::get_login_info",
        "onebot::call",
        "on",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    let events: Vec<&str> = list["events"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(events.contains(&"notice.group_ban") && events.contains(&"message.group"), "{events:?}");
}

#[test]
fn sigterm_lets_the_callback_in_flight_finish_and_exits_0_and_status_shows_the_scripts() {
    let slow = "on(\"message\", |ev| {\n    print(\"started\");\n    let t = timestamp();\n    while t.elapsed < 0.5 { }\n    ev.reply(\"finished\");\n});\n";
    let dir = BotDir::new(&[("slow.rhai", slow), ("broken.rhai", "let = 1;\n")]);
    let mut bot = dir.spawn(&["run"]);
    bot.wait_for_log("scripts loaded");
    let status = dir.run(&["status"]);
    let table = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(table.contains("slow.rhai") && table.contains("running"), "{table}");
    assert!(table.contains("broken.rhai") && table.contains("failed") && table.contains("syntax error"), "{table}");

    bot.type_line("go");
    bot.wait_for_log("started");
    assert!(Command::new("kill").args(["-TERM", &bot.pid().to_string()]).status().unwrap().success());
    let (exit, stdout) = bot.wait();
    assert!(exit.success(), "exit {exit:?}");
    assert!(stdout.contains("bot: finished"), "{stdout}");
}

/// Hardening 12: a failing call is logged at its own line, not at the `on(` that registered it.
#[test]
fn errors_are_logged_at_the_failing_call() {
    let script = "// 1\n// 2\n// 3\n// 4\non(\"message\", |ev| {\n    if ev.text == \"a\" {\n        // 7\n        onebot::get_group_info(#{ group_id: \"x\" });\n    }\n    if ev.text == \"b\" {\n        kv::set(\"s\", \"t\");\n        kv::incr(\"s\");\n    }\n});\n";
    let dir = BotDir::new(&[("p.rhai", script)]);
    let out = run_with_stdin(&["run"], "a\nb\n", dir.path());
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("p.rhai:8:17: in on(\"message\"): uncaught error: onebot::get_group_info"), "{stderr}");
    assert!(stderr.contains("p.rhai:12:13: in on(\"message\"): uncaught error: kv::incr"), "{stderr}");
    assert!(!stderr.contains("p.rhai:5:1"), "{stderr}");
}

/// A call with an argument of the wrong type names the types it was given and where the
/// function's own are listed, not Rhai's Rust type names.
#[test]
fn a_wrong_argument_type_is_reported_in_the_scripts_words() {
    let dir = BotDir::new(&[("r.rhai", "on(\"message\", |ev| {\n    ev.reply(`${rand::int(\"1\", 6)}`);\n});\n")]);
    let out = run_with_stdin(&["run"], "x\n", dir.path());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("r.rhai:2:") && stderr.contains("no function `rand::int` takes (string, int)"), "{stderr}");
    assert!(stderr.contains("rhaibot api list rand::int") && !stderr.contains("ImmutableString"), "{stderr}");
}

/// Hardening 16: a shutdown that abandons a running callback exits non-zero and names it.
#[test]
fn a_shutdown_that_abandons_a_callback_exits_non_zero_and_says_which() {
    // It spins until abandoned: no timeout or operation budget ends it first, however fast the
    // build (a release build used to reach the default budget before the console's settling
    // ended, so nothing was left to abandon).
    let spin = "on(\"message\", |ev| {\n    loop { }\n});\n";
    let limits =
        "[limits]\ncallback_timeout_ms = 60000\nmax_operations = 1000000000000000\nshutdown_timeout_ms = 200\n";
    let dir = BotDir::new(&[("spin.rhai", spin)]).file("rhaibot.toml", limits);
    let out = run_with_stdin(&["run", "--config", "rhaibot.toml"], "go\n", dir.path());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("abandoned: spin.rhai on(\"message\")"), "{stderr}");
}

/// Hardening 16: `rhaibot reload` says what it did, in English.
#[test]
fn reload_and_jobs_report_what_the_running_bot_has() {
    let ticking = "every(100, || print(\"tick\"));\non(\"message\", |ev| ev.reply(\"hi\"));\n";
    let dir = BotDir::new(&[("tick.rhai", ticking)]);
    let mut bot = dir.spawn(&["run"]);
    bot.wait_for_log("scripts loaded");
    let reload = dir.run(&["reload", "tick"]);
    assert_eq!(text(&reload.stdout).trim(), "tick: reloaded", "{}", text(&reload.stderr));
    // An `every` job's next time moves with each run: shown as the bot has it, not as first planned.
    for _ in 0..5 {
        bot.wait_for_log("tick");
    }
    let before = chrono::Local::now();
    let jobs = text(&dir.run(&["jobs"]).stdout);
    let next = jobs.split("next ").nth(1).expect("a next time").trim();
    let next = chrono::DateTime::parse_from_str(next, "%Y-%m-%d %H:%M:%S%.3f %:z").expect("a time");
    assert!(next > before - chrono::TimeDelta::milliseconds(100), "{jobs}");
    assert!(jobs.contains("tick.rhai  every#1  [every 100ms]"), "{jobs}");
}

/// Hardening 15: a database damaged inside is refused at start-up with a clear message.
#[test]
fn a_damaged_database_is_refused_at_start() {
    let fill = "let v = \"x\";\nv.pad(1000, 'x');\nfor i in 0..200 { kv::set(`k${i}`, v); }\n";
    let dir = BotDir::new(&[("k.rhai", fill)]);
    let first = run_with_stdin(&["run"], "", dir.path());
    assert!(first.status.success(), "{}", text(&first.stderr));
    let db = dir.path().join("data/rhaibot.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    }
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 8192, "the data spans several pages");
    for (i, b) in bytes[4096..5120].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = run_with_stdin(&["run"], "", dir.path());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rhaibot.db") && stderr.contains("corrupt"), "{stderr}");
}

/// The everyday bots (sign-in, a conversation, taught keywords, an HTTP fetch) on the console,
/// with piped input typed faster than the bot answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_everyday_bots_work_on_the_console() {
    let app = axum::Router::new()
        .route("/quote", axum::routing::get(|| async { axum::Json(serde_json::json!({"hitokoto": "stay hungry"})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    let fetch = include_str!("../../scripts/fetch.rhai")
        .replace("https://v1.hitokoto.cn/?encode=json", &format!("http://127.0.0.1:{port}/quote"));
    let dir = BotDir::new(&[
        ("signin.rhai", include_str!("../../scripts/signin.rhai")),
        ("register.rhai", include_str!("../../scripts/register.rhai")),
        ("group_bot.rhai", include_str!("../../scripts/group_bot.rhai")),
        ("fetch.rhai", &fetch),
    ])
    .file("rhaibot.toml", "[http]\nallow_private = true\n");
    let input = ":group 5\n/signin\n/register\nAda\n36\n/learn hi hello\nhi\n/quote\n";
    let path = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || run_with_stdin(&["run", "--config", "rhaibot.toml"], input, &path))
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = [
        "+10 points (streak 1), 10 in all",
        "what is your name?",
        "hi Ada, how old are you?",
        "registered Ada, 36",
        "learned: hi -> hello",
        "[group 5] bot: hello",
        "stay hungry",
    ];
    for e in expected {
        assert!(stdout.contains(e), "{e:?} missing from:\n{stdout}");
    }
    // One conversation's questions and answers come in its order.
    let pos = |e: &str| stdout.find(e).unwrap_or(usize::MAX);
    assert!(pos("what is your name?") < pos("hi Ada") && pos("hi Ada") < pos("registered Ada"), "{stdout}");
}

/// `rhaibot check` finds each mistake a bot author used to find only when a message came.
#[test]
fn check_finds_real_mistakes_with_their_places_and_hints() {
    let script = r#"import "nothere" as nh;
on("mesage.group", |ev| {
    ev.replyy("hi");
    http::gett("x");
    onebot::send_group_msg("abc", "hi");
    onebot::set_group_ban(#{ group_id: 1 });
    undefined_function();
    onebot::set_group_ban(#{ group_id: 1, user_id: ev.user_id });
    ev.reply(http::get("https://example.com").body);
});
cron("0 8 * * *", || print("x"));
cron("good", "0 0 8 * * *", #{ tz: "Asia/Nowhere" }, || print("x"));
cron("fine", "0 0 8 * * *", || print("x"));
fn on_mesage(ev) {}
fn on_message(ev) {}
on("notice.group_ban.ban", |ev| print("x"));
import "args.rhai" as a2;
let obj = #{ hi: || "hello" }; obj.hi();
let mention = msg::at(3.5);
let picture = msg::image(42);
"#;
    let dir = BotDir::new(&[("mistakes.rhai", script)]);
    let out = dir.run(&["check", "--json", "scripts/mistakes.rhai"]);
    assert!(!out.status.success(), "errors make a non-zero exit");
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let got: Vec<(u64, String)> =
        findings.iter().map(|f| (f["line"].as_u64().unwrap(), format!("{} {}", f["message"], f["hint"]))).collect();
    let has = |line: u64, words: &[&str]| {
        assert!(
            got.iter().any(|(l, text)| *l == line && words.iter().all(|w| text.contains(w))),
            "line {line} should report {words:?}; got {got:#?}"
        );
    };
    has(1, &["cannot import", "nothere"]);
    has(2, &["mesage.group", "never runs", "did you mean message.group"]);
    has(3, &["no method `replyy`", "did you mean reply"]);
    has(4, &["no function `http::gett`", "did you mean get"]);
    has(5, &["group_id", "must be int, got string"]);
    has(6, &["missing required parameter `user_id`"]);
    has(7, &["no function `undefined_function`"]);
    has(11, &["bad cron expression", "seconds first"]);
    has(12, &["Asia/Nowhere"]);
    has(14, &["fn on_mesage", "did you mean message"]);
    has(19, &["msg::at", "must be id, got float"]);
    has(20, &["msg::image", "must be file, got int"]);
    let lines: Vec<u64> = got.iter().map(|(l, _)| *l).collect();
    // A sub_type, an import with its extension, a function kept in a map are all fine.
    for fine in [8, 9, 13, 15, 16, 17, 18] {
        assert!(!lines.contains(&fine), "line {fine} is correct but was reported: {got:#?}");
    }
    // The good scripts of the repository pass.
    let root = env!("CARGO_MANIFEST_DIR");
    let ok = Command::new(rhaibot_bin()).current_dir(root).args(["check"]).output().unwrap();
    assert!(ok.status.success(), "{}{}", text(&ok.stdout), text(&ok.stderr));
}

/// The built-in stdlib is found wherever the binary runs, with no stdlib dir beside it; `run
/// --stdlib` points at another.
#[test]
fn the_builtin_stdlib_is_found_from_any_directory() {
    let script = "import \"args\" as args;\ncommand(\"w\", |ev, rest| ev.reply(`${args::words(rest).len()} words`));\n";
    let dir = BotDir::new(&[("w.rhai", script)]);
    assert!(!dir.path().join("stdlib").exists());
    let out = run_with_stdin(&["run"], "/w one \"two three\"\n", dir.path());
    assert!(text(&out.stdout).contains("bot: 2 words"), "{}{}", text(&out.stdout), text(&out.stderr));
    let check = dir.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    // A module of the same name in --stdlib wins.
    let mine = dir.path().join("mylib");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("args.rhai"), "fn words(t) { [\"mine\"] }\n").unwrap();
    let out = run_with_stdin(&["run", "--stdlib", "mylib"], "/w a b c\n", dir.path());
    assert!(text(&out.stdout).contains("bot: 1 words"), "{}{}", text(&out.stdout), text(&out.stderr));
}

/// The example bots' scenarios pass through `rhaibot test`, and a failing scenario says what
/// the bot sent instead, with a non-zero exit.
#[test]
fn rhaibot_test_plays_the_example_scenarios_and_reports_failures() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(rhaibot_bin()).current_dir(root).arg("test").env_remove("RHAIBOT_CONFIG").output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let wrong = "[[step]]\nsend = \"ping\"\nreply = \"pang\"\n";
    let dir = BotDir::new(&[
        (
            "p.rhai",
            "command(\"x\", |ev| ev.reply(\"y\"));\non(\"message\", |ev| if ev.text == \"ping\" { ev.reply(\"pong\") });\n",
        ),
        ("p.test.toml", wrong),
    ]);
    let out = dir.run(&["test"]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL") && stdout.contains("expected the reply \"pang\"") && stdout.contains("\"pong\""),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

/// A listing piped into a reader that stops early ends quietly, not with a panic.
#[test]
fn a_listing_into_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(rhaibot_bin())
        .args(["api", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // No reader is left: the first line written finds the pipe closed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    use std::os::unix::process::ExitStatusExt;
    // Ended by SIGPIPE, as `yes | head` ends `yes`.
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?} {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A script's own module imported under a table's name (`msg`) is its own functions: check does
/// not judge them by the segment table.
#[test]
fn check_leaves_a_scripts_own_module_to_itself() {
    let dir = BotDir::new(&[
        ("helpers.rhai", "fn at(x) { x }\n"),
        ("m.rhai", "import \"helpers\" as msg;\nlet x = msg::at(3.5);\n"),
    ]);
    let out = dir.run(&["check"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

/// A failing scenario shows what the runtime logged while it ran: a callback's error with its
/// line, and a script that did not load with its syntax error, not only "(nothing)".
#[test]
fn a_failing_scenario_shows_the_errors_the_scripts_logged() {
    let want = "[[step]]\nsend = \"/roll abc\"\nreply = \"rolled\"\n";
    let throws = "command(\"roll\", |ev, args| {\n    let n = parse_int(args);\n    ev.reply(`rolled ${n}`);\n});\n";
    let dir = BotDir::new(&[("roll.rhai", throws), ("roll.test.toml", want)]);
    let stdout = text(&dir.run(&["test"]).stdout);
    assert!(stdout.contains("FAIL") && stdout.contains("(nothing)"), "{stdout}");
    assert!(stdout.contains("roll.rhai:2:13: in command(\"roll\")") && stdout.contains("parsing integer"), "{stdout}");

    let dir = BotDir::new(&[("roll.rhai", "let = 1;\n"), ("roll.test.toml", want)]);
    let stdout = text(&dir.run(&["test"]).stdout);
    assert!(stdout.contains("no script loaded") && stdout.contains("roll.rhai:1:"), "{stdout}");
}

/// `rhaibot new demo && cd demo && rhaibot test && printf 'ping\n' | rhaibot run`, anywhere.
#[test]
fn a_new_project_tests_and_runs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let new = Command::new(rhaibot_bin()).current_dir(dir.path()).args(["new", "demo"]).output().unwrap();
    assert!(new.status.success(), "{}", text(&new.stderr));
    let demo = dir.path().join("demo");
    for f in ["rhaibot.toml", "scripts/bot.rhai", "scripts/bot.test.toml", "README.md"] {
        assert!(demo.join(f).is_file(), "{f}");
    }
    let test =
        Command::new(rhaibot_bin()).current_dir(&demo).arg("test").env_remove("RHAIBOT_CONFIG").output().unwrap();
    assert!(test.status.success(), "{}{}", text(&test.stdout), text(&test.stderr));
    let out = run_with_stdin(&["run"], "ping\n", &demo);
    assert!(text(&out.stdout).contains("bot: pong"), "{}{}", text(&out.stdout), text(&out.stderr));
    let again = Command::new(rhaibot_bin()).current_dir(dir.path()).args(["new", "demo"]).output().unwrap();
    assert!(!again.status.success(), "an existing directory is not overwritten");
}

/// `rhaibot docs` writes the reference and the editor definitions from what is registered.
#[test]
fn docs_are_written_from_the_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(rhaibot_bin()).arg("docs").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let md = std::fs::read_to_string(dir.path().join("reference.md")).unwrap();
    for entry in [
        "`Event.prompt(text: message, timeout_ms: int)`",
        "`http::get(url: string",
        "`qq::send_group_msg(",
        "`message.group`",
    ] {
        assert!(md.contains(entry), "{entry} missing from the reference");
    }
    let defs = std::fs::read_to_string(dir.path().join("definitions").join("http.d.rhai")).unwrap();
    assert!(defs.contains("fn get(url: string"), "{defs}");
}

/// The console can play what a group does: roles, @-mentions, CQ codes, pokes, joins and
/// requests; a wrong console command says what is accepted.
#[test]
fn the_console_plays_roles_mentions_notices_and_requests() {
    let script = r#"
        on("message", |ev| ev.reply(`${ev.text} role=${ev.role} at=${ev.at_me} segs=${ev.segments.len()}`));
        on("poke", |ev| ev.reply("poked"));
        on("member.increase", |ev| ev.reply(`welcome ${ev.user_id}`));
        on("request.friend", |ev| ev.reply(`friend? ${ev["comment"]}`));
    "#;
    let dir = BotDir::new(&[("play.rhai", script)]);
    let input = ":group abc\n:group 5\n:role admin\n@bot hi [CQ:face,id=14]\n:poke\n:join 9\n:friend hello there\n";
    let out = run_with_stdin(&["run"], input, dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in [
        "`:group` takes a group number",
        "[group 5] bot: hi role=admin at=true segs=3",
        "[group 5] bot: poked",
        "[group 5] bot: welcome 9",
        "bot: friend? hello there",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}

/// docs/guide.md's bot, assembled from its blocks (each names its file on its first line),
/// passes `rhaibot check` and `rhaibot test`.
#[test]
fn the_guides_snippets_make_a_working_bot() {
    let guide = include_str!("../../docs/guide.md");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
    let mut files: std::collections::BTreeMap<String, String> = Default::default();
    for block in guide.split("```").skip(1).step_by(2) {
        let (lang, body) = block.split_once('\n').unwrap_or_default();
        let first = body.lines().next().unwrap_or_default();
        let path = first.trim_start_matches("//").trim_start_matches('#').trim();
        if matches!(lang, "rhai" | "toml") && path.starts_with("scripts/") {
            files.entry(path.to_owned()).or_default().push_str(body);
        }
    }
    assert!(files.contains_key("scripts/bot.rhai") && files.contains_key("scripts/bot.test.toml"), "{files:?}");
    for (path, text) in &files {
        std::fs::write(dir.path().join(path), text).unwrap();
    }
    let check =
        Command::new(rhaibot_bin()).current_dir(dir.path()).arg("check").env_remove("RHAIBOT_CONFIG").output().unwrap();
    assert!(check.status.success(), "{}{}", text(&check.stdout), text(&check.stderr));
    let test =
        Command::new(rhaibot_bin()).current_dir(dir.path()).arg("test").env_remove("RHAIBOT_CONFIG").output().unwrap();
    assert!(test.status.success(), "{}{}", text(&test.stdout), text(&test.stderr));
    assert!(text(&test.stdout).contains("1 passed, 0 failed"));
}

/// Piped console output is the same every run: a line's answers come before the next line's,
/// ordered by script.
#[test]
fn a_piped_console_transcript_is_the_same_every_run() {
    let dir = BotDir::new(&[
        (
            "a.rhai",
            "on(\"message\", |ev| { let t = timestamp(); while t.elapsed < 0.01 {} ev.reply(`a:${ev.text}`); });\n",
        ),
        ("b.rhai", "on(\"message\", |ev| ev.reply(`b:${ev.text}`));\n"),
    ]);
    let runs: Vec<String> = (0..3).map(|_| text(&run_with_stdin(&["run"], "one\ntwo\n", dir.path()).stdout)).collect();
    let expected = "[private 10001] bot: a:one\n[private 10001] bot: b:one\n[private 10001] bot: a:two\n[private 10001] bot: b:two\n";
    for run in runs {
        assert_eq!(run, expected);
    }
}

/// The console can imitate Milky: Milky's events reach the scripts, and `milky::` calls and
/// replies go to the terminal.
#[test]
fn the_console_imitates_milky_when_asked() {
    let script = r#"
        on("milky.message_receive", |ev| ev.reply(`milky: ${ev.text} role=${ev.role} at=${ev.at_me}`));
        on("poke", |ev| ev.reply("poked"));
        on("member.increase", |ev| chat::send_group(ev.group_id, `welcome ${ev.user_id}`));
    "#;
    let dir = BotDir::new(&[("m.rhai", script)])
        .file("rhaibot.toml", "[[bot]]\nprotocol = \"console\"\nflavour = \"milky\"\n");
    let out = run_with_stdin(&["run"], ":group 5\n:role owner\n@bot hi\n:poke\n:join 9\n", dir.path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in ["[group 5] bot: milky: hi role=owner at=true", "[group 5] bot: poked", "[group 5] bot: welcome 9"] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    let bad = BotDir::new(&[]).file("rhaibot.toml", "[[bot]]\nprotocol = \"console\"\nflavour = \"irc\"\n");
    let out = bad.run(&["run"]);
    assert!(!out.status.success() && text(&out.stderr).contains("flavour"), "{}", text(&out.stderr));
}

/// The console carries out pokes and answers a send as its protocol does (Milky: `message_seq`
/// and `time`), so a script tried there behaves as it will on a real backend.
#[test]
fn the_console_pokes_and_answers_sends_as_its_protocol_does() {
    let onebot = r#"on("message", |ev| {
        onebot::group_poke(ev.group_id, ev.user_id);
        onebot::friend_poke(ev.user_id);
        let sent = ev.reply_wait("hi");
        ev.reply(`id ${type_of(sent.message_id)}`);
    });"#;
    let dir = BotDir::new(&[("p.rhai", onebot)]);
    let out = run_with_stdin(&["run"], ":group 5\nx\n", dir.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for line in ["[group 5] bot pokes 10001", "[private 10001] bot pokes 10001", "[group 5] bot: id i64"] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}{stderr}");
    }
    assert!(!stderr.contains("ERROR"), "{stderr}");

    let milky = r#"on("milky.message_receive", |ev| {
        milky::send_group_nudge(ev.group_id, ev.user_id);
        milky::send_friend_nudge(ev.user_id, true);
        let sent = ev.reply_wait("hi");
        ev.reply(`seq ${type_of(sent.message_seq)} time ${type_of(sent.time)} id ${type_of(sent.message_id)}`);
    });"#;
    let dir = BotDir::new(&[("m.rhai", milky)])
        .file("rhaibot.toml", "[[bot]]\nprotocol = \"console\"\nflavour = \"milky\"\n");
    let out = run_with_stdin(&["run"], ":group 5\nx\n", dir.path());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for line in
        ["[group 5] bot pokes 10001", "[private 10001] bot pokes itself", "[group 5] bot: seq i64 time i64 id ()"]
    {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}{stderr}");
    }
    assert!(!stderr.contains("ERROR"), "{stderr}");
}

/// `api list FILTER` filters by name, and lists the built-in stdlib from any directory.
#[test]
fn api_list_filters_and_finds_the_builtin_stdlib_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(rhaibot_bin()).current_dir(dir.path()).args(["api", "list", "args::"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("args::words(text)") && !stdout.contains("onebot::"), "{stdout}");
}

/// A proxy in the environment is not used: it would resolve names itself, past the guard
/// against private addresses.
#[test]
fn http_ignores_proxies_from_the_environment() {
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let url = format!("http://{}", proxy.local_addr().unwrap());
    let script = "on(\"message\", |ev| { try { http::get(\"http://localhost:9/\"); ev.reply(\"reached\"); } catch (e) { ev.reply(e.message); } });\n";
    let dir = BotDir::new(&[("p.rhai", script)]);
    let mut child = Command::new(rhaibot_bin())
        .arg("run")
        .current_dir(dir.path())
        .env("HTTP_PROXY", &url)
        .env("http_proxy", &url)
        .env("ALL_PROXY", &url)
        .env_remove("RHAIBOT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("non-public"), "{stdout}{}", text(&out.stderr));
    assert!(proxy.accept().is_err(), "the request went to the proxy");
}

/// A timer set during a scenario runs on the scenario's clock: not early, and on time.
#[test]
fn scenario_timers_follow_the_virtual_clock() {
    let script = "command(\"remind\", |ev| { let who = ev.user_id; after(3600000, || chat::send_private(who, \"time is up\")); ev.reply(\"set\"); });\n";
    let scenario = "[[step]]\nadvance = \"1d\"\n\n[[step]]\nsend = \"/remind\"\nreply = \"set\"\n\n[[step]]\nadvance = \"1m\"\nno_reply = true\n\n[[step]]\nadvance = \"1h\"\nreply = \"time is up\"\n";
    let dir = BotDir::new(&[("r.rhai", script), ("r.test.toml", scenario)]);
    let out = dir.run(&["test"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

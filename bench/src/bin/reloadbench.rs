//! Hot-reload latency: the time from a changed file to its new handlers being active
//! (compile, run the top level, swap handlers and jobs), without the watcher's debounce window.
//!
//! usage: cargo run --release -p rhaibot-bench --bin reloadbench [ROUNDS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhaibot::bindings::Services;
use rhaibot::config::Limits;
use rhaibot::scheduler::{Scheduler, Zone};
use rhaibot::script::{Globals, Pool, ScriptHost};
use rhaibot::storage::Store;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).expect("scripts dir");
    let store = Arc::new(Store::open_in(&dir.path().join("data")).expect("store"));
    let scheduler = Scheduler::new(Some(store.clone()));
    let globals = Globals::new(Services::offline(Some(store)), Limits::default(), None, Some(scheduler), Zone::Local);
    let pool = Pool::new(2, 64).expect("pool");
    let host = ScriptHost::new(globals, scripts.clone(), pool);

    println!("reloadbench: {rounds} reloads each, release build");
    for (what, source) in [("small (5 lines)", small()), ("500 lines", large(500))] {
        let path = scripts.join("bench.rhai");
        let mut times = Vec::with_capacity(rounds);
        for round in 0..rounds {
            // A real edit each round: the text changes, so nothing can be cached.
            std::fs::write(&path, format!("{source}\n// round {round}\n")).expect("write script");
            let started = Instant::now();
            assert!(host.reload(&path), "the bench script loads");
            times.push(started.elapsed());
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = times.iter().sum::<Duration>() / rounds as u32;
        println!(
            "{what:>16}: mean {:.2} ms, p50 {:.2} ms, max {:.2} ms",
            ms(mean),
            ms(times[rounds / 2]),
            ms(times[rounds - 1])
        );
    }
}

fn small() -> String {
    "on(\"message\", |ev| {\n    if ev.text == \"ping\" { ev.reply(\"pong\"); }\n});\ncommand(\"echo\", |ev, args| ev.reply(args));\ncron(\"0 0 8 * * *\", || ());".into()
}

/// A script of about `lines` lines: functions, handlers, commands and a few jobs, the shape of
/// a real bot that grew.
fn large(lines: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.lines().count() < lines {
        out += &format!(
            "/// helper {i}\nfn helper_{i}(x) {{\n    let y = x * {i} + 1;\n    if y % 2 == 0 {{ y / 2 }} else {{ y * 3 + 1 }}\n}}\n\
             on(\"notice.group_increase\", |ev| {{\n    let n = helper_{i}(ev.user_id);\n    ev.reply(`welcome #${{n}}`);\n}});\n\
             command(\"cmd{i}\", |ev, args| {{\n    let words = args.split(\" \");\n    ev.reply(`{i}: ${{words.len()}} words`);\n}});\n"
        );
        if i % 10 == 0 {
            out += &format!("cron(\"job{i}\", \"0 {} * * * *\", || helper_{i}(1));\n", i % 60);
        }
        i += 1;
    }
    out
}

//! KV throughput as scripts see it: `kv::get` and `kv::set` per second from Rhai, in one
//! callback and from several callbacks at once, against a real SQLite file. The `grouped` rows
//! write as callbacks on workers do: in batches committed together (`Store::group_writes`).
//!
//! usage: cargo run --release -p rhaibot-bench --bin kvbench [OPS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhaibot::bindings::Services;
use rhaibot::config::Limits;
use rhaibot::scheduler::Zone;
use rhaibot::script::{Globals, Script};
use rhaibot::storage::Store;

fn main() {
    let ops: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open_in(dir.path()).expect("store"));
    let limits = Limits { callback_timeout: Duration::from_secs(600), max_operations: u64::MAX, ..Limits::default() };
    let globals = Globals::new(Services::offline(Some(store.clone())), limits, None, None, Zone::Local);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    println!("kvbench: {ops} operations per run, {threads} threads for the concurrent runs");
    for (what, body, grouped) in [
        ("set (durable)", "kv::set(`k${i % 1000}`, i);", false),
        ("get", "kv::get(`k${i % 1000}`);", false),
        ("incr (durable)", "kv::incr(`n${i % 1000}`);", false),
        ("incr (grouped)", "kv::incr(`n${i % 1000}`);", true),
    ] {
        let run = |threads| run(&globals, &store, dir.path(), (what, body, grouped), ops, threads);
        let (single, concurrent) = (run(1), run(threads));
        println!("{what:>14}: {single:>9.0} ops/s in one callback, {concurrent:>9.0} ops/s from {threads} callbacks");
    }
}

/// Runs `threads` scripts at once, each doing `ops / threads` iterations of `body` at its top
/// level; returns operations per second over the wall clock.
fn run(
    globals: &Arc<Globals>,
    store: &Store,
    dir: &std::path::Path,
    (what, body, grouped): (&str, &str, bool),
    ops: u64,
    threads: usize,
) -> f64 {
    let per = ops / threads as u64;
    let paths: Vec<_> = (0..threads)
        .map(|t| {
            let path = dir.join(format!("bench_{}_{t}.rhai", what.split(' ').next().unwrap_or("op")));
            std::fs::write(&path, format!("for i in 0..{per} {{ {body} }}")).expect("write bench script");
            path
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|s| {
        for path in &paths {
            s.spawn(move || {
                let group = grouped.then(|| store.group_writes());
                Script::load(path, globals).expect("bench script runs");
                store.commit().expect("commit");
                drop(group);
            });
        }
    });
    (per * threads as u64) as f64 / started.elapsed().as_secs_f64()
}

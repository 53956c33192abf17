#!/usr/bin/env bash
# Runs every benchmark and writes BENCHMARKS.md. Release build; loopback only; bounded time.
#
#   bench/run.sh            # all scenarios
#   EVENTS=50000 bench/run.sh   # fewer events per throughput run
#
# Scenarios (rhaibot connects by forward WebSocket to bench/loadgen, a fake OneBot 11 end):
#   echo        one script: command("echo", |ev, args| ev.reply(args))
#   counter     one script: increments a per-user counter in kv, then replies with it
#   many        20 scripts loaded, each with several handlers; one matches a given event
# plus kvbench (kv get/set from scripts) and reloadbench (hot-reload latency).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
events=${EVENTS:-200000}
cargo build --release -q -p rhaibot -p rhaibot-loadgen -p rhaibot-bench
bin=$root/target/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scenario NAME LOADGEN_ARGS...: runs it ROUNDS times (default 5; the 2-core VM is noisy) and
# keeps every result; the report takes the median by replies/s.
scenario() {
    local name=$1
    shift
    for round in $(seq "${ROUNDS:-5}"); do
        once "$name" "$@"
        mv "$work/$name/result.json" "$work/$name/result.$round.json"
    done
}

# once NAME LOADGEN_ARGS...: scripts must already be in $work/NAME/scripts.
once() {
    local name=$1
    shift
    local dir=$work/$name
    rm -rf "$dir/data"
    rm -f "$dir/port" "$dir/pid"
    "$bin/loadgen" --json --port-file "$dir/port" --pid-file "$dir/pid" "$@" >"$dir/result.json" 2>"$dir/loadgen.log" &
    local lg=$!
    for _ in $(seq 200); do [ -s "$dir/port" ] && break; sleep 0.05; done
    cat >"$dir/rhaibot.toml" <<TOML
scripts_dir = "scripts"
data_dir = "data"
[log]
level = "warn"
[[bot]]
name = "load"
protocol = "onebot11"
url = "ws://127.0.0.1:$(cat "$dir/port")/"
TOML
    "$bin/rhaibot" run --config "$dir/rhaibot.toml" </dev/null 2>"$dir/rhaibot.log" &
    local rb=$!
    echo "$rb" >"$dir/pid"
    wait "$lg" || true
    kill -TERM "$rb" 2>/dev/null || true
    wait "$rb" 2>/dev/null || true
    echo "$name: $(cat "$dir/result.json")" >&2
}

mkdir -p "$work"/{echo,echo_latency,counter,many}/scripts
echo 'command("echo", |ev, args| ev.reply(args));' >"$work/echo/scripts/echo.rhai"
cp "$work/echo/scripts/echo.rhai" "$work/echo_latency/scripts/"
echo 'command("count", |ev, args| { let n = kv::incr("count:" + ev.user_id); ev.reply(`${args} ${n}`); });' \
    >"$work/counter/scripts/counter.rhai"
for i in $(seq 0 19); do
    cat >"$work/many/scripts/s$i.rhai" <<RHAI
command("cmd$i", |ev, args| ev.reply(args));
command("other$i", |ev, args| ev.reply("other"));
on("notice.group_increase", |ev| ev.reply("welcome"));
on("request.friend", |ev| print(ev.user_id));
fn on_notice_group_decrease(ev) { print(ev.user_id); }
RHAI
done

scenario echo --mode throughput --events "$events" --text "/echo {i}"
ROUNDS=1 scenario echo_latency --mode latency --rate 500 --events 5000 --text "/echo {i}"
scenario counter --mode throughput --events "$events" --text "/count {i}"
scenario many --mode throughput --events "$events" --text "/cmd7 {i}"
"$bin/kvbench" >"$work/kv.txt"
"$bin/reloadbench" >"$work/reload.txt"

python3 - "$work" "$events" >BENCHMARKS.md <<'PY'
import json, os, platform, subprocess, sys
work, events = sys.argv[1], sys.argv[2]
def load(name):
    """The median run by replies/s, and how many runs there were."""
    d = os.path.join(work, name)
    runs = [json.load(open(os.path.join(d, f))) for f in sorted(os.listdir(d)) if f.startswith("result.")]
    runs.sort(key=lambda r: r["replies_per_sec"])
    return runs[len(runs) // 2], runs
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
print("# Benchmarks\n")
print(f"Written by `bench/run.sh` (release build). Machine: {os.cpu_count()} cores, {cpu}; "
      f"commit `{commit}`{' plus uncommitted changes' if dirty else ''}; {platform.system()} {platform.release()}.\n")
print("The load generator (`bench/loadgen`) is a fake OneBot 11 implementation on loopback that rhaibot")
print("connects to by forward WebSocket; it shares the machine's cores with rhaibot. CPU per event is")
print("rhaibot's own utime+stime from /proc over the measured part, divided by the replies.\n")
print("Throughput rows are the median of several runs (by replies/s), with the range over all runs:")
print("on this 2-core VM a run sometimes comes out at half speed and twice the CPU per event (the")
print("load generator and rhaibot's threads then share a core and every hand-off is a context switch).\n")
print("| scenario | mode | runs | events | replies/s (range) | p50 | p90 | p99 | max | CPU/event (range) | peak RSS | missing |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name, label in [("echo", "echo"), ("echo_latency", "echo"), ("counter", "counter (kv)"), ("many", "many (20 scripts)")]:
    r, all_runs = load(name)
    runs = len(all_runs)
    rps = [x["replies_per_sec"] for x in all_runs]
    cpus = [x["cpu_us_per_event"] for x in all_runs if x.get("cpu_us_per_event") is not None]
    us = lambda k: "-" if r.get(k) is None else (f"{r[k] / 1000:.2f} ms" if r[k] >= 1000 else f"{r[k]} µs")
    mode = "latency @ 500/s" if r["mode"] == "latency" else "throughput"
    cpu_ev = "-" if r.get("cpu_us_per_event") is None else f"{r['cpu_us_per_event']:.1f} µs"
    if runs > 1 and cpus:
        cpu_ev += f" ({min(cpus):.1f}–{max(cpus):.1f})"
    rss = "-" if r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:.1f} MiB"
    rate = f"{r['replies_per_sec']:.0f}" + (f" ({min(rps):.0f}–{max(rps):.0f})" if runs > 1 else "")
    print(f"| {label} | {mode} | {runs} | {r['events']} | {rate} | {us('p50_us')} | {us('p90_us')} | "
          f"{us('p99_us')} | {us('max_us')} | {cpu_ev} | {rss} | {r['missing']} |")
print("""
## Where the time goes

Profiled with `perf` and per-thread /proc ticks under the echo scenario (2026-11, this machine):

- **Before** (commit `8895e45`): `ev.reply` blocked its worker until the implementation
  answered. Each event cost about 1.5 voluntary context switches (event hand-off to a worker,
  the call back to the reactor, the answer back to the worker), and the reactor threads used
  about twice the CPU of the script workers: about 42k replies/s at about 31 µs per event.
- **Now**: `ev.reply` sends and returns (the answer is handled on the connection task), calls
  that queue up are written with one flush, the reactor is one thread, and the release build
  uses fat LTO: about 0.04 context switches per event, and the figures above.
- What remains per event, roughly in order: parsing the event into a `serde_json::Value` and
  building the `Event`, tungstenite framing and the socket syscalls (reads and writes are
  batched by the kernel and the session, not by us per event), Rhai's per-call setup (a fresh
  global state per callback) and the `Dynamic` conversions of the fields a script reads, the
  reply's CQ parsing and JSON serialisation, and malloc/free for all of it.
- At a low fixed rate (500/s) the CPU per event is dominated by waking idle threads (the
  reactor, then a worker) for every single event: a cost per wake-up, not per event, which
  batching cannot remove when events arrive one by one.
- Memory with 20 scripts: about 9 MiB of the peak is the binary's own resident pages (code and
  relocated data of a position-independent executable), 6-8 MiB the heap. One engine per script
  shares Rhai's standard library and the generated modules, so a script costs a few KiB.
""")
print("\n## Key-value store from scripts (`kvbench`)\n")
print("```\n" + open(os.path.join(work, "kv.txt")).read().strip() + "\n```\n")
print("A set is one SQLite transaction in WAL mode with `synchronous = NORMAL`: it is in the OS")
print("when `kv::set` returns, so it survives the process being killed (tested with SIGKILL), not")
print("a power cut.\n")
print("## Hot reload (`reloadbench`)\n")
print("```\n" + open(os.path.join(work, "reload.txt")).read().strip() + "\n```\n")
print("Time from a changed file to its new handlers and jobs being active (compile, top level,")
print("swap), without the watcher's 150 ms debounce.\n")
print("## Commands\n")
print("```sh\nbench/run.sh                      # everything above, rewrites this file")
print("cargo run --release -p rhaibot-bench --bin kvbench")
print("cargo run --release -p rhaibot-bench --bin reloadbench")
print("target/release/loadgen --help    # the load generator on its own\n```")
PY
echo "wrote BENCHMARKS.md" >&2

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

# scenario NAME LOADGEN_ARGS...: scripts must already be in $work/NAME/scripts.
scenario() {
    local name=$1
    shift
    local dir=$work/$name
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
scenario echo_latency --mode latency --rate 500 --events 5000 --text "/echo {i}"
scenario counter --mode throughput --events "$events" --text "/count {i}"
scenario many --mode throughput --events "$events" --text "/cmd7 {i}"
"$bin/kvbench" >"$work/kv.txt"
"$bin/reloadbench" >"$work/reload.txt"

python3 - "$work" "$events" >BENCHMARKS.md <<'PY'
import json, os, platform, subprocess, sys
work, events = sys.argv[1], sys.argv[2]
def load(name):
    return json.load(open(os.path.join(work, name, "result.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
print("# Benchmarks\n")
print(f"Written by `bench/run.sh` (release build). Machine: {os.cpu_count()} cores, {cpu}; "
      f"commit `{commit}`{' plus uncommitted changes' if dirty else ''}; {platform.system()} {platform.release()}.\n")
print("The load generator (`bench/loadgen`) is a fake OneBot 11 implementation on loopback that rhaibot")
print("connects to by forward WebSocket; it shares the machine's cores with rhaibot. CPU per event is")
print("rhaibot's own utime+stime from /proc over the measured part, divided by the replies.\n")
print("| scenario | mode | events | replies/s | p50 | p90 | p99 | max | CPU/event | peak RSS | missing |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, label in [("echo", "echo"), ("echo_latency", "echo"), ("counter", "counter (kv)"), ("many", "many (20 scripts)")]:
    r = load(name)
    us = lambda k: "-" if r.get(k) is None else (f"{r[k] / 1000:.2f} ms" if r[k] >= 1000 else f"{r[k]} µs")
    mode = "latency @ 500/s" if r["mode"] == "latency" else "throughput"
    cpu_ev = "-" if r.get("cpu_us_per_event") is None else f"{r['cpu_us_per_event']:.1f} µs"
    rss = "-" if r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:.1f} MiB"
    print(f"| {label} | {mode} | {r['events']} | {r['replies_per_sec']:.0f} | {us('p50_us')} | {us('p90_us')} | "
          f"{us('p99_us')} | {us('max_us')} | {cpu_ev} | {rss} | {r['missing']} |")
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

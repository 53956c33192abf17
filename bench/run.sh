#!/usr/bin/env bash
# Runs every benchmark and writes BENCHMARKS.md. Release build; loopback only; bounded time.
#
#   bench/run.sh                      # 3 interleaved rounds of everything
#   ROUNDS=5 EVENTS=50000 bench/run.sh
#   RHAIBOT=/path/to/old/rhaibot OUT=old.md bench/run.sh   # another build, for a before/after
#
# Each round runs every case once, in the same order, so a slow spell of this shared VM hits
# all of them alike; the report gives the median and the range over the rounds. Every case
# is measured by bench/loadgen, a fake bot backend on loopback, from /proc/PID/task/*/schedstat
# of the client (CPU time per event, over the measured phase only) and its context switches.
#
#   bare       the floor: bench/src/bin/bareclient.rs, a OneBot 11 client with no scripting
#   bare_milky the same bare client on Milky (an HTTP request per reply): that protocol's floor
#   bare_qq    the same on the official platform's gateway (REST replies): that protocol's floor
#   echo       one script: command("echo", |ev, args| ev.reply(args));
#   counter    one script: increments a per-user counter in kv, then replies with it
#   many       20 scripts loaded, each with several handlers; one matches a given event
#   milky, qq  the echo script on Milky (WebSocket events, HTTP calls) and on the official
#              platform's gateway (WebSocket events, REST replies), at window 64 and at the
#              fixed rates, where most bots live
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
events=${EVENTS:-20000}
rounds=${ROUNDS:-3}
cargo build --release -q -p rhaibot -p rhaibot-loadgen -p rhaibot-bench
bin=$root/target/release
rhaibot=${RHAIBOT:-$bin/rhaibot}
out=${OUT:-BENCHMARKS.md}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results"
source bench/scenarios.sh
write_scripts "$work"

# run CASE ROUND CLIENT(bare|SCRIPTS) PROTOCOL LOADGEN_ARGS...
run() {
    local case=$1 round=$2 client=$3 protocol=$4
    shift 4
    local dir=$work/run
    rm -rf "$dir"
    mkdir -p "$dir"
    "$bin/loadgen" --json --protocol "$protocol" --port-file "$dir/port" --pid-file "$dir/pid" "$@" \
        >"$dir/result.json" 2>"$dir/loadgen.log" &
    local lg=$!
    for _ in $(seq 200); do [ -s "$dir/port" ] && break; sleep 0.05; done
    local port
    port=$(cat "$dir/port")
    local pid
    if [ "$client" = bare ]; then
        local args=("ws://127.0.0.1:$port/")
        [ "$protocol" = milky ] && args=("http://127.0.0.1:$port")
        [ "$protocol" = qq ] && args=(qq "http://127.0.0.1:$port")
        "$bin/bareclient" "${args[@]}" 2>"$dir/client.log" &
        pid=$!
    else
        {
            printf 'scripts_dir = "%s"\ndata_dir = "%s"\n[log]\nlevel = "warn"\n[[bot]]\nname = "load"\n' "$work/$client" "$dir/data"
            bot_config "$protocol" "$port"
        } >"$dir/rhaibot.toml"
        "$rhaibot" run --config "$dir/rhaibot.toml" </dev/null 2>"$dir/client.log" &
        pid=$!
    fi
    echo "$pid" >"$dir/pid"
    wait "$lg" || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cp "$dir/result.json" "$work/results/$case.$round.json"
    echo "round $round $case: $(cat "$dir/result.json")" >&2
}

for round in $(seq "$rounds"); do
    run bare_w64 "$round" bare onebot11 --events "$events"
    run echo_w64 "$round" echo onebot11 --events "$events"
    run echo_w256 "$round" echo onebot11 --events "$events" --window 256
    run counter_w64 "$round" counter onebot11 --events "$events" --text "/count {i}"
    run many_w64 "$round" many onebot11 --events "$events" --text "/cmd7 {i}"
    run bare_milky_w64 "$round" bare milky --events "$events" --groups 16
    run milky_w64 "$round" echo milky --events "$events" --groups 16
    run bare_qq_w64 "$round" bare qq --events "$events" --groups 16
    run qq_w64 "$round" echo qq --events "$events" --groups 16
    run bare_500 "$round" bare onebot11 --mode latency --rate 500 --events 3000
    run echo_500 "$round" echo onebot11 --mode latency --rate 500 --events 3000
    run milky_500 "$round" echo milky --mode latency --rate 500 --events 3000
    run qq_500 "$round" echo qq --mode latency --rate 500 --events 3000
    run bare_100 "$round" bare onebot11 --mode latency --rate 100 --events 1000
    run echo_100 "$round" echo onebot11 --mode latency --rate 100 --events 1000
    run milky_100 "$round" echo milky --mode latency --rate 100 --events 1000
    run qq_100 "$round" echo qq --mode latency --rate 100 --events 1000
done
"$bin/coldstart" "$rhaibot" "$work/many" "/cmd7 1" 20 >"$work/cold.json"
"$bin/kvbench" >"$work/kv.txt"
"$bin/reloadbench" >"$work/reload.txt"

python3 bench/report.py "$work" >"$out"
echo "wrote $out" >&2

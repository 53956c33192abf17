#!/usr/bin/env bash
# Instructions per event of one rhaibot binary under callgrind, all threads: a count that does
# not move with this VM's speed, for comparing two builds of a small change where CPU time's
# noise (up to 2x within minutes) would hide it. It counts instructions, not time: cache misses,
# system calls and wake-ups do not show, so a change is still measured with bench/run.sh.
#
#   bench/instructions.sh [PROTOCOL] [BINARY]    # onebot11 | milky | qq; needs valgrind
#
# Two runs of the echo scenario (1,000 and 4,000 events, window 8, 16 groups); the difference
# of their totals over the 3,000 events between them leaves start-up and shutdown out.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
protocol=${1:-onebot11}
binary=${2:-$root/target/release/rhaibot}
command -v valgrind >/dev/null || { echo "instructions.sh needs valgrind" >&2; exit 1; }
cargo build --release -q -p rhaibot -p rhaibot-loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
source bench/scenarios.sh
write_scripts "$work"

# total EVENTS: the instructions callgrind counted in one run of EVENTS events.
total() {
    local dir=$work/run$1
    mkdir -p "$dir"
    "$root/target/release/loadgen" --json --protocol "$protocol" --port-file "$dir/port" --pid-file "$dir/pid" \
        --events "$1" --window 8 --groups 16 >"$dir/result.json" 2>"$dir/loadgen.log" &
    local lg=$!
    for _ in $(seq 200); do [ -s "$dir/port" ] && break; sleep 0.05; done
    {
        printf 'scripts_dir = "%s"\ndata_dir = "%s"\n[log]\nlevel = "warn"\n[[bot]]\nname = "load"\n' "$work/echo" "$dir/data"
        bot_config "$protocol" "$(cat "$dir/port")"
    } >"$dir/rhaibot.toml"
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "$binary" run --config "$dir/rhaibot.toml" </dev/null 2>"$dir/client.log" &
    echo $! >"$dir/pid"
    wait "$lg" || true
    kill -TERM "$(cat "$dir/pid")" 2>/dev/null || true
    wait "$(cat "$dir/pid")" 2>/dev/null || true
    awk '/^(summary|totals):/ { print $2; exit }' "$dir/callgrind.out"
}

few=$(total 1000)
many=$(total 4000)
echo "$protocol: $(((many - few) / 3000)) instructions per event"

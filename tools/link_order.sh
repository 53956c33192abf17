#!/usr/bin/env bash
# Regenerates tools/link-order.txt: the functions a running bot executes, hottest first, which
# build.rs hands to the linker so they sit together at the front of the executable.
#
#   tools/link_order.sh        # ~2 minutes; needs valgrind
#
# Why: the kernel maps an executable's code 64 KiB at a time around each page it first runs.
# Left where the compiler puts them, the ~3 MB of functions a bot runs are spread over most of
# the 12 MB of code, and about 9 MiB of it became resident; packed together, about 3 MiB.
#
# The names are mangled with hashes that change with the toolchain and the dependencies'
# versions, not with edits to rhaibot's own code: rerun this after `cargo update` or a new
# rustc. Names the linker no longer finds are skipped, so a stale list costs memory, never
# correctness.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
command -v valgrind >/dev/null || { echo "link_order.sh needs valgrind" >&2; exit 1; }
cargo build --release -q -p rhaibot -p rhaibot-loadgen
bin=$root/target/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
source bench/scenarios.sh
write_scripts "$work"

# profile NAME PROTOCOL SCRIPTS LOADGEN_ARGS...: one run of rhaibot under callgrind.
profile() {
    local name=$1 protocol=$2 scripts=$3
    shift 3
    local dir=$work/$name.run
    mkdir -p "$dir"
    "$bin/loadgen" --json --protocol "$protocol" --port-file "$dir/port" --pid-file "$dir/pid" \
        --events 2000 --window 8 "$@" >"$dir/result.json" 2>"$dir/loadgen.log" &
    local lg=$!
    for _ in $(seq 200); do [ -s "$dir/port" ] && break; sleep 0.05; done
    local port
    port=$(cat "$dir/port")
    {
        printf 'scripts_dir = "%s"\ndata_dir = "%s"\n[log]\nlevel = "warn"\n[[bot]]\nname = "load"\n' "$work/$scripts" "$dir/data"
        bot_config "$protocol" "$port"
    } >"$dir/rhaibot.toml"
    valgrind --tool=callgrind --demangle=no --compress-strings=no --compress-pos=no \
        --callgrind-out-file="$work/$name.callgrind" \
        "$bin/rhaibot" run --config "$dir/rhaibot.toml" </dev/null 2>"$dir/client.log" &
    local pid=$!
    echo "$pid" >"$dir/pid"
    wait "$lg" || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "profiled $name" >&2
}

profile echo onebot11 echo
profile counter onebot11 counter --text "/count {i}"
profile many onebot11 many --text "/cmd7 {i}"
profile milky milky echo --groups 16
profile qq qq echo --groups 16

# Functions every run executed first (start-up and the common event path), then those only
# some runs did, run by run, so a bot on one protocol touches one stretch; within each group
# the hottest first (callgrind's own instruction count, not that of the calls it makes).
python3 - "$work" echo counter many milky qq >tools/link-order.txt <<'PY'
import collections, re, sys
work, runs = sys.argv[1], sys.argv[2:]
cost = collections.Counter()
seen = {}
for run in runs:
    seen[run] = set()
    ours = False
    name = None
    after_call = False
    for line in open(f"{work}/{run}.callgrind"):
        if line.startswith("ob="):
            ours = line.rstrip().endswith("/rhaibot")
        elif line.startswith("fn="):
            name = re.sub(r"'\d+$", "", line[3:].strip()) if ours else None
            if name and (name.startswith("0x") or name.startswith("(")):
                name = None
            if name:
                seen[run].add(name)
            after_call = False
        elif line.startswith("calls="):
            after_call = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if name and not after_call and len(line.split()) > 1:
                cost[name] += int(line.split()[1])
            after_call = False
placed = set()
groups = [set.intersection(*seen.values())] + [seen[run] for run in runs]
for group in groups:
    for name in sorted(group - placed, key=lambda n: (-cost[n], n)):
        print(name)
    placed |= group
PY
echo "wrote tools/link-order.txt ($(wc -l <tools/link-order.txt) functions)" >&2

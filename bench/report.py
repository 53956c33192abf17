"""Writes BENCHMARKS.md (to stdout) from the results bench/run.sh collected in WORK."""

import json
import os
import platform
import statistics
import subprocess
import sys

work = sys.argv[1]
results = os.path.join(work, "results")


def runs(case):
    """Every round's result of a case."""
    files = sorted(f for f in os.listdir(results) if f.startswith(case + "."))
    return [json.load(open(os.path.join(results, f))) for f in files]


def median(case, key):
    values = [r[key] for r in runs(case) if r.get(key) is not None]
    return statistics.median(values) if values else None


def spread(case, key, fmt):
    """The median with the range over the rounds."""
    values = [r[key] for r in runs(case) if r.get(key) is not None]
    if not values:
        return "-"
    text = fmt(statistics.median(values))
    return text + (f" ({fmt(min(values))}–{fmt(max(values))})" if len(values) > 1 else "")


def ms(us):
    return f"{us / 1000:.2f} ms"


def row(label, case):
    rs = runs(case)
    missing = sum(r["missing"] for r in rs)
    threads = {}
    for r in rs:
        for name, us in (r.get("threads") or {}).items():
            threads.setdefault(name, []).append(us)
    split = ", ".join(f"{n.rstrip('-')} {statistics.median(v):.1f}" for n, v in sorted(threads.items())
                      if statistics.median(v) >= 0.5)
    return (f"| {label} | {len(rs)} | {spread(case, 'replies_per_sec', lambda v: f'{v:,.0f}')} | "
            f"{spread(case, 'cpu_us_per_event', lambda v: f'{v:.1f}')} | "
            f"{spread(case, 'ctx_switches_per_event', lambda v: f'{v:.2f}')} | "
            f"{ms(median(case, 'p50_us'))} / {ms(median(case, 'p99_us'))} | "
            f"{median(case, 'peak_rss_mib'):.1f} MiB | {missing} | {split} |")


def ratio(a, b, key="cpu_us_per_event"):
    """Median over rounds of a/b, each round against itself (both ran minutes apart at most)."""
    pairs = [(x[key], y[key]) for x, y in zip(runs(a), runs(b)) if x.get(key) and y.get(key)]
    return statistics.median(x / y for x, y in pairs) if pairs else float("nan")


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
           platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                       text=True).stdout.strip()
cold = json.load(open(os.path.join(work, "cold.json")))
rounds = len(runs("echo_w64"))

print("# Benchmarks\n")
print(f"Written by `bench/run.sh` (release build). Machine: {os.cpu_count()} cores, {cpu}; "
      f"commit `{commit}`{' plus uncommitted changes' if dirty else ''}; {platform.system()} {platform.release()}.\n")
print(f"""Every case ran once per round, {rounds} rounds, interleaved: the figures are the median over the
rounds with the range in brackets. The load generator (`bench/loadgen`) plays the bot backend on
loopback and shares the two cores with the client. CPU is the client's own, summed over its
threads from `/proc/PID/task/*/schedstat` over the measured phase; so are the context switches.
The floor (`bare`) is `bench/src/bin/bareclient.rs`: one thread, `serde_json` in and out, replies
to frames that arrived together written with one flush, no scripting. On Milky (`bare Milky`) it
answers each event with a `POST` written by hand on a kept-alive connection, as the protocol
requires: a system call and a loopback delivery per reply, where OneBot batches. On the official
platform's gateway (`bare QQ gateway`) it does the same with the token's headers.
""")
print("## Against the floor\n")
print("| target | measured |")
print("|---|---|")
targets = [
    ("window 64: CPU per event ≤ 10 µs", f"{median('echo_w64', 'cpu_us_per_event'):.1f} µs "
     f"({ratio('echo_w64', 'bare_w64'):.1f}x the floor)"),
    ("window 64: ≥ 100,000 replies/s", f"{median('echo_w64', 'replies_per_sec'):,.0f} "
     f"(the floor: {median('bare_w64', 'replies_per_sec'):,.0f})"),
    ("500 events/s: CPU per event ≤ 2x the floor", f"{ratio('echo_500', 'bare_500'):.2f}x "
     f"({median('echo_500', 'cpu_us_per_event'):.0f} against {median('bare_500', 'cpu_us_per_event'):.0f} µs)"),
    ("100 events/s: CPU per event ≤ 2x the floor", f"{ratio('echo_100', 'bare_100'):.2f}x "
     f"({median('echo_100', 'cpu_us_per_event'):.0f} against {median('bare_100', 'cpu_us_per_event'):.0f} µs)"),
    ("p99 at 500 and 100 events/s ≤ 0.5 ms", f"{ms(median('echo_500', 'p99_us'))} and {ms(median('echo_100', 'p99_us'))} "
     f"(the floor: {ms(median('bare_500', 'p99_us'))} and {ms(median('bare_100', 'p99_us'))})"),
    ("peak RSS ≤ 12 MiB with one script", f"{median('echo_w64', 'peak_rss_mib'):.1f} MiB"),
    ("peak RSS ≤ 15 MiB with 20 scripts", f"{median('many_w64', 'peak_rss_mib'):.1f} MiB"),
    ("`counter` ≥ 50,000 replies/s", f"{median('counter_w64', 'replies_per_sec'):,.0f}"),
    ("`many` within 1.3x of echo's CPU per event", f"{ratio('many_w64', 'echo_w64'):.2f}x"),
    ("Milky within 1.5x of OneBot's CPU per event", f"{ratio('milky_w64', 'echo_w64'):.2f}x "
     f"(Milky's own floor is {ratio('bare_milky_w64', 'bare_w64'):.2f}x OneBot's; rhaibot on Milky is "
     f"{ratio('milky_w64', 'bare_milky_w64'):.2f}x its floor, on OneBot {ratio('echo_w64', 'bare_w64'):.2f}x)"),
    ("Milky at 500 and 100 events/s", f"{ratio('milky_500', 'echo_500'):.2f}x and {ratio('milky_100', 'echo_100'):.2f}x "
     f"OneBot's ({median('milky_500', 'cpu_us_per_event'):.0f} and {median('milky_100', 'cpu_us_per_event'):.0f} µs); "
     f"p99 {ms(median('milky_500', 'p99_us'))} and {ms(median('milky_100', 'p99_us'))}"),
    ("QQ gateway within 1.5x of OneBot's CPU per event", f"{ratio('qq_w64', 'echo_w64'):.2f}x "
     f"(the gateway's own floor is {ratio('bare_qq_w64', 'bare_w64'):.2f}x OneBot's; rhaibot on the gateway is "
     f"{ratio('qq_w64', 'bare_qq_w64'):.2f}x its floor)"),
    ("QQ gateway at 500 and 100 events/s", f"{ratio('qq_500', 'echo_500'):.2f}x and {ratio('qq_100', 'echo_100'):.2f}x "
     f"OneBot's ({median('qq_500', 'cpu_us_per_event'):.0f} and {median('qq_100', 'cpu_us_per_event'):.0f} µs); "
     f"p99 {ms(median('qq_500', 'p99_us'))} and {ms(median('qq_100', 'p99_us'))}"),
    ("cold start with 20 scripts ≤ 100 ms", f"{cold['median_ms']:.1f} ms ({cold['min_ms']:.1f}–{cold['max_ms']:.1f}, {cold['runs']} starts)"),
]
for target, measured in targets:
    print(f"| {target} | {measured} |")

print("\n## Every case\n")
print("| case | rounds | replies/s | CPU µs/event | switches/event | p50 / p99 | peak RSS | missing | µs/event by thread |")
print("|---|---|---|---|---|---|---|---|---|")
for label, case in [
    ("bare, window 64", "bare_w64"),
    ("echo, window 64", "echo_w64"),
    ("echo, window 256", "echo_w256"),
    ("counter (kv), window 64", "counter_w64"),
    ("many (20 scripts), window 64", "many_w64"),
    ("bare Milky, window 64, 16 groups", "bare_milky_w64"),
    ("Milky echo, window 64, 16 groups", "milky_w64"),
    ("bare QQ gateway, window 64, 16 groups", "bare_qq_w64"),
    ("QQ gateway echo, window 64, 16 groups", "qq_w64"),
    ("bare, 500 events/s", "bare_500"),
    ("echo, 500 events/s", "echo_500"),
    ("Milky echo, 500 events/s", "milky_500"),
    ("QQ gateway echo, 500 events/s", "qq_500"),
    ("bare, 100 events/s", "bare_100"),
    ("echo, 100 events/s", "echo_100"),
    ("Milky echo, 100 events/s", "milky_100"),
    ("QQ gateway echo, 100 events/s", "qq_100"),
]:
    print(row(label, case))

print(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")).read())
print("\n## Key-value store from scripts (`kvbench`)\n")
print("```\n" + open(os.path.join(work, "kv.txt")).read().strip() + "\n```\n")
print("The `durable` rows write as top-level code and tools do: each write is one SQLite transaction")
print("in WAL mode with `synchronous = NORMAL`, in the OS when `kv::set` returns, so it survives the")
print("process being killed (tested with SIGKILL), not a power cut. The `grouped` row writes as")
print("callbacks on workers do: writes share commits (16 at most here), and what a callback sends")
print("after a write waits for its commit.\n")
print("## Hot reload (`reloadbench`)\n")
print("```\n" + open(os.path.join(work, "reload.txt")).read().strip() + "\n```\n")
print("Time from a changed file to its new handlers and jobs being active (compile, top level,")
print("swap), without the watcher's 150 ms debounce.\n")
print("## Commands\n")
print("```sh\nbench/run.sh                      # everything above, rewrites this file")
print("ROUNDS=5 EVENTS=50000 bench/run.sh")
print("cargo run --release -p rhaibot-bench --bin kvbench")
print("cargo run --release -p rhaibot-bench --bin reloadbench")
print("target/release/loadgen --help    # the load generator on its own (--protocol onebot11|milky|qq)")
print("target/release/coldstart target/release/rhaibot SCRIPTS_DIR '/cmd 1'\n```")

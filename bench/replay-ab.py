#!/usr/bin/env python3
"""Side by side: `cdc-relay replay` under two or more configurations (environment
variables, or another binary), on the benchmark's events (6,000 records unless --size
says otherwise) and a real broker.

    bench/replay-ab.py [--rounds 8] [--events 10] [--size 6000] NAME=[VAR=VALUE,...][,BIN=PATH] ...

    bench/replay-ab.py unbounded=RELAY_MAX_IN_FLIGHT=1000000 w2000=RELAY_MAX_IN_FLIGHT=2000

Each round starts a fresh broker (scripts/broker.sh), then runs one process per
configuration (in turn, the order reversed every other round), each replaying the same
events once with the benchmark's routes. Per configuration: the median of the warm
invocations (every one but each process's first), the median first invocation and its
ratio to the warm median, the median init (`replay`'s `init_ms`: settings, routes, producer
and its warm-up), the median warm `transform_ms` (from the start of the batch
until every record is transformed and its messages enqueued), the peak RSS of the
processes (median and largest), and their CPU seconds (user + system, median). The events
are `cdc-relay gen-event` output with the benchmark's seeds (bench/bench.py), generated
into target/bench-data when missing.
Build first: `cargo build --release --locked --bins`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELAY = os.path.join(ROOT, "target", "release", "cdc-relay")
TOPICS = ["bench.orders", "bench.users", "bench.payments", "bench.invoices"]


def events(count, size):
    data = os.path.join(ROOT, "target", "bench-data")
    os.makedirs(data, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(data, f"b{size}-{i}.json")
        if not os.path.exists(path):
            subprocess.run([RELAY, "gen-event", "--records", str(size), "--seed", str(1000 * size + i),
                            "--value-bytes", "400", "-o", path], check=True)
        paths.append(path)
    return paths


def configuration(arg):
    name, _, rest = arg.partition("=")
    env, binary = {}, RELAY
    for pair in filter(None, rest.split(",")):
        var, _, value = pair.partition("=")
        if var == "BIN":
            binary = value
        else:
            env[var] = value
    return name, env, binary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--size", type=int, default=6000, help="records per event")
    ap.add_argument("configurations", nargs="+")
    args = ap.parse_args()
    if args.events < 2:
        ap.error("--events: at least 2 (the first invocation of each process is not a warm one)")
    configs = [configuration(a) for a in args.configurations]
    files = events(args.events, args.size)
    results = {name: {"first": [], "warm": [], "transform": [], "init": [], "rss": [], "cpu": []}
               for name, _, _ in configs}
    for round_ in range(args.rounds):
        started = subprocess.run([os.path.join(ROOT, "scripts", "broker.sh"), "start"] + TOPICS,
                                 capture_output=True, text=True, check=True)
        broker = started.stdout.strip().splitlines()[-1]
        try:
            for name, env, binary in configs if round_ % 2 == 0 else configs[::-1]:
                with tempfile.NamedTemporaryFile("r", suffix=".time") as timing:
                    run_env = {**os.environ, "RELAY_ROUTES": os.path.join(ROOT, "bench", "routes.toml"),
                               "RUST_LOG": "warn", **env}
                    out = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", timing.name, binary, "replay",
                                          "--brokers", broker] + files, env=run_env, capture_output=True, text=True)
                    if out.returncode:
                        sys.exit(f"{name}: {out.stderr[-1500:]}")
                    peak_kb, user, system = timing.read().split()[-3:]
                lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
                times = [line["ms"] for line in lines if "ms" in line]
                if not all(line["ok"] for line in lines if "ms" in line):
                    sys.exit(f"{name}: an invocation failed")
                result = results[name]
                result["first"].append(times[0])
                result["init"] += [line["init_ms"] for line in lines if "init_ms" in line]
                result["warm"] += times[1:]
                result["transform"] += [t for t in [line.get("transform_ms") for line in lines if "ms" in line][1:]
                                        if t is not None]
                result["rss"].append(int(peak_kb) / 1024)
                result["cpu"].append(float(user) + float(system))
        finally:
            subprocess.run([os.path.join(ROOT, "scripts", "broker.sh"), "stop"], capture_output=True)

    def median(values):  # NaN for a binary that does not report the figure
        return statistics.median(values) if values else float("nan")

    for name, result in results.items():
        warm, first = statistics.median(result["warm"]), statistics.median(result["first"])
        print(f"{name:12} init {median(result['init']):6.2f} ms  "
              f"warm {warm:7.2f} ms  first {first:7.2f} ms ({first / warm:.2f}x)  "
              f"transform {median(result['transform']):6.3f} ms  "
              f"peak RSS median {statistics.median(result['rss']):5.1f} max {max(result['rss']):5.1f} MiB  "
              f"CPU {statistics.median(result['cpu']):.3f} s")


if __name__ == "__main__":
    main()

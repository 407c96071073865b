#!/usr/bin/env python3
"""Side by side: `cdc-relay serve`'s lag under two or more binaries, on the same broker
kind, rate and duration, interleaved (the order reversed every other round), so that a
change to serve's path is told apart from this machine's drift between runs.

    bench/lag-ab.py [--rounds 4] [--rate 500] [--seconds 30|60] [--broker mock|nisshi]
                    [--contender serve|serve-eos] [--commit NAME=SHA ...] [--note TEXT]
                    [--out FILE] NAME=PATH ...

Each run is one of bench/lag.py's (a broker of its own, a fresh source topic, a warm-up,
scripts/feed.py at the rate, the independent reader); the broker and the feed are the
ones `target/release/cdc-relay` gives, only serve's binary changes. Per binary: the median
over rounds of the p50, p99 and largest lag, of serve's p99 until produced, and of the
CPU (cores) and peak RSS. Every run's line is printed as it ends; with --out the runs
and the summary are written there as JSON, with the command line, each binary's commit
(--commit) and --note (how the binaries were built). A run that fails (bench/lag.py gives
up on it) is recorded as failed and the rounds go on; the exit status is 1 when a run
failed or lost records.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import importlib

lag = importlib.import_module("lag")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, help="default: 30 on the mock cluster, 60 on nisshi (as bench/lag.py)")
    parser.add_argument("--broker", choices=["mock", "nisshi"], default="mock")
    parser.add_argument("--contender", choices=["serve", "serve-eos"], default="serve")
    parser.add_argument("--commit", action="append", default=[], help="NAME=SHA: the commit a binary was built from")
    parser.add_argument("--note", default="", help="how the binaries were built, kept in --out")
    parser.add_argument("--out")
    parser.add_argument("binaries", nargs="+", help="NAME=PATH")
    args = parser.parse_args()
    binaries = []
    for item in args.binaries:
        name, _, path = item.partition("=")
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"lag-ab: {item}: expected NAME=PATH of an executable")
        if name in (n for n, _ in binaries):
            sys.exit(f"lag-ab: {name}: named twice")
        binaries.append((name, os.path.abspath(path)))
    commits = dict(c.partition("=")[::2] for c in args.commit)
    unknown = set(commits) - {n for n, _ in binaries}
    if unknown:
        sys.exit(f"lag-ab: --commit names no binary: {', '.join(sorted(unknown))}")
    if args.seconds is None:
        args.seconds = 30 if args.broker == "mock" else 60
    fetch_wait_ms = 10 if args.broker == "mock" else None
    logs = os.path.join(lag.ROOT, "target", "lag")
    os.makedirs(logs, exist_ok=True)
    runs = []
    for round_ in range(args.rounds):
        order = binaries if round_ % 2 == 0 else list(reversed(binaries))
        for name, path in order:
            lag.SERVE_BINARY = path
            try:
                broker = lag.start_broker(args.broker)
                result = lag.run_one(args.contender, broker, args.rate, args.seconds, logs, None, fetch_wait_ms)
            except SystemExit as e:
                # bench/lag.py gave up on the run (it says why): recorded, and the rounds go on.
                result = {"failed": str(e), "lag_ms": None, "to_produce_ms": None, "missing": None}
            finally:
                lag.stop_broker()
            result["binary"] = name
            result["round"] = round_
            print(json.dumps({k: result.get(k) for k in ("binary", "round", "lag_ms", "to_produce_ms", "cpu_cores",
                                                          "broker_cpu_by_10s", "missing", "failed")}), flush=True)
            runs.append(result)
    summary = {}
    for name, _ in binaries:
        mine = [r for r in runs if r["binary"] == name and r["lag_ms"] is not None and r["to_produce_ms"] is not None]
        med = lambda f: round(statistics.median(f(r) for r in mine), 3) if mine else None
        summary[name] = {"runs": len(mine),
                         "lag_p50_ms": med(lambda r: r["lag_ms"]["p50"]),
                         "lag_p99_ms": med(lambda r: r["lag_ms"]["p99"]),
                         "lag_max_ms": med(lambda r: r["lag_ms"]["max"]),
                         "to_produce_p99_ms": med(lambda r: r["to_produce_ms"]["p99"]),
                         "cpu_cores": med(lambda r: r["cpu_cores"]),
                         "peak_rss_mib": med(lambda r: r["peak_rss_mib"]),
                         "missing": sum(r["missing"] or 0 for r in runs if r["binary"] == name),
                         "failed": sum(1 for r in runs if r["binary"] == name
                                       and (r.get("failed") or r["lag_ms"] is None or r["to_produce_ms"] is None))}
    print(json.dumps(summary, indent=1))
    if args.out:
        out = {"date": time.strftime("%Y-%m-%d"), "command": shlex.join(["python3", "bench/lag-ab.py"] + sys.argv[1:]),
               "broker": lag.BROKERS[args.broker], "rate": args.rate, "seconds": args.seconds,
               "contender": args.contender, "rounds": args.rounds, "binaries": dict(binaries),
               "commits": commits, "note": args.note, "summary": summary, "runs": runs}
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    if any(s["missing"] or s["failed"] for s in summary.values()):
        sys.exit("lag-ab: some runs failed or lost records")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The end-to-end comparison of cdc-relay with its peers (see BENCHMARKS.md).

Every contender gets the same generated MSK events of DMS records, applies the same
mapping (bench/routes.toml, bench/mapping.json) and produces to the same real broker
(tansu, started by scripts/broker.sh), waiting for every acknowledgement. Each run is a
fresh process (one execution environment) that invokes its batches one after another;
contenders are interleaved in a shuffled order per repetition.
"""
import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
RESULTS = os.path.join(ROOT, "bench", "results")
CONTENDERS = ["cdc-relay", "raw-rdkafka", "kafkajs-seed", "kafkajs-batch", "sarama-seed", "sarama-async"]
TOPICS = ["bench.orders", "bench.users", "bench.payments", "bench.invoices"]


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, check=True, text=True, capture_output=True, **kw).stdout


def command(contender, broker, files):
    mapping = os.path.join(ROOT, "bench", "mapping.json")
    if contender == "cdc-relay":
        return [os.path.join(BIN, "cdc-relay"), "replay", "--brokers", broker] + files
    if contender == "raw-rdkafka":
        return [os.path.join(BIN, "examples", "raw_produce"), broker, "1"] + [f + ".msgs" for f in files]
    if contender.startswith("kafkajs"):
        return ["node", os.path.join(ROOT, "bench", "node", "relay.js"), contender.split("-")[1], broker, "1"] + files
    return [os.path.join(ROOT, "target", "relaybench"), contender.split("-")[1], broker, "1", mapping] + files


def run_contender(contender, broker, files):
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        env = dict(os.environ, RELAY_ROUTES=os.path.join(ROOT, "bench", "routes.toml"), RUST_LOG="warn")
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + command(contender, broker, files),
                             cwd=ROOT, text=True, capture_output=True, env=env)
        if out.returncode != 0:
            raise SystemExit(f"{contender} failed: {out.stderr[-2000:]}")
        lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
        peak_kb = int(rss.read().strip().splitlines()[-1])
    init = next((l["init_ms"] for l in lines if "init_ms" in l), None)
    invocations = [l for l in lines if "ms" in l]
    if not all(i["ok"] for i in invocations):
        raise SystemExit(f"{contender}: an invocation failed")
    return init, [i["ms"] for i in invocations], peak_kb * 1024


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def pipeline_rate():
    """records/s on one core of decode + transform, from the criterion bench."""
    sh(["cargo", "bench", "--locked", "--bench", "pipeline", "--", "decode_and_transform_records", "--noplot"])
    est = json.load(open(os.path.join(ROOT, "target", "criterion", "pipeline", "decode_and_transform_records", "new", "estimates.json")))
    return 6000 / (est["median"]["point_estimate"] / 1e9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="1,000 records, one run each; writes nothing")
    ap.add_argument("--sizes", default="1,10,100,1000,6000,10000")
    ap.add_argument("--total", type=int, default=60000)
    ap.add_argument("--max-invocations", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    total, repeats = args.total, args.repeats
    if args.smoke:
        sizes, total, repeats = [100], 1000, 1

    broker = sh(["scripts/broker.sh", "start"] + TOPICS).strip().splitlines()[-1]
    data = os.path.join(ROOT, "target", "bench-data")
    os.makedirs(data, exist_ok=True)
    rows, cold = [], {}
    try:
        for size in sizes:
            count = max(1, min(total // size, args.max_invocations))
            files = []
            for i in range(count):
                path = os.path.join(data, f"b{size}-{i}.json")
                if not os.path.exists(path + ".msgs"):
                    sh([os.path.join(BIN, "cdc-relay"), "gen-event", "--records", str(size), "--seed", str(1000 * size + i),
                        "--value-bytes", "400", "-o", path])
                    with open(path + ".msgs", "w") as f:
                        f.write(sh([os.path.join(BIN, "cdc-relay"), "check-routes", "bench/routes.toml", path]))
                files.append(path)
            samples = {c: [] for c in CONTENDERS}
            firsts, rss = {c: [] for c in CONTENDERS}, {c: [] for c in CONTENDERS}
            for rep in range(repeats):
                order = CONTENDERS[:]
                random.Random(rep * 7919 + size).shuffle(order)
                for contender in order:
                    init, times, peak = run_contender(contender, broker, files)
                    firsts[contender].append(times[0])
                    samples[contender].extend(times[1:] if len(times) > 1 else times)
                    rss[contender].append(peak)
                    print(f"size {size:>5} rep {rep} {contender:<13} median {statistics.median(times):8.2f} ms  "
                          f"rss {peak / 2**20:6.1f} MiB  init {init or 0:7.1f} ms", flush=True)
            for c in CONTENDERS:
                med = statistics.median(samples[c])
                rows.append({"contender": c, "batch_size": size, "median_ms": round(med, 3),
                             "p95_ms": round(percentile(samples[c], 0.95), 3),
                             "records_per_s": round(size / (med / 1e3), 1),
                             "peak_rss_bytes": max(rss[c]), "invocations": len(samples[c]) + len(firsts[c])})
            if size == 6000 or (args.smoke and not cold):
                cold = {"first_invocation_ms": round(statistics.median(firsts["cdc-relay"]), 3),
                        "warm_median_ms": round(statistics.median(samples["cdc-relay"]), 3), "batch_size": size}
    finally:
        subprocess.run(["scripts/broker.sh", "stop"], cwd=ROOT, capture_output=True)
    if args.smoke:
        print("bench smoke: every contender ran; nothing written")
        return
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]).strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "method": {"sizes": sizes, "total_records": total, "max_invocations_per_size": args.max_invocations,
                   "repeats": repeats, "value_bytes": 400},
        "results": rows,
        "cold": cold,
        "pipeline_records_per_s_per_core": round(pipeline_rate(), 0),
    }
    os.makedirs(RESULTS, exist_ok=True)
    json.dump(result, open(os.path.join(RESULTS, "latest.json"), "w"), indent=2)
    chart(result)
    print(json.dumps(result, indent=2))


def chart(result):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for c in CONTENDERS:
        pts = sorted((r["batch_size"], r["median_ms"]) for r in result["results"] if r["contender"] == c)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=c)
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("BatchSize (records per invocation)"); ax.set_ylabel("median wall time per invocation (ms)")
    ax.set_title("cdc-relay vs peers, same input, same broker (lower is better)")
    ax.grid(True, which="both", alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(os.path.join(RESULTS, "latency.png"), dpi=110)


if __name__ == "__main__":
    main()

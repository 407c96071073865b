#!/usr/bin/env python3
"""The end-to-end comparison of cdc-relay with its peers (see BENCHMARKS.md).

Every contender gets the same generated MSK events of DMS records, applies the same
mapping (bench/routes.toml, bench/mapping.json) and produces to the same real broker
(started by scripts/broker.sh), waiting for every acknowledgement. Each run is a
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
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
RESULTS = os.path.join(ROOT, "bench", "results")
CONTENDERS = ["cdc-relay", "raw-rdkafka", "kafkajs-seed", "kafkajs-batch", "sarama-seed", "sarama-async"]
# The relay as Lambda runs it: the same release build behind `cargo lambda watch`, each event
# POSTed to the emulator's invoke endpoint and handed to the function through the
# runtime API. Beside `cdc-relay` (replay), not a peer: its time includes the HTTP hops.
LAMBDA = "cdc-relay-lambda"
LAMBDA_PORT = 9391
# Lambda's synchronous payload limit: larger events are not measured through it.
LAMBDA_MAX_PAYLOAD = 6 * 2**20
# Columns of the report and lines of the chart.
SHOWN = ["cdc-relay", LAMBDA] + CONTENDERS[1:]
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


def run_lambda(broker, files):
    """One run of the relay behind `cargo lambda watch` (a fresh function process): an
    empty event first (the function starts and initialises), then each file timed from
    the POST to the answer. Peak RSS is the function process's (VmHWM), not the
    emulator's."""
    with socket.socket() as probe_socket:
        if probe_socket.connect_ex(("127.0.0.1", LAMBDA_PORT)) == 0:
            raise SystemExit(f"port {LAMBDA_PORT} is taken (a function left by an earlier run?)")
    log = tempfile.TemporaryFile("w+")
    cmd = ["cargo", "lambda", "watch", "--release", "--invoke-port", str(LAMBDA_PORT), "--ignore-changes",
           "--env-var", f"RELAY_BROKERS={broker}", "--env-var", "RELAY_PARTIAL_BATCH=true",
           "--env-var", f"RELAY_ROUTES={os.path.join(ROOT, 'bench', 'routes.toml')}", "--env-var", "RUST_LOG=warn"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{LAMBDA_PORT}/2015-03-31/functions/cdc-relay/invocations"

    def invoke(body):
        request = urllib.request.Request(url, data=body, method="POST")
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as answer:
            text = answer.read()
        return (time.perf_counter() - started) * 1e3, json.loads(text)

    functions = {}
    try:
        probe = json.dumps({"eventSource": "SelfManagedKafka", "bootstrapServers": broker, "records": {}}).encode()
        deadline = time.monotonic() + 900
        while True:
            try:
                invoke(probe)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"cargo lambda watch never answered: {log.read()[-2000:]}")
                time.sleep(0.2)
        times = []
        for path in files:
            ms, answer = invoke(open(path, "rb").read())
            if not isinstance(answer, dict) or "errorType" in answer or answer.get("batchItemFailures"):
                raise SystemExit(f"{LAMBDA}: {path}: not every record done: {str(answer)[:500]}")
            times.append(ms)
        functions = dict(function_hwm_kb(proc.pid))
        if not functions:
            raise SystemExit(f"{LAMBDA}: the function's process was not found under cargo lambda watch")
        peak_kb = max(functions.values())
    finally:
        stop_group(proc)
        log.close()
        # The function runs in a session of its own: gone with the emulator, as a rule.
        for pid in functions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return None, times, peak_kb * 1024


def stop_group(proc):
    """SIGTERM to a process group started with start_new_session, SIGKILL after 30 s."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def function_hwm_kb(ancestor):
    """(pid, VmHWM) of each relay process descended from `ancestor` (the function `cargo
    lambda watch` runs, in a session of its own)."""
    relay = os.path.realpath(os.path.join(BIN, "cdc-relay"))

    def parent(pid):
        # Field 4 of stat is the parent; the name before it may hold spaces.
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.path.realpath(f"/proc/{pid}/exe") != relay:
                continue
            up = int(pid)
            while up > 1 and up != ancestor:
                up = parent(up)
            if up != ancestor:
                continue
            status = open(f"/proc/{pid}/status").read()
        except (OSError, ValueError, IndexError):
            continue
        yield int(pid), next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))


def cpu_model():
    """The processor's model name (/proc/cpuinfo): figures move with it between runs."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown processor"


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def pipeline_rates():
    """records/s on one core from the criterion bench (example routes): the MSK event
    parsed from its bytes, then decode + transform of each record (what an invocation
    does before it produces), and decode + transform alone (earlier runs' figure)."""
    sh(["cargo", "bench", "--locked", "-p", "cdc-relay-core", "--bench", "transform", "--",
        "pipeline/(parse_)?decode_and_transform_records$", "--noplot"])

    def rate(name):
        est = json.load(open(os.path.join(ROOT, "target", "criterion", "pipeline", name, "new", "estimates.json")))
        return round(6000 / (est["median"]["point_estimate"] / 1e9), 0)
    return rate("parse_decode_and_transform_records"), rate("decode_and_transform_records")


def instructions_per_record():
    """Instructions per record of the MSK parse + decode + transform of a generated
    6,000-record event (crates/core/examples/profile.rs under callgrind, as
    bench/core-ab.sh counts them), per routes file; None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    sh(["cargo", "build", "--locked", "--release", "-p", "cdc-relay-core", "--example", "profile"])
    counts = {}
    for name, routes in (("example_routes", "routes.toml"), ("bench_routes", "bench/routes.toml")):
        out = os.path.join(ROOT, "target", "bench-callgrind.out")
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--toggle-collect=profile::pass",
                        os.path.join(ROOT, "target", "release", "examples", "profile"), "1", routes],
                       cwd=ROOT, check=True, capture_output=True)
        totals = sh(["callgrind_annotate", out])
        total = next(int(line.split()[0].replace(",", "")) for line in totals.splitlines() if "PROGRAM TOTALS" in line)
        counts[name] = total // 6000
    counts["what"] = "MSK event parsed from its bytes, then decode + transform of each of its 6,000 records"
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="1,000 records, one run each; writes nothing")
    ap.add_argument("--sizes", default="1,10,100,1000,6000,10000")
    ap.add_argument("--total", type=int, default=60000)
    ap.add_argument("--max-invocations", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite BENCHMARKS.md and the chart from bench/results/latest.json")
    ap.add_argument("--contenders", default=",".join(CONTENDERS + [LAMBDA]),
                    help="a subset, for a quick look; the full run (all of them) writes the results")
    args = ap.parse_args()
    contenders = args.contenders.split(",")
    partial = sorted(contenders) != sorted(CONTENDERS + [LAMBDA])
    if args.report_only:
        result = json.load(open(os.path.join(RESULTS, "latest.json")))
        chart(result)
        report(result)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    total, repeats = args.total, args.repeats
    if args.smoke:
        sizes, total, repeats = [100], 1000, 1

    broker = sh(["scripts/broker.sh", "start"] + TOPICS).strip().splitlines()[-1]
    data = os.path.join(ROOT, "target", "bench-data")
    os.makedirs(data, exist_ok=True)
    rows, cold, cold_lambda = [], {}, {}
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
            samples = {c: [] for c in contenders}
            firsts, rss = {c: [] for c in contenders}, {c: [] for c in contenders}
            for rep in range(repeats):
                order = contenders[:]
                random.Random(rep * 7919 + size).shuffle(order)
                for contender in order:
                    if contender == LAMBDA:
                        if max(os.path.getsize(f) for f in files) > LAMBDA_MAX_PAYLOAD:
                            continue
                        init, times, peak = run_lambda(broker, files)
                    else:
                        init, times, peak = run_contender(contender, broker, files)
                    firsts[contender].append(times[0])
                    samples[contender].extend(times[1:] if len(times) > 1 else times)
                    rss[contender].append(peak)
                    print(f"size {size:>5} rep {rep} {contender:<13} median {statistics.median(times):8.2f} ms  "
                          f"rss {peak / 2**20:6.1f} MiB  init {init or 0:7.1f} ms", flush=True)
            for c in contenders:
                if not samples[c]:
                    continue
                med = statistics.median(samples[c])
                rows.append({"contender": c, "batch_size": size, "median_ms": round(med, 3),
                             "p95_ms": round(percentile(samples[c], 0.95), 3),
                             "records_per_s": round(size / (med / 1e3), 1),
                             "peak_rss_bytes": max(rss[c]), "invocations": len(samples[c]) + len(firsts[c])})
            if "cdc-relay" in contenders and (size == 6000 or (args.smoke and not cold)):
                cold = {"first_invocation_ms": round(statistics.median(firsts["cdc-relay"]), 3),
                        "warm_median_ms": round(statistics.median(samples["cdc-relay"]), 3), "batch_size": size}
            if samples.get(LAMBDA) and (size == 6000 or (args.smoke and not cold_lambda)):
                cold_lambda = {"first_invocation_ms": round(statistics.median(firsts[LAMBDA]), 3),
                               "warm_median_ms": round(statistics.median(samples[LAMBDA]), 3), "batch_size": size}
    finally:
        subprocess.run(["scripts/broker.sh", "stop"], cwd=ROOT, capture_output=True)
    if args.smoke or partial:
        print("bench smoke or partial run: nothing written")
        return
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": sh(["git", "rev-parse", "--short", "HEAD"]).strip(),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}",
        # Kept with the run, so a report written again later names what this run used.
        "versions": versions(),
        "method": {"sizes": sizes, "total_records": total, "max_invocations_per_size": args.max_invocations,
                   "repeats": repeats, "value_bytes": 400},
        "results": rows,
        "cold": cold,
        "cold_lambda": cold_lambda,
    }
    result["pipeline_records_per_s_per_core"], result["decode_and_transform_records_per_s_per_core"] = pipeline_rates()
    result["instructions_per_record"] = instructions_per_record()
    os.makedirs(RESULTS, exist_ok=True)
    json.dump(result, open(os.path.join(RESULTS, "latest.json"), "w"), indent=2)
    chart(result)
    report(result)
    print(json.dumps(result, indent=2))


def versions():
    def first_line(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    def crate(name):
        i = lock.find(f'name = "{name}"\nversion = "')
        return lock[i:].split('"')[3] if i >= 0 else "unknown"
    sarama = "unknown"
    try:
        sarama = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "golang-github-shopify-sarama-dev"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return {
        "rustc": first_line(["rustc", "--version"]), "rdkafka": crate("rdkafka"), "librdkafka": crate("rdkafka-sys"),
        "node": first_line(["node", "--version"]), "kafkajs": json.load(open(os.path.join(ROOT, "bench", "node", "node_modules", "kafkajs", "package.json")))["version"],
        "go": first_line(["go", "version"]), "sarama": sarama,
        "broker": first_line([os.path.join(ROOT, "target", "tools-nisshi", "bin", "nisshi"), "--version"]) if os.path.exists(os.path.join(ROOT, "target", "tools-nisshi", "bin", "nisshi")) else first_line(["nisshi", "--version"]),
    }


def report(result):
    rows = result["results"]
    by = {(r["contender"], r["batch_size"]): r for r in rows}
    sizes = sorted({r["batch_size"] for r in rows})
    # A run recorded before runs kept their versions: this machine's, as that run's report took them.
    v = result.get("versions") or versions()
    lines = ["# Benchmarks", "",
             "cdc-relay against the two implementations it replaces (kafkajs and sarama, each as the seed built",
             "it and as a careful user would) and against a raw rdkafka producer that only produces the",
             "already-transformed messages (the client+broker ceiling). Generated by `bench/run.sh`; raw numbers",
             "in `bench/results/latest.json`.", "",
             f"- Date: {result['date']}, commit `{result['commit']}`",
             f"- Machine: {result['machine']}",
             "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "",
             "## Method", "",
             "Every contender gets the same input files: MSK events of DMS records from `cdc-relay gen-event`",
             "(400-byte values, 4 tables, inserts, updates with before-image and deletes), decodes base64, parses",
             "the DMS JSON, applies the same mapping (`bench/routes.toml` = `bench/mapping.json`: table -> topic, key",
             "columns, include, rename) and produces to the same real broker (scripts/broker.sh, on loopback; its version above), waiting for every",
             "acknowledgement (acks=all). Each run is a fresh process (one execution environment) that connects,",
             "then invokes its batches one after another; the first invocation is reported separately (cold) and",
             "the rest give the warm median and p95. Contenders run interleaved in a shuffled order, "
             f"{result['method']['repeats']} repetitions per batch size. The seed swept a fixed 60,000 records; here",
             f"each batch size runs min(60,000 / BatchSize, {result['method']['max_invocations_per_size']}) invocations per run, so BatchSize 1 and 10",
             "run 200 invocations rather than 60,000 and 6,000. Peak RSS is the whole process's (`/usr/bin/time`).", "",
             "Differences between the clients, stated plainly: cdc-relay and raw-rdkafka use an idempotent",
             "producer (librdkafka); kafkajs and sarama use acks=all without idempotence, because both clients'",
             "idempotent producers allow only one request in flight and the seed did not use them. cdc-relay also",
             "computes a UUID v5 event id per message, which the peers do not. At BatchSize 10,000 with 400-byte",
             "values the event is about 7.7 MB, above Lambda's 6 MB payload limit; it is measured as the seed did.", "",
             f"`{LAMBDA}` runs the function's code as Lambda runs it: behind `cargo lambda watch` (the emulator of",
             "Lambda's invoke and runtime APIs), each event POSTed to the invoke endpoint from the benchmark's",
             "Python process, timed from the request to the answer. It pays what `replay` does not: the",
             "payload's two HTTP hops (client to emulator, emulator to the function through the runtime API)",
             "and the runtime's handling of it. Each of its runs starts the emulator and the function afresh;",
             "an empty event first lets the function initialise, so its first timed invocation is the first",
             "after init, as for the others. Its peak RSS is the function process's (VmHWM). Events above",
             "Lambda's 6 MB payload limit (BatchSize 10,000) are not sent through it. Both it and `cdc-relay` are",
             "the host's release build; the deployed artifact is built by `cargo lambda build --release`, which",
             "adds thin link-time optimisation, one codegen unit and the target CPU: built so, the core ran 5.9%",
             "fewer instructions per record (`bench/results/artifact-build-2026-12-07.txt`).", "",
             "## Median wall time per invocation (ms)", "",
             "| BatchSize | " + " | ".join(SHOWN) + " |", "|---|" + "---|" * len(SHOWN)]
    for size in sizes:
        lines.append(f"| {size} | " + " | ".join(f"{by[(c, size)]['median_ms']:.2f}" if (c, size) in by else "-" for c in SHOWN) + " |")
    lines += ["", "## p95 wall time (ms), throughput (records/s) and peak RSS (MiB)", "",
              "| BatchSize | contender | p95 ms | records/s | peak RSS MiB |", "|---|---|---|---|---|"]
    for size in sizes:
        for c in SHOWN:
            if (c, size) in by:
                r = by[(c, size)]
                lines.append(f"| {size} | {c} | {r['p95_ms']:.2f} | {r['records_per_s']:,.0f} | {r['peak_rss_bytes'] / 2**20:.1f} |")
    lines += ["", "![median latency per batch size](bench/results/latency.png)", ""]
    if any(size == 6000 for size in sizes):
        relay = by[("cdc-relay", 6000)]
        peers = ["kafkajs-seed", "kafkajs-batch", "sarama-seed", "sarama-async"]
        best = min(peers, key=lambda c: by[(c, 6000)]["median_ms"])
        ratio = lambda c: by[(c, 6000)]["median_ms"] / relay["median_ms"]
        ceiling = relay["median_ms"] / by[("raw-rdkafka", 6000)]["median_ms"]
        lowest_peer_rss = min(by[(c, 6000)]["peak_rss_bytes"] for c in peers)
        rss_ratio = relay["peak_rss_bytes"] / lowest_peer_rss
        cold = result["cold"]
        cold_ratio = cold["first_invocation_ms"] / cold["warm_median_ms"]
        verdict = lambda ok: "met" if ok else "missed"
        small = lambda size: by[("cdc-relay", size)]["median_ms"] / by[("kafkajs-batch", size)]["median_ms"]
        lines += ["## Targets", "",
                  "| target | measured | |", "|---|---|---|",
                  f"| MSK parse + decode + transform >= 1,000,000 records/s per core (criterion, example routes) | {result['pipeline_records_per_s_per_core']:,.0f} records/s ({result.get('decode_and_transform_records_per_s_per_core') or 0:,.0f} without the parse) | {verdict(result['pipeline_records_per_s_per_core'] >= 1e6)} |"]
        ipr = result.get("instructions_per_record")
        if ipr:
            lines.append(f"| the same <= 6,500 instructions per record (callgrind, example routes) | {ipr['example_routes']:,} ({ipr['bench_routes']:,} with bench/routes.toml) | {verdict(ipr['example_routes'] <= 6500)} |")
        lines.append(f"| 6,000 records: <= 1.25x raw-rdkafka | {ceiling:.2f}x ({relay['median_ms']:.1f} ms vs {by[('raw-rdkafka', 6000)]['median_ms']:.1f} ms) | {verdict(ceiling <= 1.25)} |")
        for size in (1, 10):
            if ("cdc-relay", size) in by and ("kafkajs-batch", size) in by:
                lines.append(f"| BatchSize {size}: <= 1.0x kafkajs-batch | {small(size):.2f}x ({by[('cdc-relay', size)]['median_ms']:.2f} ms vs {by[('kafkajs-batch', size)]['median_ms']:.2f} ms) | {verdict(small(size) <= 1.0)} |")
        lines += [f"| 6,000 records: >= 5x faster than the best peer ({best}) | {ratio(best):.2f}x | {verdict(ratio(best) >= 5)} |",
                  f"| 6,000 records: >= 10x faster than kafkajs-seed | {ratio('kafkajs-seed'):.1f}x | {verdict(ratio('kafkajs-seed') >= 10)} |",
                  f"| peak RSS at 6,000 <= 0.7x the lowest peer | {relay['peak_rss_bytes'] / 2**20:.1f} MiB vs {lowest_peer_rss / 2**20:.1f} MiB ({rss_ratio:.2f}x) | {verdict(rss_ratio <= 0.7)} |",
                  f"| first invocation after init <= 1.15x warm (6,000 records) | {cold['first_invocation_ms']:.1f} ms vs {cold['warm_median_ms']:.1f} ms ({cold_ratio:.2f}x) | {verdict(cold_ratio <= 1.15)} |",
                  ""]
        if (LAMBDA, 6000) in by:
            through = by[(LAMBDA, 6000)]
            cold_lambda = result.get("cold_lambda") or {}
            lines += ["The Lambda path at 6,000 records (not a target of its own: what it adds to the figures above):", "",
                      f"- median {through['median_ms']:.1f} ms, {through['median_ms'] / relay['median_ms']:.2f}x `replay`'s "
                      f"{relay['median_ms']:.1f} ms; {by[(best, 6000)]['median_ms'] / through['median_ms']:.2f}x faster than the best peer ({best});",
                      f"- peak RSS of the function {through['peak_rss_bytes'] / 2**20:.1f} MiB ({through['peak_rss_bytes'] / lowest_peer_rss:.2f}x the lowest peer);"]
            if cold_lambda:
                lines.append(f"- first invocation after init {cold_lambda['first_invocation_ms']:.1f} ms against a warm "
                             f"{cold_lambda['warm_median_ms']:.1f} ms ({cold_lambda['first_invocation_ms'] / cold_lambda['warm_median_ms']:.2f}x).")
            lines.append("")
    for broker in ("tansu", "nisshi", "mock"):
        lag = os.path.join(ROOT, "bench", "results", f"lag-{broker}.md")
        if os.path.exists(lag):
            lines += [open(lag).read().strip(), ""]
    analysis = os.path.join(ROOT, "bench", "analysis.md")
    if os.path.exists(analysis):
        lines += [open(analysis).read().strip(), ""]
    open(os.path.join(ROOT, "BENCHMARKS.md"), "w").write("\n".join(lines))


def chart(result):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for c in SHOWN:
        pts = sorted((r["batch_size"], r["median_ms"]) for r in result["results"] if r["contender"] == c)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=c)
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("BatchSize (records per invocation)"); ax.set_ylabel("median wall time per invocation (ms)")
    ax.set_title("cdc-relay vs peers, same input, same broker (lower is better)")
    ax.grid(True, which="both", alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(os.path.join(RESULTS, "latency.png"), dpi=110)


if __name__ == "__main__":
    main()

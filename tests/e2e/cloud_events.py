"""The CloudEvents envelope parsed by the official CloudEvents SDK (PyPI `cloudevents`,
its Kafka protocol binding), not by our reading of the spec: every fixture in events/
goes through `cdc-relay invoke` to the real broker under tests/routes/cloudevents.toml,
in structured mode and again in binary mode; every message read back (tombstones
aside) is parsed by the SDK, and its attributes must be the ones documented: `id` the
relay-event-id header, `source` a URI reference naming the cluster (the fixture's ARN or
bootstrap servers), schema and table, `type` dms.{schema}.{table}.{op}, `time` the
commit time, `subject` the entity key on routes with key columns, `partitionkey` the
Kafka key, `datacontenttype` application/json, and its data
exactly the relay envelope the same routes plan for that record (check-routes, relay
envelope).

Runs inside e2e.py (`cloudevents_round_trip(broker)`), or alone: python3
tests/e2e/cloud_events.py (starts and stops the broker; needs `cargo build --release`)."""
import datetime
import json
import os
import re
from urllib.parse import quote

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, from_structured
from cloudevents.core.formats.json import JSONFormat

from kit import ROOT, check, fixtures, read_raw, relay_to, run, run_alone

ROUTES = os.path.join(ROOT, "tests", "routes", "cloudevents.toml")
# RFC 3986: a URI reference holds unreserved and reserved characters and %-escapes only.
URI_REFERENCE = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$")


def variant(mode):
    """The routes file in `mode`, and its relay-envelope twin (what the data must be)."""
    text = open(ROUTES).read()
    out = {}
    for name, envelope in [(mode, f'envelope = "cloudevents"\ncontent_mode = "{mode}"'), ("relay", "")]:
        path = os.path.join(ROOT, "target", f"e2e-cloudevents-{name}.toml")
        with open(path, "w") as f:
            # Each variant writes topics of its own, so the modes never read each other.
            f.write(text.replace('envelope = "cloudevents"', envelope).replace('"ce.', f'"ce-{mode}.'))
        out[name] = path
    return out[mode], out["relay"]


def cluster_of(event):
    """What a fixture names its cluster by (src/source.rs): ARN, else bootstrap servers."""
    doc = json.load(open(event))
    return doc.get("eventSourceArn") or doc.get("bootstrapServers") or ""


def expected_source(cluster, table):
    schema, _, name = table.partition(".")
    origin = (quote(cluster, safe=":/") if cluster.startswith("arn:")
              else "/" + quote(cluster, safe="") if cluster else "/cdc-relay")
    return f"{origin}/{quote(schema, safe='')}/{quote(name, safe='')}"


def round_trip(broker, mode):
    routes, relay_routes = variant(mode)
    events = fixtures()
    # Binary mode through the Lambda runtime (when e2e.py runs it), structured through invoke.
    planned = relay_to(broker, routes, events, via_lambda=mode == "binary")
    # The data each event must carry: the relay envelope of the same record and topic
    # (fixtures reuse source positions, so an event id may have several candidates).
    data = {}
    clusters = {}
    for event in events:
        dry = run([os.path.join(ROOT, "target", "release", "cdc-relay"), "check-routes", relay_routes, event])
        for line in dry.stdout.splitlines():
            for m in json.loads(line)["outcome"].get("produces", []):
                if m["value"] is not None:
                    eid = m["headers"]["relay-event-id"]
                    data.setdefault((m["topic"], eid), []).append(m["value"])
                    clusters.setdefault(eid, set()).add(cluster_of(event))
    messages = read_raw(broker, sorted({m["topic"] for m in planned}))
    check(len(messages) == len(planned), f"cloudevents {mode}: {len(messages)} read back, {len(planned)} planned")
    parsed = tombstones = 0
    for topic, _, _, key, headers, value in messages:
        if value is None:
            tombstones += 1
            continue
        where = f"cloudevents {mode}: {topic} {key!r}"
        message = KafkaMessage(headers=headers, key=key, value=value)
        try:
            event = (from_structured if mode == "structured" else from_binary)(message, JSONFormat())
        except Exception as e:  # the SDK refusing the message is the failure reported
            check(False, f"{where}: the SDK refused it: {e!r}")
            continue
        parsed += 1
        eid = headers["relay-event-id"].decode()
        table, op = headers["relay-table"].decode(), headers["relay-op"].decode()
        candidates = data.get((topic, eid), [])
        expected = event.get_data() if event.get_data() in candidates else None
        check(expected is not None, f"{where}: data {event.get_data()} is none of {candidates}")
        check(event.get_id() == eid, f"{where}: id {event.get_id()}")
        check(event.get_specversion() == "1.0", f"{where}: specversion {event.get_specversion()}")
        check(event.get_type() == f"dms.{table}.{op}", f"{where}: type {event.get_type()}")
        check(event.get_source() in {expected_source(c, table) for c in clusters.get(eid, set())},
              f"{where}: source {event.get_source()}")
        # The entity key where the route names key columns; DMS's key names a table.
        keyed = topic.split(".", 1)[1] in ("orders", "orders.audit", "users")
        check(event.get_subject() == (key.decode() if keyed else None), f"{where}: subject {event.get_subject()}")
        check(URI_REFERENCE.match(event.get_source()) is not None, f"{where}: source {event.get_source()}")
        check(event.get_extension("partitionkey") == key.decode(), f"{where}: partitionkey")
        check(event.get_datacontenttype() == "application/json", f"{where}: {event.get_datacontenttype()}")
        if expected:
            source = expected["source"]
            when = source.get("commit_timestamp") or source.get("timestamp")
            check(event.get_time() == datetime.datetime.fromisoformat(when),
                  f"{where}: time {event.get_time()} against {when}")
        if mode == "structured":
            # The attribute inside the value, not only the key the SDK maps to it.
            check(json.loads(value).get("partitionkey") == key.decode(), f"{where}: partitionkey in the value")
            check(headers.get("content-type", b"").startswith(b"application/cloudevents+json"),
                  f"{where}: content-type {headers.get('content-type')}")
    check(parsed > 20 and tombstones > 0, f"cloudevents {mode}: only {parsed} events, {tombstones} tombstones")
    print(f"e2e: cloudevents {mode}: {parsed} events from {len(events)} fixtures parsed by the CloudEvents SDK, "
          f"{tombstones} tombstones", flush=True)


def cloudevents_round_trip(broker):
    for mode in ["structured", "binary"]:
        round_trip(broker, mode)


if __name__ == "__main__":
    run_alone("cloudevents", cloudevents_round_trip)

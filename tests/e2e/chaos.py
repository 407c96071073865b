#!/usr/bin/env python3
"""The chaos harness for `cdc-relay serve` against a real Kafka-protocol broker.

Two deployments run side by side, at least once (source topic dms.serve) and exactly once
(dms.eos, a stable RELAY_TRANSACTIONAL_ID per member that its restart reuses), each two
`serve` processes in one group, fed generated DMS records in rounds. Each deployment
goes through, in order:

1. a rebalance: the second member joins while the first works through a backlog;
2. SIGKILL while relaying, then a restart (exactly once: three times, every member at
   once when a transaction with records written is seen open);
3. SIGTERM while relaying (exactly once: mid-transaction): the process must end cleanly within
   RELAY_SHUTDOWN_TIMEOUT_MS + 4 s; then a restart. The round carries a table whose
   name Kafka refuses (`HR.ORDER#LINES`: relayed to `cdc.HR.ORDER_LINES`) and a record
   over RELAY_MAX_RECORD_BYTES (dead-lettered with its size);
4. the broker stopped (SIGSTOP) for 32 s and resumed; one member gets SIGTERM while the
   broker does not answer and must still end within the bound; `/healthz` is sampled the
   whole time;
5. a last round once the broker is back.

At the end every output topic is read as committed (a read_committed reader that applies
the transaction markers itself, committed.py) and checked: nothing lost, nothing stuck
(the group's committed offsets reach the end of every source partition, no transaction
left open), under exactly once nothing twice, per-key order, every exit within the
bound, and `/healthz` failing while the broker is stopped and only then.

What a real broker here cannot do (reject a record, revoke credentials) the mock-cluster
harness in `cargo test` injects (tests/chaos.rs); a commit whose outcome is unknown has a
real-broker scenario of its own (unknown_commit.py: a proxy in front of a second nisshi).

Run alone: `python3 tests/e2e/chaos.py` (after `cargo build --release`; starts the broker).
"""
import base64
import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict

from confluent_kafka.admin import AdminClient, NewTopic

import committed
from kit import (BINARY, LOCAL_HASH_KEY, ROOT, check, check_per_key_order, committed_offsets, generated_rounds,
                 http_get, metric, planned_ids, produce_round, run_alone)

SHUTDOWN_TIMEOUT_MS = 3000
# src/modes/serve.rs SHUTDOWN_EPILOGUE: leaving the group and the last flush, after the
# batch in flight is finished or abandoned.
SHUTDOWN_EPILOGUE_S = 4.0
# /healthz fails after this long without progress: longer than a rebalance that waits
# out a killed member's session (6 s), and under exactly once than a batch and its
# commit can take (RELAY_BATCH_TIMEOUT_MS 3 s + the commit's 20 s budget + 2 s).
LIVENESS_TIMEOUT_MS = {False: 12000, True: 26000}
MAX_RECORD_BYTES = 65536
PAUSE_S = LIVENESS_TIMEOUT_MS[True] / 1000 + 6
ILLEGAL_TABLE = ("HR", "ORDER#LINES")
ILLEGAL_TOPIC = "cdc.HR.ORDER_LINES"
DEAD_LETTERS = "cdc.dead-letters"


def dms_record(schema, table, data, transaction_id):
    value = {"data": data, "metadata": {
        "timestamp": "2026-12-03T10:00:00.000000Z", "record-type": "data", "operation": "insert",
        "partition-key-type": "schema-table", "schema-name": schema, "table-name": table,
        "transaction-id": transaction_id}}
    key = f"{schema}.{table}.{data['ID']}".encode()
    return {"key": base64.b64encode(key).decode(), "value": base64.b64encode(json.dumps(value).encode()).decode()}


class Deployment:
    """Two `serve` processes (a, b) in one group over one source topic."""

    def __init__(self, broker, label, topic, exactly_once, ports, seed):
        self.broker, self.label, self.topic, self.exactly_once = broker, label, topic, exactly_once
        self.ports = ports
        self.group = f"chaos-{topic}"
        self.env = dict(os.environ, RELAY_BROKERS=broker, RELAY_SOURCE_TOPICS=topic, RELAY_GROUP_ID=self.group,
                        RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RELAY_HASH_KEY=LOCAL_HASH_KEY,
                        RUST_LOG="info", RELAY_EXACTLY_ONCE=str(exactly_once).lower(), RELAY_BATCH_SIZE="10",
                        RELAY_BATCH_TIMEOUT_MS="3000", RELAY_LIVENESS_TIMEOUT_MS=str(LIVENESS_TIMEOUT_MS[exactly_once]),
                        RELAY_SHUTDOWN_TIMEOUT_MS=str(SHUTDOWN_TIMEOUT_MS),
                        RELAY_MAX_RECORD_BYTES=str(MAX_RECORD_BYTES), RELAY_RETRY_BACKOFF_MAX_MS="2000",
                        RELAY_CONSUMER_SESSION_TIMEOUT_MS="6000", RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS="1000",
                        RELAY_CONSUMER_STATISTICS_INTERVAL_MS="500")
        self.procs = {}
        self.rounds = generated_rounds(topic, 1200, seed)
        self.planned = set()
        self.ends = defaultdict(lambda: -1)  # last offset produced per source partition
        self.oversized = []  # (partition, offset, size) of records over the limit
        self.figures = {}
        self.exits = []  # (what, member, exit code, seconds)
        self.busiest = None

    def start(self, name):
        log = open(os.path.join(ROOT, "target", f"e2e-chaos-{self.topic}-{name}.log"), "a")
        env = dict(self.env, RELAY_HTTP_ADDR=f"127.0.0.1:{self.ports[name]}")
        if self.exactly_once:
            # Stable per member: the restart's init_transactions aborts what the killed one
            # left open.
            env["RELAY_TRANSACTIONAL_ID"] = f"{self.group}-{name}"
        self.procs[name] = subprocess.Popen([BINARY, "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env=env)

    def produce(self, records, plan=True):
        event = produce_round(self.broker, self.topic, records)
        for records in event["records"].values():
            for r in records:
                self.ends[r["partition"]] = max(self.ends[r["partition"]], r["offset"])
        if plan:
            self.planned |= planned_ids(event)
            self.busiest = max({t for t, _ in self.planned},
                               key=lambda t: sum(topic == t for topic, _ in self.planned))
        return event

    def alive(self):
        """Raises when a member ended on its own (a refused setting, a crash)."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"chaos {self.label}: {name} exited with code {proc.returncode}; see "
                                   f"target/e2e-chaos-{self.topic}-{name}.log")

    def relayed(self, name):
        return metric(self.ports[name], "cdc_relay_records_total")

    def assigned(self, name):
        return metric(self.ports[name], "cdc_relay_assigned_partitions")

    def wait_relayed(self, name, more, timeout=60):
        target = self.relayed(name) + more
        deadline = time.time() + timeout
        while self.relayed(name) < target and time.time() < deadline:
            self.alive()
            time.sleep(0.02)

    def wait_shared(self, timeout=60):
        """Until both members own partitions; their shares."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            shares = (self.assigned("a"), self.assigned("b"))
            if min(shares) > 0 and sum(shares) == 3:
                break
            self.alive()
            time.sleep(0.2)
        return shares

    def counts(self):
        """Records relayed so far, per member."""
        return {n: self.relayed(n) for n in self.procs}

    def busy_member(self, before, more=20, timeout=30):
        """A member that owns partitions and has relayed `more` records since `before`
        (`counts()`), and whether one did before `timeout`."""
        deadline = time.time() + timeout
        while True:
            owners = [n for n in self.procs if self.assigned(n) > 0]
            busy = [n for n in owners if self.relayed(n) >= before[n] + more]
            if busy or time.time() > deadline:
                return (busy or owners or ["a"])[0], bool(busy)
            self.alive()
            time.sleep(0.02)

    def interrupt(self, sig, before, every=False):
        """`sig` to a member while it relays (exactly once: once a transaction with records
        written is seen open), or to `every` member at that moment (then whichever had the
        transaction open is hit); waits for the process to end, restarts it. Returns
        (members, transaction seen open, exit code, seconds to exit) of the first."""
        name, busy = self.busy_member(before)
        check(busy, f"chaos {self.label}: no member was relaying when it got {sig.name}")
        seen = self.exactly_once and committed.wait_for_open_transaction(
            self.broker, self.busiest, 3, time.time() + 10)
        names = sorted(self.procs) if every else [name]
        sent = time.time()
        for n in names:
            self.procs[n].send_signal(sig)
        codes = []
        for n in names:
            try:
                codes.append(self.procs[n].wait(30))
            except subprocess.TimeoutExpired:
                self.procs[n].kill()
                codes.append(self.procs[n].wait(10))
        took = time.time() - sent
        for n in names:
            self.start(n)
        return "+".join(names), seen, codes[0], took

    def settled(self, timeout=90):
        """Both members idle (nothing relayed for 2 s) and no transaction open."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            now = [self.relayed(n) for n in self.procs]
            open_ = self.exactly_once and self.busiest and committed.wait_for_open_transaction(
                self.broker, self.busiest, 3, time.time() + 0.1)
            if now == last and not open_:
                return True
            last = now
            time.sleep(2)
        return False

    def read_back(self):
        """How often each planned message was read as committed, the planned messages read,
        the dead letters of this source topic, and the reader's counts."""
        return committed.read_planned(self.broker, self.planned, self.topic, DEAD_LETTERS)

    def committed_offsets(self):
        return committed_offsets(self.broker, self.group, self.topic)


def sample_health(deployments, samples, stop):
    """`/healthz` of every member every 0.5 s: (time, label, member, status)."""
    while not stop.is_set():
        for d in deployments:
            for name, port in d.ports.items():
                status, _ = http_get(port, "/healthz")
                samples.append((time.time(), d.label, name, status))
        stop.wait(0.5)


def broker_pid():
    return int(open(os.path.join(ROOT, "target", "broker", "broker.pid")).read().strip())


def serve_chaos(broker):
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(ILLEGAL_TOPIC, 3, 1)]).values():
        try:
            future.result(30)
        except Exception as e:  # created by an earlier run against the same broker
            check("exist" in str(e).lower(), f"chaos: cannot create {ILLEGAL_TOPIC}: {e}")
    deployments = [Deployment(broker, "at least once", "dms.serve", False, {"a": 9391, "b": 9392}, 12),
                   Deployment(broker, "exactly once", "dms.eos", True, {"a": 9393, "b": 9394}, 13)]
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_health, args=(deployments, samples, stop), daemon=True)
    paused = None
    started = time.time()
    phases = []

    def mark(phase):
        phases.append(f"{phase} {time.time() - started:.0f} s")
    try:
        # 1. A rebalance: b joins while a works through the first round.
        for d in deployments:
            d.produce(d.rounds[0])
            d.start("a")
        for d in deployments:
            d.wait_relayed("a", 20)
            d.start("b")
        sampler.start()
        for d in deployments:
            d.figures["shares"] = d.wait_shared()
            check(min(d.figures["shares"]) > 0, f"chaos {d.label}: no rebalance to the second member")
        mark("rebalance")
        # 2. SIGKILL while relaying, and a restart. Exactly once, three times, both members
        # at once when a transaction is seen open: one of them had it open.
        for d in deployments:
            parts = 3 if d.exactly_once else 1
            d.figures["sigkill"] = []
            for i in range(parts):
                before = d.counts()
                d.produce(d.rounds[1][i::parts])
                d.figures["sigkill"].append(d.interrupt(signal.SIGKILL, before, every=d.exactly_once))
        mark("SIGKILL")
        # 3. SIGTERM while relaying, with a table name Kafka refuses and a record over the size
        # limit in the round.
        for d in deployments:
            half = len(d.rounds[2]) // 2
            illegal = dms_record(*ILLEGAL_TABLE, {"ID": 7, "QTY": "2"}, 99)
            big = dms_record("public", "orders", {"ID": 1, "note": "x" * (MAX_RECORD_BYTES + 1000)}, 100)
            oversized = d.produce([dict(big, partition=1)], plan=False)
            for r in oversized["records"].values():
                d.oversized += [(x["partition"], x["offset"], len(base64.b64decode(x["value"]))) for x in r]
            before = d.counts()
            d.produce([dict(illegal, partition=0)] + d.rounds[2][:half])
            d.figures["sigterm"] = d.interrupt(signal.SIGTERM, before)
            name, _, code, took = d.figures["sigterm"]
            d.exits.append(("SIGTERM while relaying", name, code, took))
        mark("SIGTERM")
        # 4. The broker stopped while every member is idle, and resumed; b gets SIGTERM
        # while it does not answer.
        for d in deployments:
            check(d.settled(), f"chaos {d.label}: the members did not settle before the broker stopped")
        mark("settled")
        pid = broker_pid()
        os.kill(pid, signal.SIGSTOP)
        paused = (time.time(), None)
        time.sleep(8)
        terms = {}
        for d in deployments:
            terms[d.label] = time.time()
            d.procs["b"].send_signal(signal.SIGTERM)
        ends = {}
        while time.time() < paused[0] + PAUSE_S:
            for d in deployments:
                if d.label not in ends and d.procs["b"].poll() is not None:
                    ends[d.label] = time.time()
            time.sleep(0.1)
        os.kill(pid, signal.SIGCONT)
        paused = (paused[0], time.time())
        for d in deployments:
            proc = d.procs["b"]
            try:
                code = proc.wait(max(0.0, terms[d.label] + 30 - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait(10)
            took = ends.get(d.label, time.time()) - terms[d.label]
            d.exits.append(("SIGTERM, broker stopped", "b", code, took))
            d.start("b")
        # Live again: every member answers 200.
        deadline = time.time() + 60
        while time.time() < deadline:
            statuses = [http_get(port, "/healthz")[0] for d in deployments for port in d.ports.values()]
            if all(s == 200 for s in statuses):
                break
            time.sleep(0.2)
        check(all(s == 200 for s in statuses), f"chaos: /healthz not 200 for every member 60 s after the broker "
                                               f"resumed: {statuses}")
        recovered = time.time() - paused[1]
        mark("broker stopped and resumed")
        # 5. A last round once the broker is back.
        for d in deployments:
            d.produce(d.rounds[2][len(d.rounds[2]) // 2:])
        results = {}
        try:
            for d in deployments:
                deadline = time.time() + 240
                while True:
                    counts, ours, letters, stats = d.read_back()
                    if (set(counts) == d.planned and len(letters) >= len(d.oversized)) or time.time() > deadline:
                        break
                    time.sleep(1)
                check(d.settled(), f"chaos {d.label}: the members did not settle")
                results[d.label] = d.read_back()
        except (OSError, RuntimeError) as e:
            check(False, f"chaos: reading back as committed failed: {e}")
            return
        mark("read back")
        print(f"e2e: chaos: phases ended at {', '.join(phases)}", flush=True)
        stop.set()
        sampler.join()
        for d in deployments:
            counts, ours, letters, stats = results[d.label]
            offsets = d.committed_offsets()
            stuck = {p: (offsets.get(p), end + 1) for p, end in d.ends.items() if offsets.get(p) != end + 1}
            missing = len(d.planned - set(counts))
            twice = sum(n > 1 for n in counts.values())
            label = f"chaos {d.label}"
            check(missing == 0, f"{label}: {missing} of {len(d.planned)} planned messages missing")
            check(not stuck, f"{label}: committed offsets behind the end (committed, end): {stuck}")
            check(stats.get("open", 0) == 0, f"{label}: {stats.get('open')} records in transactions never ended")
            if d.exactly_once:
                check(twice == 0, f"{label}: {twice} messages read twice as committed")
                check(any(seen for _, seen, _, _ in d.figures["sigkill"]),
                      f"{label}: no SIGKILL found a transaction open")
                check(stats.get("aborted", 0) > 0, f"{label}: nothing aborted (the killed member's open transaction)")
                check_per_key_order(ours, label)
            else:
                last = {}
                for m in sorted(ours, key=lambda m: (m["topic"], m["partition"], m["offset"])):
                    last[(m["topic"], m["headers"].get("relay-event-id"))] = m
                check_per_key_order(list(last.values()), label)
            check(any(t == ILLEGAL_TOPIC for t, _ in counts), f"{label}: nothing relayed to {ILLEGAL_TOPIC}")
            # At its place, with the error that names the limit (its value as the routes'
            # dead_letter_value says: the example routes redact).
            dead = {(int(m["headers"].get("relay-source-partition", -1)), int(m["headers"].get("relay-source-offset", -1))):
                    m["headers"].get("relay-error", "") for m in letters}
            for partition, offset, size in d.oversized:
                error = dead.get((partition, offset), "")
                check(f"larger than the limit of {MAX_RECORD_BYTES} (RELAY_MAX_RECORD_BYTES)" in error,
                      f"{label}: the oversized record {partition}/{offset} ({size} bytes) not dead-lettered with "
                      f"the error naming the limit: {dead}")
            # At least once, a partition read again after the broker's stop may dead-letter
            # the record again; exactly once, never.
            check(len(letters) == len(d.oversized) if d.exactly_once else len(letters) >= len(d.oversized),
                  f"{label}: {len(letters)} dead letters for {len(d.oversized)} oversized records")
            bound = SHUTDOWN_TIMEOUT_MS / 1000 + SHUTDOWN_EPILOGUE_S
            for what, name, code, took in d.exits:
                check(took <= bound + 0.5, f"{label}: {what}: {name} took {took:.1f} s to exit (bound {bound:.0f} s)")
            check(d.exits[0][2] == 0, f"{label}: SIGTERM while relaying: exit code {d.exits[0][2]}")
            # /healthz: 503 for every running member while the broker was stopped (after
            # the bound), never outside that window.
            window = (paused[0], paused[1] + recovered + 1.0)
            ours_health = [(t, n, s) for t, lab, n, s in samples if lab == d.label]
            outside = [(round(t - started, 1), n, s) for t, n, s in ours_health
                       if s == 503 and not window[0] <= t <= window[1]]
            during_a = [s for t, n, s in ours_health if n == "a" and paused[0] <= t <= paused[1]]
            check(503 in during_a, f"{label}: /healthz of a never failed while the broker was stopped: {during_a}")
            check(not outside, f"{label}: /healthz failed outside the broker's stop: {outside[:5]}")
            first_503 = min((t for t, n, s in ours_health if n == "a" and s == 503 and t >= paused[0]),
                            default=paused[0]) - paused[0]
            d.figures.update(missing=missing, twice=twice, planned=len(d.planned), letters=len(letters),
                             aborted=stats.get("aborted", 0), first_503=first_503, recovered=recovered,
                             exits=d.exits)
            kills = ", ".join(f"{n}{' (transaction open)' if seen else ''}" for n, seen, _, _ in d.figures["sigkill"])
            print(f"e2e: chaos {d.label}: {len(d.planned)} planned messages; rebalance {d.figures['shares']}; "
                  f"SIGKILL {kills}; "
                  + "; ".join(f"{what}: {name} exit {code} in {took:.1f} s" for what, name, code, took in d.exits)
                  + f"; /healthz 503 {first_503:.1f} s after the broker stopped, 200 {recovered:.1f} s after it "
                  f"resumed; read as committed: {missing} missing, {twice} twice, {stats.get('open', 0)} open"
                  + (f", {stats.get('aborted', 0)} records of aborted transactions dropped" if d.exactly_once else "")
                  + f"; {len(letters)} dead-lettered (oversized); "
                  f"offsets at the end: {'yes' if not stuck else stuck}; {time.time() - started:.0f} s",
                  flush=True)
    finally:
        stop.set()
        if paused and paused[1] is None:
            os.kill(broker_pid(), signal.SIGCONT)
        for d in deployments:
            for name, proc in d.procs.items():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        check(proc.wait(30) == 0, f"chaos {d.label}: SIGTERM did not end {name} cleanly")
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        check(False, f"chaos {d.label}: SIGTERM did not end {name} in 30 s")


if __name__ == "__main__":
    # Stopped from outside: the `finally` blocks still resume the broker and end the members.
    run_alone("chaos", serve_chaos)

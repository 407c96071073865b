#!/usr/bin/env python3
"""`serve` through a broker outage, on a real broker.

Two `serve` members, one at least once and one exactly once (each its own source topic
and group), read and write through a proxy in front of a nisshi of their own
(proxy.py). While both work through a backlog, the proxy closes every connection and
refuses new ones for OUTAGE_S seconds, as a broker that went away does (the chaos
harness stops nisshi with SIGSTOP instead, which leaves the connections open and
silent). Then it accepts again, and a last round of records follows.

Checked: each member relays again after the outage (seconds from the proxy's return to
the next record done are reported), `/healthz` answers 200 again, and at the end every
output topic read as committed (committed.py) holds every planned message, exactly once
nothing twice and nothing open, and each group's offsets are at the end of its source
partitions.

librdkafka's mock cluster (`broker_down`/`broker_up` in `cargo test`) once left one
member's producer delivering nothing after its brokers came back (docs/reliability.md):
this is the same outage against a real broker.

Run alone: `python3 tests/e2e/outage.py` (after `cargo build --release`; starts the
broker and the proxy itself).
"""
import time
from collections import defaultdict

from kit import check, http_get
from proxy import Member, Proxy, broker, run_alone

OUTAGE_S = 10


def outage():
    """The scenario (module docstring). Starts and stops its own broker and proxy."""
    started = time.time()
    proxy = Proxy()
    members = []
    try:
        topics = ["dms.outage", "dms.outage-eos"]
        broker("stop")  # one left by an interrupted run would keep its groups and topics
        up = broker("start", *topics)
        check(up.returncode == 0, f"outage: cannot start the broker: {up.stderr[-500:]}")
        if up.returncode != 0:
            return
        # At least once works through a backlog faster: a longer one, so that both are
        # still at it when the connections go.
        members = [Member("at least once", topics[0], False, 9387, 41, 1500),
                   Member("exactly once", topics[1], True, 9388, 42, 600)]
        for m in members:
            m.produce(m.rounds[0])
        for m in members:
            check(m.idle(90), f"outage {m.label}: the first round not relayed")
        # A backlog each is working through when the connections go.
        before = {}
        for m in members:
            before[m.label] = m.relayed()
            m.produce(m.rounds[1])
        deadline = time.time() + 30
        while any(m.relayed() < before[m.label] + 20 for m in members) and time.time() < deadline:
            for m in members:
                m.alive()
            time.sleep(0.02)
        proxy.down()
        went = time.time()
        # Records of the backlog done when the connections went (attempts: at least once
        # may count a record twice): fewer than the backlog, or the outage hit nothing.
        at_down = {m.label: m.relayed() - before[m.label] for m in members}
        time.sleep(OUTAGE_S)
        during = {m.label: m.relayed() for m in members}
        proxy.up()
        back = time.time()
        resumed, healthy, unanswered, last = {}, {}, defaultdict(int), {}
        deadline = back + 90
        while len(resumed) < len(members) and time.time() < deadline:
            for m in members:
                m.alive()
                status, _ = http_get(m.port, "/metrics")
                if status != 200:
                    unanswered[m.label] += 1
                    continue
                last[m.label] = m.relayed()
                if m.label not in resumed and last[m.label] > during[m.label]:
                    resumed[m.label] = time.time() - back
            time.sleep(0.05)
        for m in members:
            check(m.label in resumed, f"outage {m.label}: nothing relayed within 90 s of the broker's return "
                                      f"({during[m.label]} records when it came back, {last.get(m.label)} at the "
                                      f"end; /metrics unanswered {unanswered[m.label]} times); see {m.log}")
            check(at_down[m.label] < len(m.rounds[1]),
                  f"outage {m.label}: the backlog was done before the connections went")
        for m in members:
            m.produce(m.rounds[2])
        for m in members:
            check(m.idle(120), f"outage {m.label}: still relaying 120 s after the last round")
            status, _ = http_get(m.port, "/healthz")
            healthy[m.label] = status
            check(status == 200, f"outage {m.label}: /healthz {status} after the outage")
        for m in members:
            code = m.stop()
            check(code == 0, f"outage {m.label}: SIGTERM ended serve with code {code}")
        for m in members:
            missing, twice, open_, _aborted, letters, stuck = m.check_end(f"outage {m.label}")
            print(f"e2e: outage {m.label}: every connection closed and refused for {back - went:.0f} s after "
                  f"{at_down[m.label]} of {len(m.rounds[1])} backlog records; "
                  f"relaying again {resumed.get(m.label, float('nan')):.1f} s after the broker was back, "
                  f"/healthz {healthy.get(m.label)}; {len(m.planned)} planned messages read as committed: "
                  f"{missing} missing, {twice} twice, {open_} open, {letters} dead-lettered; offsets at the end: "
                  f"{'yes' if not stuck else stuck}; {time.time() - started:.0f} s", flush=True)
    finally:
        for m in members:
            m.kill()
        broker("stop")
        proxy.close()


if __name__ == "__main__":
    run_alone("outage", outage)

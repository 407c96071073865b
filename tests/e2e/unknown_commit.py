#!/usr/bin/env python3
"""Exactly once when a commit's outcome is unknown, on a real broker.

A `serve` member (exactly once) reads and writes through a proxy in front of a nisshi of
its own (proxy.py), which passes every byte on, except once per fault:

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
import time

from kit import check
from proxy import Member, Proxy, broker, run_alone

TOPIC = "dms.unknown"
UNKNOWN = "the transaction's outcome is unknown"
SETTLED = "the unknown transaction is settled"


def log_count(path, text):
    return open(path, errors="replace").read().count(text)


def unknown_commit():
    """The scenario (module docstring). Starts and stops its own broker and proxy."""
    started = time.time()
    proxy = Proxy()
    member = None
    try:
        broker("stop")  # one left by an interrupted run would keep its groups and topics
        up = broker("start", TOPIC)
        check(up.returncode == 0, f"unknown commit: cannot start the broker: {up.stderr[-500:]}")
        if up.returncode != 0:
            return
        member = Member("unknown commit", TOPIC, True, 9389, 31, 240)

        def wait(condition, timeout, what):
            deadline = time.time() + timeout
            while not condition():
                member.alive()
                if time.time() > deadline:
                    check(False, f"unknown commit: {what} within {timeout} s; see {member.log}")
                    return False
                time.sleep(0.05)
            return True

        figures = {}
        for fault, records in zip(("answer", "request"), member.rounds[:2]):
            before = member.relayed()
            member.produce(records)
            wait(lambda: member.relayed() >= before + 20, 60, "relayed records")
            proxy.arm(fault)
            armed = time.time()
            if not wait(lambda: len(proxy.swallowed) > len(figures), 60, f"the {fault} of an EndTxn swallowed"):
                return
            settles = len(figures) + 1
            wait(lambda: log_count(member.log, SETTLED) >= settles, 90, f"the transaction settled after the {fault}")
            figures[fault] = time.time() - armed
        member.produce(member.rounds[2])
        check(member.idle(120), "unknown commit: still relaying 120 s after the last round")
        code = member.stop()
        check(code == 0, f"unknown commit: SIGTERM ended serve with code {code}")
        missing, twice, open_, aborted, _letters, stuck = member.check_end("unknown commit")
        unknown, settled = log_count(member.log, UNKNOWN), log_count(member.log, SETTLED)
        check([what for what, _ in proxy.swallowed] == ["answer", "request"],
              f"unknown commit: swallowed {proxy.swallowed}")
        check(unknown == 2 and settled == 2,
              f"unknown commit: serve logged {unknown} unknown outcomes and {settled} settled, not 2 and 2")
        print(f"e2e: unknown commit (exactly once): the EndTxn answer swallowed, settled "
              f"{figures.get('answer', 0):.1f} s after; the EndTxn request swallowed, settled "
              f"{figures.get('request', 0):.1f} s after; {len(member.planned)} planned messages read as committed: "
              f"{missing} missing, {twice} twice, {open_} open, {aborted} records of aborted transactions dropped; "
              f"offsets at the end: {'yes' if not stuck else stuck}; {time.time() - started:.0f} s", flush=True)
    finally:
        if member is not None:
            member.kill()
        broker("stop")
        proxy.close()


if __name__ == "__main__":
    run_alone("unknown commit", unknown_commit)

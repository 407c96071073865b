#!/usr/bin/env python3
"""Feeds DMS-shaped records to a source topic, as AWS DMS would: the records of
`cdc-relay gen-event` (inserts, updates and deletes over a few tables, deterministic per
seed), produced with their keys, all at once or at a steady rate.

    scripts/feed.py BROKER TOPIC [--records N] [--tables T] [--seed S] [--rate R] [--seconds D] [--warm-up W]

With --rate, records are produced at R records/s (for D seconds when given, cycling
through the generated records) with the current time as their timestamp; the last line
printed is a JSON summary. With --warm-up, the first W records are produced and
acknowledged first, `{"warm_up": W}` is printed, and the feed starts when a line is read
from standard input: the producer then has its connections and its idempotent producer id
(which librdkafka asks for after start-up: every record stamped meanwhile would carry that
wait as lag). Needs confluent-kafka and a release build (cargo build --release).
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import time

from confluent_kafka import Producer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generated(records, tables, seed, partitions):
    """(key, value, partition) of each generated record, in the generator's order."""
    out = subprocess.run([os.path.join(ROOT, "target", "release", "cdc-relay"), "gen-event",
                          "--records", str(records), "--tables", str(tables), "--seed", str(seed),
                          "--partitions", str(partitions)],
                         check=True, capture_output=True).stdout
    event = json.loads(out)
    flat = sorted((r for rs in event["records"].values() for r in rs), key=lambda r: (r["offset"], r["partition"]))
    return [(base64.b64decode(r["key"]), base64.b64decode(r["value"]), r["partition"]) for r in flat]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("broker")
    parser.add_argument("topic")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=3, help="the topic's partitions")
    parser.add_argument("--rate", type=float, help="records per second (default: as fast as possible)")
    parser.add_argument("--seconds", type=float, help="with --rate: how long to feed")
    parser.add_argument("--warm-up", type=int, default=0,
                        help="records produced and acknowledged before the feed, which then waits for a line on stdin")
    args = parser.parse_args()
    records = generated(args.records, args.tables, args.seed, args.partitions)
    producer = Producer({"bootstrap.servers": args.broker, "enable.idempotence": True, "linger.ms": 1})
    failed = []

    def delivered(error, _message):
        if error is not None:
            failed.append(str(error))

    def produce(record):
        key, value, partition = record
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, partition=partition % args.partitions,
                                 timestamp=int(time.time() * 1000), on_delivery=delivered)
                return
            except BufferError:
                producer.poll(0.05)

    warm = records[:args.warm_up]
    for record in warm:
        produce(record)
    if warm:
        left = producer.flush(60)
        print(json.dumps({"warm_up": len(warm), "failed": len(failed) + left}), flush=True)
        if not sys.stdin.readline():
            sys.exit("feed: standard input closed before the feed began")
        records = records[len(warm):] + warm
    started = time.time()
    sent = 0
    total = len(records) - len(warm) if not (args.rate and args.seconds) else int(args.rate * args.seconds)
    while sent < total:
        if args.rate:
            # Every record due by now, then a short sleep: a steady rate without a
            # sleep per record.
            due = int((time.time() - started) * args.rate) + 1
            if sent >= due:
                time.sleep(0.002)
                continue
        produce(records[sent % len(records)])
        producer.poll(0)
        sent += 1
    producer.flush(60)
    elapsed = time.time() - started
    print(json.dumps({"topic": args.topic, "records": sent, "failed": len(failed),
                      "seconds": round(elapsed, 3), "rate": round(sent / elapsed, 1) if elapsed else None}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

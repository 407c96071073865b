"""What a `read_committed` consumer must see of a topic, decided from the log itself.

A Kafka broker answers a read_committed Fetch with the last stable offset (nothing of a
transaction still open is returned) and a list of the aborted transactions in the range,
which the client uses to drop their records. The broker the end-to-end tier runs (nisshi
0.7) writes the commit and abort markers and holds the last stable offset back while a
transaction is open, but always sends that list empty, so a stock client would hand out
the records of aborted transactions as if they had committed.

This reader therefore applies the markers itself, as KIP-98 defines them: it fetches each
partition with isolation level read_committed, keeps every transactional batch of a
producer until that producer's next marker in the partition, then keeps the records on a
COMMIT marker and drops them on an ABORT marker. Records never followed by a marker are
counted as open, not read. Record batches are parsed by kafka-python; the Fetch request
(version 4) is written here because the test needs the control batches that every client
hides.
"""
import socket
import struct
import time
from collections import defaultdict

from kafka.record import MemoryRecords

READ_COMMITTED = 1


def _string(text):
    data = text.encode()
    return struct.pack(">h", len(data)) + data


class _Connection:
    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.correlation = 0

    def fetch(self, topic, partition, offset, max_bytes=1 << 20, max_wait_ms=500):
        """One Fetch v4 for one partition: (error code, high watermark, last stable
        offset, aborted transactions as sent, record bytes)."""
        self.correlation += 1
        header = struct.pack(">hhi", 1, 4, self.correlation) + _string("e2e-committed-reader")
        body = struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, READ_COMMITTED)
        body += struct.pack(">i", 1) + _string(topic) + struct.pack(">i", 1)
        body += struct.pack(">iqi", partition, offset, max_bytes)
        message = header + body
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        size = struct.unpack(">i", self._read(4))[0]
        data = self._read(size)
        correlation, _throttle, topics = struct.unpack_from(">iii", data, 0)
        if correlation != self.correlation or topics != 1:
            raise RuntimeError(f"fetch {topic}-{partition}: unexpected response")
        pos = 12
        name_len = struct.unpack_from(">h", data, pos)[0]
        pos += 2 + name_len
        (partitions,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if partitions != 1:
            raise RuntimeError(f"fetch {topic}-{partition}: {partitions} partitions answered")
        _partition, error, high_watermark, last_stable, aborted_count = struct.unpack_from(">ihqqi", data, pos)
        pos += 4 + 2 + 8 + 8 + 4
        aborted = []
        for _ in range(max(aborted_count, 0)):
            aborted.append(struct.unpack_from(">qq", data, pos))
            pos += 16
        (records_len,) = struct.unpack_from(">i", data, pos)
        pos += 4
        records = data[pos:pos + records_len] if records_len > 0 else b""
        return error, high_watermark, last_stable, aborted, records

    def _read(self, n):
        chunks = []
        while n:
            chunk = self.sock.recv(n)
            if not chunk:
                raise RuntimeError("broker closed the connection")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def close(self):
        self.sock.close()


def read_committed(broker, topic, partitions, idle_seconds=2.0):
    """Every committed record of `topic`, in partition order, as dicts (partition,
    offset, key, value, headers), and counts of what was left out: `aborted` records,
    records of transactions still `open`, and the aborted transactions the broker itself
    `reported`. Reads each partition until nothing new arrives for `idle_seconds`."""
    conn = _Connection(broker)
    committed, stats = [], defaultdict(int)
    try:
        for partition in range(partitions):
            offset, pending = 0, defaultdict(list)
            last_progress = time.time()
            while time.time() - last_progress < idle_seconds:
                error, high, last_stable, aborted, data = conn.fetch(topic, partition, offset)
                if error:
                    raise RuntimeError(f"fetch {topic}-{partition} at {offset}: error code {error}")
                stats["reported"] += len(aborted)
                records = MemoryRecords(data)
                batch = records.next_batch()
                if batch is None:
                    if data:
                        raise RuntimeError(f"fetch {topic}-{partition} at {offset}: no whole batch in {len(data)} bytes")
                    if offset >= last_stable == high:
                        break  # read to the end, and no transaction open
                    time.sleep(0.1)
                    continue
                start = offset
                while batch is not None:
                    if batch.next_offset <= offset:  # a batch from before the requested offset
                        batch = records.next_batch()
                        continue
                    if batch.is_control_batch:
                        marker = next(iter(batch))
                        kept = pending.pop(batch.producer_id, [])
                        if marker.commit:
                            committed.extend(kept)
                        else:
                            stats["aborted"] += len(kept)
                    else:
                        read = [{"partition": partition, "offset": r.offset, "key": r.key, "value": r.value,
                                 "headers": dict(r.headers)} for r in batch if r.offset >= offset]
                        if batch.is_transactional:
                            pending[batch.producer_id].extend(read)
                        else:
                            committed.extend(read)
                    offset = batch.next_offset
                    batch = records.next_batch()
                if offset > start:
                    last_progress = time.time()
            stats["open"] += sum(len(kept) for kept in pending.values())
    finally:
        conn.close()
    return committed, dict(stats)


def read_planned(broker, planned, source_topic, dead_letters):
    """Every topic of `planned` ((topic, event id) pairs) and `dead_letters`, read as
    committed: how often each planned message was read (ident -> count), the planned
    messages read (dicts with topic, key as text, headers as text), the dead letters of
    `source_topic`, and the reader's counts (aborted, open, reported) summed."""
    counts, ours, letters, stats = defaultdict(int), [], [], defaultdict(int)
    for topic in sorted({t for t, _ in planned} | {dead_letters}):
        messages, seen = read_committed(broker, topic, 3, idle_seconds=1.0)
        for k, v in seen.items():
            stats[k] += v
        for m in messages:
            headers = {k: (v or b"").decode() for k, v in m["headers"].items()}
            m = dict(m, topic=topic, key=(m["key"] or b"").decode(), headers=headers)
            if topic == dead_letters:
                if headers.get("relay-source-topic") == source_topic:
                    letters.append(m)
                continue
            ident = (topic, headers.get("relay-event-id"))
            if ident in planned:
                counts[ident] += 1
                ours.append(m)
    return counts, ours, letters, stats


def wait_for_open_transaction(broker, topic, partitions, deadline):
    """Waits until a transaction with records written is open in a partition of `topic`
    (its last stable offset behind its high watermark), or `deadline`; says which."""
    conn = _Connection(broker)
    try:
        while time.time() < deadline:
            for partition in range(partitions):
                error, high, last_stable, _aborted, _data = conn.fetch(topic, partition, 0, max_bytes=1,
                                                                       max_wait_ms=10)
                if not error and last_stable < high:
                    return True
            time.sleep(0.005)
    finally:
        conn.close()
    return False

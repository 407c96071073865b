"""A TCP proxy in front of a nisshi of its own, for faults a broker does not make by
itself (unknown_commit.py, outage.py), and the `serve` members the scenarios run behind
it. The broker advertises the proxy as its address (scripts/broker.sh,
BROKER_ADVERTISED_PORT), so every client connection goes through it. The proxy passes
every byte on, except what it is told to drop: the next committing EndTxn or its answer
(`arm`), or every connection for a while (`down`, then `up`)."""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict

import committed
from kit import (BINARY, LOCAL_HASH_KEY, ROOT, check, committed_offsets, failures, generated_rounds, http_get,
                 metric_in, planned_ids, produce_round)

BROKER_PORT, PROXY_PORT = 19096, 19097
ADDRESS = f"127.0.0.1:{PROXY_PORT}"
END_TXN = 26  # Kafka's EndTxn API key
SASL_AUTHENTICATE = 36
DEAD_LETTERS = "cdc.dead-letters"


def broker(command, *args, port=BROKER_PORT, proxy_port=PROXY_PORT, state="broker-behind-proxy"):
    """`scripts/broker.sh COMMAND ARGS...` for a broker behind a proxy: on `port` (the
    SCRAM broker's too), advertising `proxy_port`, its state in target/`state`. `start`
    takes the topics to create besides the default ones."""
    env = dict(os.environ, BROKER_PORT=str(port), BROKER_SCRAM_PORT=str(port),
               BROKER_ADVERTISED_PORT=str(proxy_port), BROKER_STATE=os.path.join(ROOT, "target", state))
    return subprocess.run(["scripts/broker.sh", command, *args], cwd=ROOT, env=env, capture_output=True, text=True)


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


def without_session_lifetime(frame, version):
    """A SaslAuthenticate answer (the frame after its size) with its session lifetime set to
    0, so that the client never logs in again on the same connection (KIP-368): tansu 0.6
    asks for that every 60 s and then refuses it ("Unsupported SASL mechanism"). The
    lifetime is the answer's last field (version 1), before its tagged fields (2, flexible:
    none here)."""
    if version == 1:
        return frame[:-8] + bytes(8)
    if version >= 2 and frame[-1] == 0:
        return frame[:-9] + bytes(8) + frame[-1:]
    return frame


def _frames(sock):
    """The Kafka frames read from `sock` (each without its 4-byte size), until it closes."""
    def exactly(n):
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)
    while True:
        size = exactly(4)
        if size is None:
            return
        body = exactly(struct.unpack(">i", size)[0])
        if body is None:
            return
        yield body


class Proxy:
    """Passes every connection to the broker on. `arm("answer")` swallows the answer to
    the next committing EndTxn, `arm("request")` the next committing EndTxn itself;
    `swallowed` lists what was, in order. `down()` closes every connection and refuses
    new ones until `up()`."""

    def __init__(self, port=PROXY_PORT, target=BROKER_PORT, no_reauthentication=False):
        self.port, self.target, self.no_reauthentication = port, target, no_reauthentication
        self.lock = threading.Lock()
        self.armed = None
        self.swallowed = []
        self.open = set()
        self.server = None
        self.refusing = False
        self.up()

    def arm(self, what):
        with self.lock:
            self.armed = what

    def up(self):
        with self.lock:
            self.refusing = False
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def down(self):
        """Every client connection closed (as by a broker that went away), and the port
        refusing connections."""
        with self.lock:
            self.refusing = True
            for s in list(self.open):
                self._close(s)
        # Closing alone would not wake the thread blocked in accept(), and the kernel
        # would go on accepting for it.
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()

    def close(self):
        self.down()

    def _close(self, s):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
        self.open.discard(s)

    def _accept(self, server):
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.refusing:  # accepted as the proxy went down
                    for s in (client, upstream):
                        s.close()
                    continue
                self.open.update((client, upstream))
            unanswered = set()  # correlation ids of EndTxn requests whose answer is swallowed
            logins = {}  # correlation id -> version of SaslAuthenticate requests
            threading.Thread(target=self._requests, args=(client, upstream, unanswered, logins),
                             daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, unanswered, logins),
                             daemon=True).start()

    def _requests(self, client, upstream, unanswered, logins):
        def passes(frame):
            api_key, version, correlation = struct.unpack_from(">hhi", frame, 0)
            if api_key == SASL_AUTHENTICATE and self.no_reauthentication:
                logins[correlation] = version
            if api_key == END_TXN and end_txn_commits(frame):
                with self.lock:
                    armed, self.armed = self.armed, None
                if armed == "request":
                    self.swallowed.append(("request", time.time()))
                    return False
                if armed == "answer":
                    unanswered.add(correlation)
            return True
        self._pump(client, upstream, passes)

    def _answers(self, upstream, client, unanswered, logins):
        def passes(frame):
            (correlation,) = struct.unpack_from(">i", frame, 0)
            if correlation in unanswered:
                unanswered.discard(correlation)
                self.swallowed.append(("answer", time.time()))
                return False
            return True

        def edit(frame):
            (correlation,) = struct.unpack_from(">i", frame, 0)
            version = logins.pop(correlation, None)
            return frame if version is None else without_session_lifetime(frame, version)
        self._pump(upstream, client, passes, edit)

    def _pump(self, source, sink, passes, edit=lambda frame: frame):
        """The frames of `source` that `passes` lets through, to `sink` as `edit` makes
        them, until either closes; then both are closed."""
        try:
            for frame in _frames(source):
                if passes(frame):
                    frame = edit(frame)
                    sink.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        except Exception as e:  # a frame this proxy cannot read: say so, the connection ends
            print(f"proxy: {e!r}", file=sys.stderr, flush=True)
        finally:
            with self.lock:
                for s in (source, sink):
                    self._close(s)


class Member:
    """A `serve` process reading `topic` and writing through the proxy, its own group,
    fed `records` generated DMS records in three rounds; logs to target/e2e-TOPIC.log.
    `address` is the proxy's, `env` adds to the process's environment, `login` is the
    (user, password) the scenario's own clients log in with (SCRAM), or a function
    that returns the current one."""

    def __init__(self, label, topic, exactly_once, port, seed, records, address=ADDRESS, env=None, login=None):
        self.label, self.topic, self.exactly_once, self.port = label, topic, exactly_once, port
        self.address, self._login = address, login
        self.group = f"behind-proxy-{topic}"
        self.log = os.path.join(ROOT, "target", f"e2e-{topic}.log")
        self.rounds = generated_rounds(topic, records, seed)
        self.planned, self.ends = set(), defaultdict(lambda: -1)
        extra, env = env or {}, dict(os.environ, RELAY_BROKERS=address, RELAY_SOURCE_TOPICS=topic, RELAY_GROUP_ID=self.group,
                   RELAY_ROUTES=os.path.join(ROOT, "routes.toml"), RELAY_HASH_KEY=LOCAL_HASH_KEY, RUST_LOG="info",
                   RELAY_EXACTLY_ONCE=str(exactly_once).lower(), RELAY_BATCH_SIZE="10",
                   RELAY_HTTP_ADDR=f"127.0.0.1:{port}", RELAY_RETRY_BACKOFF_MAX_MS="2000")
        if exactly_once:
            env["RELAY_TRANSACTIONAL_ID"] = f"{self.group}-a"
        env.update(extra)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([BINARY, "serve"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        # Serving /metrics before anything is asked of it.
        deadline = time.time() + 30
        while http_get(port, "/metrics")[0] != 200 and time.time() < deadline:
            self.alive()
            time.sleep(0.05)

    def login(self):
        return self._login() if callable(self._login) else self._login

    def produce(self, records):
        """Produces `records` to the source topic; what the routes make of them is planned."""
        event = produce_round(self.address, self.topic, records, self.login())
        for landed in event["records"].values():
            for r in landed:
                self.ends[r["partition"]] = max(self.ends[r["partition"]], r["offset"])
        self.planned |= planned_ids(event)

    def relayed(self):
        """Records done: every message acknowledged (exactly once: and committed). Raises
        when /metrics does not answer (a 0 would pass for a figure)."""
        status, text = http_get(self.port, "/metrics")
        if status != 200:
            raise RuntimeError(f"{self.label}: /metrics answered {status}: {text[:200]}")
        return metric_in(text, "cdc_relay_records_produced_total")

    def alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.label}: serve exited with code {self.proc.returncode}; see {self.log}")

    def idle(self, timeout):
        """Until everything produced so far is done: the group's offsets at the end of
        every source partition, nothing relayed for 3 s, and (exactly once) no transaction
        open."""
        busiest = max({t for t, _ in self.planned}, key=lambda t: sum(topic == t for topic, _ in self.planned))
        last, since, deadline = None, time.time(), time.time() + timeout
        while time.time() < deadline:
            self.alive()
            now = self.relayed()
            if now != last:
                last, since = now, time.time()
            elif time.time() - since > 3 and not self.stuck() and not (
                    self.exactly_once and committed.wait_for_open_transaction(self.address, busiest, 3, time.time() + 0.1)):
                return True
            time.sleep(0.2)
        return False

    def read_back(self):
        """Every output topic read as committed: (missing, read twice, records left open,
        records of aborted transactions dropped, dead letters of this topic)."""
        counts, _ours, letters, stats = committed.read_planned(self.address, self.planned, self.topic, DEAD_LETTERS)
        return (len(self.planned - set(counts)), sum(1 for n in counts.values() if n > 1), stats.get("open", 0),
                stats.get("aborted", 0), len(letters))

    def check_end(self, name):
        """After the member stopped: every planned message read as committed (exactly
        once: none twice), nothing open, no dead letter, the group's offsets at the end.
        Returns (missing, twice, open, aborted, dead letters, stuck) for the report."""
        missing, twice, open_, aborted, letters = self.read_back()
        stuck = self.stuck()
        check(missing == 0, f"{name}: {missing} of {len(self.planned)} planned messages missing")
        if self.exactly_once:
            check(twice == 0, f"{name}: {twice} planned messages read twice as committed")
        check(open_ == 0, f"{name}: {open_} records left in open transactions")
        check(letters == 0, f"{name}: {letters} dead letters (neither fault is a record's)")
        check(not stuck, f"{name}: the group's offsets are not at the end: {stuck}")
        return missing, twice, open_, aborted, letters, stuck

    def stuck(self):
        """Source partitions whose committed offset is not past the last record produced."""
        offsets = committed_offsets(self.address, self.group, self.topic, login=self.login())
        return {p: (offsets.get(p), end + 1) for p, end in self.ends.items() if offsets.get(p) != end + 1}

    def stop(self):
        """SIGTERM; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_alone(name, scenario):
    """A scenario run on its own; exits non-zero on a failed check."""
    # Stopped from outside: the scenario's `finally` still ends what it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    outcome = scenario()
    if failures:
        sys.exit(f"{name}: {len(failures)} checks failed")
    print(f"{name}: {'SKIPPED' if outcome == 'skipped' else 'passed'}")

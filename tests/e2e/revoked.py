#!/usr/bin/env python3
"""`serve` with SCRAM on a real broker: the member's password changed on the broker (its
login revoked) until the secret in Secrets Manager is rotated to the new one.

One `serve` member, at least once, RELAY_AUTH=scram with its secret in a Secrets Manager
of this scenario's own (an HTTP endpoint answering GetSecretValue with the current
password, reached through AWS_ENDPOINT_URL), reads and writes through a proxy (proxy.py)
in front of tansu with SQLite storage and SASL/SCRAM-SHA-512 (scripts/broker.sh
start-scram). Four phases:

1. a first round of generated records relayed;
2. the member's password is changed on the broker (AlterUserScramCredentials), and every
   connection is closed so that the member must log in again: it is refused. A second round waits. `/healthz` must fail
   once the liveness bound passes without progress;
3. the secret is rotated to the new password: the member fetches it again (a refused
   login makes it do so, at most every 30 s), logs in, relays the second round;
4. a last round relayed.

Checked: nothing relayed while the login is refused, `/healthz` 503 then and only then
(never before the revocation, nor once relaying again), relaying again after the rotation
(seconds reported), every planned message read back, no dead letter, the group's offsets
at the end, exit 0 at SIGTERM.

The proxy sets the session lifetime of every SASL login to 0: tansu 0.6 asks clients to
log in again on each connection every 60 s, then refuses that login ("Unsupported SASL
mechanism"). A broker restart is not part of it either: on tansu 0.6 with SQLite storage, the first
idempotent produce after a restart panics its storage ("more or less than one row" in
idempotent_message_check) and every later request fails.

tansu is built by `scripts/broker.sh install-scram` (about 17 CPU-minutes), which CI does
not spend: without it the scenario says SKIPPED, and e2e.py counts it skipped. Run alone:
`python3 tests/e2e/revoked.py` (after `cargo build --release`).
"""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from kit import check, client_config, http_get, read_all, wait_for_ids
from proxy import DEAD_LETTERS, Member, Proxy, run_alone
from proxy import broker as behind_proxy

BROKER_PORT, PROXY_PORT = 19094, 19098
ADDRESS = f"127.0.0.1:{PROXY_PORT}"
TOPIC = "dms.revoked"
USER = "relay"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:AmazonMSK_relay-AbCdEf"
LIVENESS_TIMEOUT_MS = 12000
# src/relay.rs SECRET_REFETCH_INTERVAL: a refused login fetches the secret at most this often.
REFETCH_INTERVAL_S = 30


def broker(command, *args):
    """`scripts/broker.sh COMMAND` for the SCRAM broker behind this scenario's proxy."""
    return behind_proxy(command, *args, port=BROKER_PORT, proxy_port=PROXY_PORT, state="broker-revoked")


class SecretsManager:
    """GetSecretValue for one secret: `{"username", "password"}` with the current
    `password`; `fetches` holds the time of each request answered."""

    def __init__(self, password):
        self.password, self.fetches = password, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if (self.headers.get("X-Amz-Target") != "secretsmanager.GetSecretValue"
                        or request.get("SecretId") != ARN):
                    body, status = json.dumps({"__type": "ResourceNotFoundException"}), 400
                else:
                    outer.fetches.append(time.time())
                    body, status = json.dumps({
                        "ARN": ARN, "Name": "AmazonMSK_relay", "VersionId": f"v{len(outer.fetches)}",
                        "CreatedDate": 1.7e9,
                        "SecretString": json.dumps({"username": USER, "password": outer.password})}), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def change_password(old, new):
    """The member's SCRAM password changed on the broker, by a client logged in with `old`."""
    admin = AdminClient(client_config(ADDRESS, (USER, old)))
    upsert = UserScramCredentialUpsertion(USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                          new.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=20)


def revoked():
    """The scenario (module docstring). Starts and stops its own broker, proxy and
    Secrets Manager."""
    started = time.time()
    first, second = f"first-{os.getpid()}-{int(started)}", f"second-{os.getpid()}-{int(started)}"
    password = [first]  # what the broker holds now, for this scenario's own clients
    proxy = Proxy(PROXY_PORT, BROKER_PORT, no_reauthentication=True)
    secrets = SecretsManager(first)
    member, samples, stop_sampling = None, [], threading.Event()
    try:
        broker("stop-scram")  # one left by an interrupted run
        up = broker("start-scram", USER, first, TOPIC)
        if up.returncode == 3:
            # No tansu with SQLite storage here; building one costs more than CI spends.
            print("e2e: revoked credentials: SKIPPED: no tansu with SQLite storage here "
                  "(scripts/broker.sh install-scram)", flush=True)
            return "skipped"
        check(up.returncode == 0, f"revoked: cannot start the SCRAM broker: {up.stderr[-500:]}")
        if up.returncode != 0:
            return
        env = {"RELAY_AUTH": "scram", "RELAY_SCRAM_SECRET_ARN": ARN, "AWS_REGION": "eu-west-1",
               "AWS_ENDPOINT_URL": secrets.url, "AWS_ACCESS_KEY_ID": "AKIDREVOKEDSCENARIO",
               "AWS_SECRET_ACCESS_KEY": "not-a-secret", "AWS_EC2_METADATA_DISABLED": "true",
               # tansu has no TLS listener.
               "RELAY_PRODUCER_SECURITY_PROTOCOL": "sasl_plaintext",
               "RELAY_CONSUMER_SECURITY_PROTOCOL": "sasl_plaintext",
               "RELAY_LIVENESS_TIMEOUT_MS": str(LIVENESS_TIMEOUT_MS), "RELAY_BATCH_TIMEOUT_MS": "3000",
               # The consumer made with the rotated secret joins beside the one made with the
               # revoked secret, which cannot leave the group: its partitions wait for that
               # one's session to time out.
               "RELAY_CONSUMER_SESSION_TIMEOUT_MS": "6000", "RELAY_CONSUMER_HEARTBEAT_INTERVAL_MS": "1000"}
        member = Member("revoked", TOPIC, False, 9390, 51, 900, address=ADDRESS, env=env,
                        login=lambda: (USER, password[0]))

        def sample():
            while not stop_sampling.is_set():
                samples.append((time.time(), http_get(member.port, "/healthz")[0]))
                stop_sampling.wait(0.5)
        threading.Thread(target=sample, daemon=True).start()

        # 1. The first round.
        member.produce(member.rounds[0])
        check(member.idle(90), "revoked: the first round not relayed")

        # 2. The member's login revoked: its password changed on the broker, every connection
        # closed, so that it must log in again.
        change_password(first, second)
        password[0] = second
        revoked_at = time.time()
        fetches_before = len(secrets.fetches)
        proxy.down()
        time.sleep(0.5)
        proxy.up()
        refused_from = member.relayed()
        member.produce(member.rounds[1])
        # Until /healthz fails, and at least a while past the liveness bound.
        failed_at = None
        while time.time() < revoked_at + LIVENESS_TIMEOUT_MS / 1000 + 20:
            member.alive()
            if failed_at is None and http_get(member.port, "/healthz")[0] == 503:
                failed_at = time.time()
            if failed_at is not None and time.time() > revoked_at + LIVENESS_TIMEOUT_MS / 1000 + 3:
                break
            time.sleep(0.2)
        refused_relayed = member.relayed() - refused_from
        fetched_while_refused = len(secrets.fetches) - fetches_before
        check(failed_at is not None, "revoked: /healthz never failed while the login was refused")
        # Counted from the last progress, which is noted at most every STATISTICS_INTERVAL
        # (5 s, src/kafka/group.rs) while idle: not before the bound less that and a second.
        early_503 = failed_at is not None and failed_at - revoked_at < LIVENESS_TIMEOUT_MS / 1000 - 6
        check(not early_503, f"revoked: /healthz failed {(failed_at or 0) - revoked_at:.1f} s after the "
                             f"revocation, before the liveness bound")
        with open(member.log) as log:
            text = log.read()
        check("SASL authentication error" in text and "login refused with the current SCRAM secret" in text,
              f"revoked: the member's log shows no refused SASL login; see {member.log}")
        check(refused_relayed == 0, f"revoked: {refused_relayed} records relayed with a revoked login")

        # 3. The secret rotated to the broker's new password.
        secrets.password = second
        rotated_at = time.time()
        relaying_again = None
        while relaying_again is None and time.time() < rotated_at + REFETCH_INTERVAL_S + 60:
            member.alive()
            if member.relayed() > refused_from:
                relaying_again = time.time() - rotated_at
            time.sleep(0.1)
        check(relaying_again is not None,
              f"revoked: nothing relayed within {REFETCH_INTERVAL_S + 60} s of the secret's rotation; see {member.log}")
        check(any(t > rotated_at for t in secrets.fetches), "revoked: the secret not fetched after the rotation")
        check(member.idle(120), "revoked: the second round not relayed after the rotation")
        healthy = None
        deadline = time.time() + 10
        while healthy != 200 and time.time() < deadline:
            healthy = http_get(member.port, "/healthz")[0]
            time.sleep(0.2)
        check(healthy == 200, f"revoked: /healthz {healthy} after relaying again")
        recovered_at = time.time()
        # 4. And the member goes on.
        member.produce(member.rounds[2])
        check(member.idle(90), "revoked: the last round not relayed")
        stop_sampling.set()
        code = member.stop()
        check(code == 0, f"revoked: SIGTERM ended serve with code {code}")

        # /healthz 503 only while the login was refused: never before the revocation, nor
        # once relaying again after the rotation.
        early = [round(t - started, 1) for t, s in samples if s == 503 and t < revoked_at]
        late = [round(t - started, 1) for t, s in samples
                if s == 503 and relaying_again is not None and t > rotated_at + relaying_again + 1]
        check(not early, f"revoked: /healthz 503 before the revocation, at {early} s")
        check(not late, f"revoked: /healthz 503 after relaying again, at {late} s")

        counts = wait_for_ids(ADDRESS, member.planned, timeout=60, login=(USER, second))
        missing = len(member.planned - set(counts))
        check(missing == 0, f"revoked: {missing} of {len(member.planned)} planned messages missing")
        letters = [m for m in read_all(ADDRESS, [DEAD_LETTERS], idle_seconds=1.0, login=(USER, second))
                   if m["headers"].get("relay-source-topic") == TOPIC]
        check(not letters, f"revoked: {len(letters)} dead letters (neither fault is a record's)")
        stuck = member.stuck()
        check(not stuck, f"revoked: the group's offsets are not at the end: {stuck}")
        print(f"e2e: revoked credentials (SCRAM, tansu): the password changed on the broker: "
              f"{refused_relayed} records relayed while refused, /healthz 503 "
              f"{'never' if failed_at is None else f'{failed_at - revoked_at:.1f} s'} after the revocation "
              f"(bound {LIVENESS_TIMEOUT_MS / 1000:.0f} s from the last progress), the secret fetched "
              f"{fetched_while_refused} times meanwhile; after the rotation relaying again "
              f"{relaying_again if relaying_again is None else round(relaying_again, 1)} s later, /healthz "
              f"{healthy} once that round was done ({recovered_at - rotated_at:.1f} s after the rotation), "
              f"{'never' if not early and not late else 'also'} 503 outside the fault; "
              f"{len(member.planned)} planned messages: "
              f"{missing} missing, {sum(n > 1 for n in counts.values())} twice, {len(letters)} dead-lettered; "
              f"offsets at the end: {'yes' if not stuck else stuck}; {len(secrets.fetches)} fetches in all; "
              f"{time.time() - started:.0f} s", flush=True)
    finally:
        stop_sampling.set()
        if member:
            member.kill()
        broker("stop-scram")
        proxy.close()
        secrets.close()


if __name__ == "__main__":
    run_alone("revoked credentials", revoked)

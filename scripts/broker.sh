#!/usr/bin/env bash
# A real Kafka-protocol broker on loopback for tests, benchmarks and local use.
#
#   scripts/broker.sh start [TOPIC...]   install once (pinned, cached), start, wait until it
#                                        answers, create the topics; last line: host:port
#   scripts/broker.sh stop
#   scripts/broker.sh status
#   scripts/broker.sh start-scram USER PASSWORD [TOPIC...]
#                                        a second broker that requires SASL/SCRAM-SHA-512
#                                        (plaintext: tansu 0.6 has no TLS listener), with
#                                        USER created; last line: host:port
#   scripts/broker.sh stop-scram
#   scripts/broker.sh install-scram      build the pinned tansu with SQLite storage, which the
#                                        SCRAM broker needs (about 17 CPU-minutes, once)
#
# The broker is tansu (memory storage), built from crates.io with cargo. Quirks of tansu
# 0.6: topics are not auto-created (this script creates them), and the high watermark it
# reports is not reliable (readers should read until idle). SCRAM users live in the
# broker's storage and can only be created before authentication is switched on, so the
# SCRAM broker keeps them in SQLite: started open, the user created, restarted closed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
TANSU_VERSION=0.6.0
port="${BROKER_PORT:-19092}"
case "${1:-}" in
  start-scram|stop-scram|install-scram) port="${BROKER_SCRAM_PORT:-19093}"; variant=scram ;;
  *) variant=memory ;;
esac
address="127.0.0.1:${port}"
state="${root}/target/broker"
[ "${variant}" = scram ] && state="${state}-scram"
tools="${root}/target/tools"
pidfile="${state}/tansu.pid"
log="${state}/tansu.log"
partitions="${BROKER_PARTITIONS:-3}"
# Topics the example routes, the dead-letter tests and gen-event events produce to, and the
# source topics the end-to-end tier feeds `esm` and `serve` from.
default_topics="orders.changes orders.cache-invalidation users.changes sales.invoices
  partner.payments hr.employees cdc.public.payments cdc.public.users cdc.public.orders schema-changes cdc.dead-letters dlq relay.out
  dms.esm dms.serve"

say() { echo "broker: $*" >&2; }

# The pinned tansu: target/tools-scram (built by install-scram, memory and SQLite storage),
# else target/tools, else one of the same version on PATH, else built into target/tools
# with memory storage only (once; about 8 minutes on 2 cores).
tansu_bin() {
  if [ -x "${tools}-scram/bin/tansu" ]; then echo "${tools}-scram/bin/tansu"; return; fi
  if [ -x "${tools}/bin/tansu" ]; then echo "${tools}/bin/tansu"; return; fi
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "${TANSU_VERSION}"; then
    command -v tansu; return
  fi
  say "installing tansu ${TANSU_VERSION} into ${tools} (once; several minutes)"
  cargo install tansu --version "${TANSU_VERSION}" --locked --features dynostore --root "${tools}" >&2
  echo "${tools}/bin/tansu"
}

running() { [ -f "${pidfile}" ] && kill -0 "$(cat "${pidfile}")" 2>/dev/null; }

# Asks for cluster metadata with a real client; creates topics when given.
# With SASL_USER/SASL_PASSWORD set, logs in with SCRAM-SHA-512.
kafka_admin() {
  python3 - "${address}" "${partitions}" "$@" <<'PY'
import os, sys
from confluent_kafka.admin import AdminClient, NewTopic
address, partitions, topics = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
config = {"bootstrap.servers": address, "socket.timeout.ms": 3000}
if os.environ.get("SASL_USER"):
    config.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
                   "sasl.username": os.environ["SASL_USER"], "sasl.password": os.environ["SASL_PASSWORD"]})
admin = AdminClient(config)
existing = set(admin.list_topics(timeout=5).topics)
wanted = [t for t in topics if t not in existing]
if wanted:
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in wanted], operation_timeout=10)
    for topic, future in futures.items():
        try:
            future.result()
        except Exception as e:  # already created concurrently is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise SystemExit(f"cannot create topic {topic}: {e}")
PY
}

wait_ready() {
  for _ in $(seq 1 60); do
    if ! running; then
      say "tansu exited; last log lines:"; tail -n 20 "${log}" >&2 || true
      return 1
    fi
    if kafka_admin 2>/dev/null; then return 0; fi
    sleep 1
  done
  say "tansu did not answer on ${address} within 60 s"
  return 1
}

# Starts tansu on ${address}; extra arguments go to `tansu broker`.
launch() {
  local bin
  bin="$(tansu_bin)"
  say "starting $("${bin}" --version 2>/dev/null || echo tansu) on ${address} $*"
  cd "${state}"
  nohup "${bin}" broker --listener-url "tcp://${address}" \
    --advertised-listener-url "tcp://${address}" "$@" >"${log}" 2>&1 &
  echo $! >"${pidfile}"
  cd "${root}"
}

stop_running() {
  if running; then
    local pid; pid="$(cat "${pidfile}")"
    kill "${pid}" && say "stopped"
    for _ in $(seq 1 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  else
    say "not running"
  fi
  rm -f "${pidfile}"
}

case "${1:-status}" in
  start)
    shift || true
    python3 -c "import confluent_kafka" 2>/dev/null || { say "python3 confluent-kafka is required (pip install confluent-kafka)"; exit 1; }
    mkdir -p "${state}"
    if running; then
      say "already running (pid $(cat "${pidfile}"))"
    else
      launch --storage-engine memory://tansu/
    fi
    wait_ready || { say "cannot start the broker"; exit 1; }
    # shellcheck disable=SC2086
    kafka_admin ${default_topics} "$@" || { say "cannot create topics"; exit 1; }
    echo "${address}"
    ;;
  install-scram)
    if [ ! -x "${tools}-scram/bin/tansu" ]; then
      say "installing tansu ${TANSU_VERSION} with SQLite storage into ${tools}-scram (once; long)"
      cargo install tansu --version "${TANSU_VERSION}" --locked --features dynostore,libsql \
        --root "${tools}-scram" >&2
    fi
    say "tansu: ${tools}-scram/bin/tansu"
    ;;
  stop|stop-scram)
    stop_running
    ;;
  start-scram)
    [ $# -ge 3 ] || { echo "usage: $0 start-scram USER PASSWORD [TOPIC...]" >&2; exit 2; }
    user="$2" password="$3"; shift 3
    python3 -c "import confluent_kafka" 2>/dev/null || { say "python3 confluent-kafka is required (pip install confluent-kafka)"; exit 1; }
    stop_running 2>/dev/null
    mkdir -p "${state}" && rm -f "${state}"/scram.db*
    launch --storage-engine sqlite://scram.db
    if ! wait_ready; then
      if grep -q "FeatureNotEnabled" "${log}"; then
        say "this tansu has no SQLite storage, which the SCRAM broker needs: scripts/broker.sh install-scram"
        exit 3
      fi
      say "cannot start the broker"; exit 1
    fi
    # shellcheck disable=SC2086
    kafka_admin ${default_topics} "$@" || { say "cannot create topics"; exit 1; }
    "$(tansu_bin)" user create --broker "tcp://${address}" --mechanism scram512 "${user}" "${password}" >&2 \
      || { say "cannot create the SCRAM user"; exit 1; }
    stop_running 2>/dev/null
    launch --storage-engine sqlite://scram.db --authentication
    SASL_USER="${user}" SASL_PASSWORD="${password}" wait_ready || { say "SCRAM broker did not accept the login"; exit 1; }
    echo "${address}"
    ;;
  status)
    if running && kafka_admin 2>/dev/null; then
      say "running (pid $(cat "${pidfile}"))"; echo "${address}"
    else
      say "not running"; exit 1
    fi
    ;;
  *)
    echo "usage: $0 start [TOPIC...] | stop | status | start-scram USER PASSWORD [TOPIC...] | stop-scram | install-scram" >&2; exit 2
    ;;
esac

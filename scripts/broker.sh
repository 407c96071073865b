#!/usr/bin/env bash
# A real Kafka-protocol broker on loopback for tests, benchmarks and local use.
#
#   scripts/broker.sh start [TOPIC...]   install once (pinned, cached), start, wait until it
#                                        answers, create the topics; last line: host:port
#   scripts/broker.sh stop
#   scripts/broker.sh status
#
# The broker is tansu (memory storage), built from crates.io with cargo. Quirks of tansu
# 0.6: topics are not auto-created (this script creates them), and the high watermark it
# reports is not reliable (readers should read until idle).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
TANSU_VERSION=0.6.0
port="${BROKER_PORT:-19092}"
address="127.0.0.1:${port}"
state="${root}/target/broker"
tools="${root}/target/tools"
pidfile="${state}/tansu.pid"
log="${state}/tansu.log"
partitions="${BROKER_PARTITIONS:-3}"
# Topics the example routes, the dead-letter tests and gen-event events produce to.
default_topics="orders.changes orders.cache-invalidation users.changes sales.invoices
  cdc.public.payments cdc.public.users cdc.public.orders schema-changes cdc.dead-letters dlq relay.out"

say() { echo "broker: $*" >&2; }

tansu_bin() {
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
kafka_admin() {
  python3 - "${address}" "${partitions}" "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
address, partitions, topics = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
admin = AdminClient({"bootstrap.servers": address, "socket.timeout.ms": 3000})
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

case "${1:-status}" in
  start)
    shift || true
    python3 -c "import confluent_kafka" 2>/dev/null || { say "python3 confluent-kafka is required (pip install confluent-kafka)"; exit 1; }
    mkdir -p "${state}"
    if running; then
      say "already running (pid $(cat "${pidfile}"))"
    else
      bin="$(tansu_bin)"
      say "starting $("${bin}" --version 2>/dev/null || echo tansu) on ${address}"
      nohup "${bin}" broker --listener-url "tcp://${address}" --advertised-listener-url "tcp://${address}" \
        --storage-engine memory://tansu/ >"${log}" 2>&1 &
      echo $! >"${pidfile}"
    fi
    wait_ready || { say "cannot start the broker"; exit 1; }
    # shellcheck disable=SC2086
    kafka_admin ${default_topics} "$@" || { say "cannot create topics"; exit 1; }
    echo "${address}"
    ;;
  stop)
    if running; then
      kill "$(cat "${pidfile}")" && say "stopped"
    else
      say "not running"
    fi
    rm -f "${pidfile}"
    ;;
  status)
    if running && kafka_admin 2>/dev/null; then
      say "running (pid $(cat "${pidfile}"))"; echo "${address}"
    else
      say "not running"; exit 1
    fi
    ;;
  *)
    echo "usage: $0 start [TOPIC...] | stop | status" >&2; exit 2
    ;;
esac

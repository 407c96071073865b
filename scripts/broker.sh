#!/usr/bin/env bash
# A real Kafka-protocol broker on loopback for tests, benchmarks and local use.
#
#   scripts/broker.sh start [TOPIC...]   install once (pinned, cached), start, wait until it
#                                        answers, create the topics; last line: host:port
#   scripts/broker.sh stop
#   scripts/broker.sh status
#   scripts/broker.sh install            build the pinned broker only (start does it when needed)
#   scripts/broker.sh start-scram USER PASSWORD [TOPIC...]
#                                        a second broker that requires SASL/SCRAM-SHA-512
#                                        (plaintext: tansu 0.6 has no TLS listener), with
#                                        USER created; last line: host:port
#   scripts/broker.sh stop-scram
#   scripts/broker.sh install-scram      build the pinned tansu with SQLite storage, which the
#                                        SCRAM broker needs (about 17 CPU-minutes, once)
#
# BROKER_PORT (default 19092) moves the broker; a second one beside it also needs its own
# BROKER_STATE folder (default target/broker). BROKER_ADVERTISED_PORT makes it tell clients
# to connect to another port of 127.0.0.1 (something in front of it, which must listen
# before start: start asks for metadata through it).
#
# The broker is nisshi 0.7.0 (memory storage; the project was called tansu before),
# built from crates.io with cargo. It implements Kafka transactions far enough for exactly
# once: commit and abort markers, transactional offset commits, and a last stable offset
# held back by open transactions. Its Fetch answers never list aborted transactions, so
# stock read_committed clients also read aborted records (tests/e2e/committed.py applies
# the markers itself). nisshi 0.8 refuses transactional producers, hence the pin. Topics
# are not auto-created (this script creates them), and the high watermark it reports is
# not reliable (readers should read until idle). nisshi needs rustc 1.96 or later to
# build: with an older stable it is built with the nightly toolchain if there is one,
# else with 1.96.0 installed by rustup.
#
# The SCRAM broker is tansu 0.6 with SQLite storage (install-scram). SCRAM users live in
# the broker's storage and can only be created before authentication is switched on, so
# it is started open, the user created, restarted closed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
NISSHI_VERSION=0.7.0
TANSU_VERSION=0.6.0
port="${BROKER_PORT:-19092}"
case "${1:-}" in
  start-scram|stop-scram|install-scram) port="${BROKER_SCRAM_PORT:-19093}"; variant=scram ;;
  *) variant=memory ;;
esac
address="127.0.0.1:${port}"
advertised="127.0.0.1:${BROKER_ADVERTISED_PORT:-${port}}"
state="${BROKER_STATE:-${root}/target/broker}"
[ "${variant}" = scram ] && state="${state}-scram"
tools="${root}/target/tools"
pidfile="${state}/broker.pid"
log="${state}/broker.log"
partitions="${BROKER_PARTITIONS:-3}"
# Topics the example routes, the dead-letter tests and gen-event events produce to, and the
# source topics the end-to-end tier feeds `esm` and `serve` from.
default_topics="orders.changes orders.cache-invalidation users.changes sales.invoices
  partner.payments hr.employees cdc.public.payments cdc.public.users cdc.public.orders schema-changes cdc.dead-letters dlq relay.out
  dms.esm dms.serve dms.eos"

say() { echo "broker: $*" >&2; }

# The pinned nisshi in target/tools-nisshi, or one of the same version on PATH, else
# built there with memory storage only (once; optimised, over 20 minutes on 2 cores). With
# NISSHI_OPT_LEVEL set (CI: 0), built at that optimisation level into a folder of its own,
# so a benchmark never runs on a cheaper build by accident (unoptimised: 518 s on 2 cores).
nisshi_bin() {
  local dir="${tools}-nisshi${NISSHI_OPT_LEVEL:+-o${NISSHI_OPT_LEVEL}}" toolchain=""
  local bin="${dir}/bin/nisshi"
  if [ -x "${bin}" ]; then echo "${bin}"; return; fi
  if [ -z "${NISSHI_OPT_LEVEL:-}" ] && command -v nisshi >/dev/null && nisshi --version 2>/dev/null | grep -q "${NISSHI_VERSION}"; then
    command -v nisshi; return
  fi
  if ! recent_enough rustc; then
    if recent_enough rustup run nightly rustc; then
      toolchain=+nightly
    else
      rustup toolchain install 1.96.0 --profile minimal >&2 || { say "cannot install rustc 1.96.0"; return 1; }
      toolchain=+1.96.0
    fi
  fi
  say "installing nisshi ${NISSHI_VERSION} into ${dir} (once; several minutes)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL="${NISSHI_OPT_LEVEL:-3}" \
    cargo ${toolchain} install nisshi --version "${NISSHI_VERSION}" --locked --no-default-features \
    --features dynostore --root "${dir}" >&2 || { say "building nisshi failed"; return 1; }
  [ -x "${bin}" ] || { say "no ${bin} after the build"; return 1; }
  echo "${bin}"
}

# Whether the rustc that "$@" runs is 1.96 or later (nisshi's dependencies need it).
recent_enough() {
  "$@" --version 2>/dev/null | awk '{ split($2, v, "."); ok = (v[1] > 1 || v[2] >= 96) } END { exit !ok }'
}

# The SCRAM broker: tansu with SQLite storage in target/tools-scram (install-scram).
tansu_scram_bin() {
  [ -x "${tools}-scram/bin/tansu" ] && echo "${tools}-scram/bin/tansu"
}

broker_bin() {
  if [ "${variant}" = scram ]; then tansu_scram_bin; else nisshi_bin; fi
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
      say "the broker exited; last log lines:"; tail -n 20 "${log}" >&2 || true
      return 1
    fi
    if kafka_admin 2>/dev/null; then return 0; fi
    sleep 1
  done
  say "the broker did not answer on ${address} within 60 s"
  return 1
}

# Starts the broker on ${address}; extra arguments go to its `broker` command.
launch() {
  local bin
  bin="$(broker_bin)" || { say "no broker binary"; return 3; }
  # Another process on the address would answer in the broker's place while the new one
  # fails to bind.
  if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
    say "something else already listens on ${address} (a broker another checkout started?): stop it, or choose another port with BROKER_PORT (BROKER_SCRAM_PORT for the SCRAM broker)"
    return 4
  fi
  say "starting $("${bin}" --version 2>/dev/null || echo "${bin}") on ${address} $*"
  cd "${state}"
  nohup "${bin}" broker --listener-url "tcp://${address}" \
    --advertised-listener-url "tcp://${advertised}" "$@" >"${log}" 2>&1 &
  echo $! >"${pidfile}"
  cd "${root}"
}

stop_running() {
  if running; then
    local pid; pid="$(cat "${pidfile}")"
    # A broker left stopped (SIGSTOP, the chaos harness) would never act on the TERM.
    kill -CONT "${pid}" 2>/dev/null || true
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
      launch --storage-engine memory://nisshi/ || exit 1
    fi
    wait_ready || { say "cannot start the broker"; exit 1; }
    # shellcheck disable=SC2086
    kafka_admin ${default_topics} "$@" || { say "cannot create topics"; exit 1; }
    echo "${address}"
    ;;
  install)
    bin="$(nisshi_bin)" || exit 1
    say "nisshi: ${bin}"
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
    tansu_scram_bin >/dev/null || {
      say "no tansu with SQLite storage here, which the SCRAM broker needs: scripts/broker.sh install-scram"
      exit 3
    }
    stop_running 2>/dev/null
    mkdir -p "${state}" && rm -f "${state}"/scram.db*
    launch --storage-engine sqlite://scram.db || exit 1
    if ! wait_ready; then
      if grep -q "FeatureNotEnabled" "${log}"; then
        say "this tansu has no SQLite storage, which the SCRAM broker needs: scripts/broker.sh install-scram"
        exit 3
      fi
      say "cannot start the broker"; exit 1
    fi
    # shellcheck disable=SC2086
    kafka_admin ${default_topics} "$@" || { say "cannot create topics"; exit 1; }
    "$(tansu_scram_bin)" user create --broker "tcp://${address}" --mechanism scram512 "${user}" "${password}" >&2 \
      || { say "cannot create the SCRAM user"; exit 1; }
    stop_running 2>/dev/null
    launch --storage-engine sqlite://scram.db --authentication || exit 1
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
    echo "usage: $0 start [TOPIC...] | stop | status | install | start-scram USER PASSWORD [TOPIC...] | stop-scram | install-scram" >&2; exit 2
    ;;
esac

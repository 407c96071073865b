#!/usr/bin/env bash
# Where the Lambda path's time goes at BatchSize 100 (bench/analysis.md): the function
# behind `cargo lambda watch`, producing to the embedded mock cluster (`cdc-relay
# mock-cluster`), five 100-record events POSTed with curl, and the function's reads of
# its runtime API socket traced with strace. Prints, per invocation, the time curl saw,
# the time from the first to the last read of the payload, and the longest wait between
# two of those reads; and the same for the emulator's writes of that payload.
#
# Needs the release binary (built here if missing), cargo-lambda and strace.
set -euo pipefail
cd "$(dirname "$0")/.."
port=9392
bin=target/release/cdc-relay
records="${1:-100}"
[ -x "$bin" ] || cargo build --release --locked --bin cdc-relay
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  pkill -f "^${bin}\$" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The mock cluster runs until its standard input ends.
mkfifo "$work/in"
sleep 100000 > "$work/in" &
pids+=($!)
"$bin" mock-cluster < "$work/in" > "$work/mock.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/mock.out" ] && break; sleep 0.1; done
brokers=$(head -n 1 "$work/mock.out")
"$bin" gen-event --records 1 > "$work/warm.json"
"$bin" gen-event --records "$records" > "$work/event.json"

setsid cargo lambda watch --release --invoke-port "$port" --ignore-changes \
  --env-var "RELAY_BROKERS=$brokers" --env-var RELAY_PARTIAL_BATCH=true \
  --env-var "RELAY_ROUTES=$PWD/bench/routes.toml" --env-var RUST_LOG=warn > "$work/watch.log" 2>&1 &
sleep 1
watch=$(pgrep -nf "cargo-lambda lambda watch.*--invoke-port $port")
pids+=("$watch")
url="http://127.0.0.1:$port/2015-03-31/functions/cdc-relay/invocations"
post() { curl -s -o /dev/null -w '%{time_total}' -X POST --data-binary "@$1" "$url"; }
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "@$work/warm.json" "$url" || true)" = 200 ] && break
  sleep 0.5
done
post "$work/warm.json" > /dev/null
function_pid=$(pgrep -nf "^${bin}\$")

strace -f -tt -e trace=recvfrom,writev -e signal=none -p "$function_pid" -o "$work/function.trace" &
pids+=($!)
strace -f -tt -e trace=recvfrom,writev -e signal=none -p "$watch" -o "$work/emulator.trace" &
pids+=($!)
sleep 1
times=()
for _ in 1 2 3 4 5; do times+=("$(post "$work/event.json")"); done
sleep 0.5
kill "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true
sleep 0.5

python3 - "$work/function.trace" "$work/emulator.trace" "${times[@]}" <<'EOF'
import re, sys
from datetime import datetime

def spans(path, start, move):
    """Per invocation: the time from the first to the last `move` call carrying the
    payload (from the one that starts with `start` to the next one that does not carry
    payload), and the longest wait between two of them, in ms."""
    out, current = [], None
    for line in open(path):
        m = re.match(r"\d+\s+(\d+):(\d+):([\d.]+) (\w+)\((\d+), \[?\{?(?:iov_base=)?\"(.{0,40})", line)
        if not m:
            continue
        h, mi, s, call, fd, data = m.groups()
        t = (int(h) * 3600 + int(mi) * 60 + float(s)) * 1e3
        if call != move:
            continue
        if data.startswith(start):
            current = [t]
            out.append(current)
        elif current is not None and not data.startswith(("HTTP/1.1", "POST", "GET")):
            current.append(t)
        else:
            current = None
    return [(c[-1] - c[0], max((b - a for a, b in zip(c, c[1:])), default=0.0), len(c)) for c in out]

function = spans(sys.argv[1], "HTTP/1.1 200 OK\\r\\nlambda-runtime", "recvfrom")
emulator = spans(sys.argv[2], "HTTP/1.1 200 OK\\r\\nlambda-runtime", "writev")
print("invocation  curl ms  function reads: span ms, longest wait ms, reads  emulator writes: span ms, longest wait ms, writes")
for i, total in enumerate(sys.argv[3:]):
    f = function[i] if i < len(function) else (float("nan"),) * 3
    e = emulator[i] if i < len(emulator) else (float("nan"),) * 3
    print(f"{i + 1:>10}  {float(total) * 1e3:7.1f}  {f[0]:14.1f} {f[1]:17.1f} {f[2]:6}  {e[0]:15.1f} {e[1]:17.1f} {e[2]:7}")
EOF

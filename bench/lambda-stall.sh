#!/usr/bin/env bash
# Where the Lambda path waits under `cargo lambda watch` (bench/analysis.md): the function
# behind the emulator, producing to the embedded mock cluster (`cdc-relay mock-cluster`),
# five events of RECORDS records (default 100) POSTed with curl, and the function's reads
# and the emulator's writes of each payload traced with strace. Prints, per invocation:
# the time curl saw; the span from the function's first to its last read of the payload,
# the longest wait between two of those reads, the bytes of the first read and of all;
# and the same for the emulator's writes.
#
#   bench/lambda-stall.sh [RECORDS]
#
# Needs the release binary (built here if missing), cargo-lambda, strace, and the right
# to trace another process (root, or kernel.yama.ptrace_scope 0). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
port=9397
bin=target/release/cdc-relay
records="${1:-100}"
[ -x "$bin" ] || cargo build --release --locked --bin cdc-relay
watch_env=()
# shellcheck source=bench/lambda-watch.sh
. bench/lambda-watch.sh
"$bin" gen-event --records "$records" > "$work/event.json"

# -ff: one file per thread, so no call is split across lines.
strace -ff -tt -e trace=recvfrom,writev -e signal=none -p "$function_pid" -o "$work/function" 2> /dev/null &
pids+=($!)
function_trace=$!
strace -ff -tt -e trace=recvfrom,writev -e signal=none -p "$watch" -o "$work/emulator" 2> /dev/null &
pids+=($!)
emulator_trace=$!
sleep 1
kill -0 "$function_trace" 2> /dev/null && kill -0 "$emulator_trace" 2> /dev/null ||
  { echo "strace could not attach (root, or kernel.yama.ptrace_scope 0, is needed)" >&2; exit 1; }
times=()
for _ in 1 2 3 4 5; do times+=("$(post "$work/event.json")"); done
sleep 0.5
kill "$function_trace" "$emulator_trace" 2> /dev/null || true
wait "$function_trace" "$emulator_trace" 2> /dev/null || true

python3 - "$work" "${times[@]}" <<'EOF'
import glob, re, sys

START = "HTTP/1.1 200 OK\\r\\nlambda-runtime"
CALL = re.compile(r'(\d+):(\d+):([\d.]+) (recvfrom|writev)\((\d+), \[?\{?(?:iov_base=)?"(.{0,40})')
RESULT = re.compile(r"= (\d+)$")

def calls(prefix, name):
    """(ms, fd, first bytes, bytes) of each `name` call that moved data, all threads."""
    out = []
    for path in glob.glob(prefix + ".*"):
        for line in open(path):
            m, r = CALL.match(line), RESULT.search(line.strip())
            if m and r and m.group(4) == name:
                h, mi, s = m.group(1, 2, 3)
                out.append(((int(h) * 3600 + int(mi) * 60 + float(s)) * 1e3, m.group(5), m.group(6), int(r.group(1))))
    return sorted(out)

def spans(prefix, name):
    """Per payload: from the call that starts it (the runtime API's answer to /next) to
    the last call on the same socket before the next HTTP message on it."""
    out, current, fd = [], None, None
    for t, f, data, size in calls(prefix, name):
        if data.startswith(START):
            current, fd = [(t, size)], f
            out.append(current)
        elif current is not None and f == fd:
            if data.startswith(("HTTP/1.1", "POST", "GET")):
                current = None
            else:
                current.append((t, size))
    rows = []
    for c in out:
        times = [t for t, _ in c]
        rows.append((times[-1] - times[0], max((b - a for a, b in zip(times, times[1:])), default=0.0),
                     len(c), c[0][1], sum(s for _, s in c)))
    return rows

function = spans(sys.argv[1] + "/function", "recvfrom")
emulator = spans(sys.argv[1] + "/emulator", "writev")
if len(function) != len(sys.argv) - 2 or len(emulator) != len(sys.argv) - 2:
    sys.exit(f"found {len(function)} payloads read and {len(emulator)} written, for {len(sys.argv) - 2} invocations")
print("                function reads                          emulator writes")
print("invocation  curl ms  span ms  longest wait ms  calls  first bytes  bytes   span ms  longest wait ms  calls  first bytes  bytes")
for i, total in enumerate(sys.argv[2:]):
    f, e = function[i], emulator[i]
    print(f"{i + 1:>10}  {float(total) * 1e3:7.1f}  {f[0]:7.1f}  {f[1]:15.1f}  {f[2]:5}  {f[3]:11}  {f[4]:5}   "
          f"{e[0]:7.1f}  {e[1]:15.1f}  {e[2]:5}  {e[3]:11}  {e[4]:5}")
EOF

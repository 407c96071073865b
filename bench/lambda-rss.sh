#!/usr/bin/env bash
# The Lambda path's memory from one invocation to the next (bench/analysis.md): the
# function behind `cargo lambda watch`, producing to the embedded mock cluster, invoked
# with EVENTS (default 8) of the benchmark's 6,000-record events in turn (16 different
# ones, again from the first after the 16th). Prints after each the time curl saw and
# the function's peak and current resident memory (VmHWM, VmRSS), and at the end the
# median time and the CPU seconds the function spent on the events. VAR=VALUE arguments
# go to the function's environment.
#
#   bench/lambda-rss.sh [EVENTS] [VAR=VALUE ...]
#   bench/lambda-rss.sh --mmaps [VAR=VALUE ...]
#
# --mmaps traces (strace -k) the memory the function maps during one invocation after a
# first one, and prints the KiB per function of the binary that asked for it (glibc maps
# blocks from its mmap threshold up: 128 KiB at first, raised by the blocks freed; set
# GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 to see every large block), then the
# calls per kind and the MiB mapped and unmapped.
#
# The events are the ones bench/replay-ab.py uses (`cdc-relay gen-event`, the
# benchmark's seeds), made in target/bench-data when missing. Needs the release binary
# (built here if missing) and cargo-lambda; --mmaps needs strace with stack traces and
# the right to trace another process. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
port=9396
bin=target/release/cdc-relay
mmaps=""
if [ "${1:-}" = --mmaps ]; then
  mmaps=yes
  events=2
  shift
else
  events="${1:-8}"
  shift || true
fi
watch_env=()
for pair in "$@"; do watch_env+=(--env-var "$pair"); done
[ -x "$bin" ] || cargo build --release --locked --bin cdc-relay
mkdir -p target/bench-data
files=$((events < 16 ? events : 16))
for i in $(seq 0 $((files - 1))); do
  file="target/bench-data/b6000-$i.json"
  [ -s "$file" ] || "$bin" gen-event --records 6000 --seed $((6000000 + i)) --value-bytes 400 -o "$file"
done
# shellcheck source=bench/lambda-watch.sh
. bench/lambda-watch.sh

if [ -n "$mmaps" ]; then
  post target/bench-data/b6000-0.json > /dev/null
  strace -k -f -e trace=mmap,munmap,brk,mremap -e signal=none -p "$function_pid" -o "$work/trace" 2> /dev/null &
  pids+=($!)
  trace=$!
  sleep 1
  kill -0 "$trace" 2> /dev/null || { echo "strace could not attach" >&2; exit 1; }
  post target/bench-data/b6000-1.json > /dev/null
  sleep 0.3
  kill "$trace" 2> /dev/null || true
  wait "$trace" 2> /dev/null || true
  python3 - "$work/trace" <<'PY'
import collections, re, sys

by_function, calls, mapped = collections.Counter(), collections.Counter(), collections.Counter()
size = None
for line in open(sys.argv[1]):
    call = re.match(r"\d+ +(mmap|munmap|brk|mremap)\((.*)", line)
    if call:
        kind, args = call.group(1), call.group(2).split(",")
        calls[kind] += 1
        size = None
        # A call another thread interrupts ends in "<unfinished ...>"; its size is
        # still the second argument.
        number = re.match(r"\s*(\d+)", args[1]) if len(args) > 1 else None
        if kind == "mmap" and args[0] == "NULL" and number:
            size = int(number.group(1))
            mapped["mapped"] += size
        elif kind == "munmap" and number:
            mapped["unmapped"] += int(number.group(1))
        continue
    frame = re.search(r"/cdc-relay\(([^+)]+)", line)
    if size is not None and frame:
        by_function[frame.group(1)] += size
        size = None
for function, total in by_function.most_common():
    print(f"{total // 1024:>8} KiB  {function}")
print(dict(calls), {k: f"{v / 2**20:.1f} MiB" for k, v in mapped.items()})
PY
  exit 0
fi

memory() { awk '/^VmHWM|^VmRSS/ { printf "  %s %.1f MiB", $1, $2 / 1024 }' "/proc/$function_pid/status"; }
# User + system CPU seconds of the function so far (clock ticks in /proc/PID/stat).
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$function_pid/stat"; }
echo "after the warm-up:$(memory)"
before=$(cpu)
times=()
for i in $(seq 0 $((events - 1))); do
  times+=("$(post "target/bench-data/b6000-$((i % files)).json")")
  echo "6,000-record event $i: ${times[-1]} s$(memory)"
done
printf '%s\n' "${times[@]}" | sort -g | awk -v cpu="$(cpu)" -v before="$before" \
  '{ t[NR] = $1 } END { m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2;
     printf "median %.1f ms; the function used %.2f CPU seconds\n", m * 1000, cpu - before }'

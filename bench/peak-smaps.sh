#!/usr/bin/env bash
# What the relay's resident memory is made of at its peak (bench/analysis.md): `cdc-relay
# replay` of two of the benchmark's 6,000-record events against the real broker
# (scripts/broker.sh, started and stopped here), its /proc/PID/smaps copied each time the
# resident total rises (sampled every 5 ms), then the peak's mappings of 200 KiB or more,
# largest first: resident KiB, of them private dirty, the mapping's size, what it maps.
# VAR=VALUE arguments go to the relay's environment (after the routes, so they may
# replace them). Anonymous mappings are printed as such: which is a thread's heap and
# which a large block (the event's bytes) is the reader's inference from their sizes.
#
#   bench/peak-smaps.sh [VAR=VALUE ...]
#
# The events are the ones bench/replay-ab.py uses, made in target/bench-data when
# missing. Needs the release binary (`cargo build --release --locked --bins`). Not run by
# CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/cdc-relay
for i in 0 1; do
  event=target/bench-data/b6000-$i.json
  [ -f "$event" ] || { mkdir -p target/bench-data; "$bin" gen-event --records 6000 \
    --seed $((6000000 + i)) --value-bytes 400 -o "$event"; }
done
peak=$(mktemp)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -f "$peak" "$peak.next"
  scripts/broker.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
broker=$(scripts/broker.sh start bench.orders bench.users bench.payments bench.invoices | tail -1)
env RELAY_ROUTES=bench/routes.toml RUST_LOG=warn "$@" "$bin" replay --brokers "$broker" \
  target/bench-data/b6000-0.json target/bench-data/b6000-1.json >/dev/null &
pid=$!
best=0
while kill -0 "$pid" 2>/dev/null; do
  # The mappings are copied first, then the total read: a copy is kept when the total
  # read after it is the highest so far (the copy is at most one read older).
  cp "/proc/$pid/smaps" "$peak.next" 2>/dev/null || true
  rss=$(awk '/^Rss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
  if [ -n "$rss" ] && [ "$rss" -gt "$best" ] && [ -s "$peak.next" ]; then
    best=$rss
    mv "$peak.next" "$peak"
  fi
  sleep 0.005
done
status=0
wait "$pid" || status=$?
pid=""
rm -f "$peak.next"
[ "$status" = 0 ] || { echo "replay failed (exit $status)" >&2; exit "$status"; }
echo "peak resident: ${best} KiB"
python3 - "$peak" <<'PY'
import re, sys
rows, current = [], None
for line in open(sys.argv[1]):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        current = [0, 0, (int(m.group(2), 16) - int(m.group(1), 16)) // 1024, m.group(3), m.group(4) or "[anonymous]"]
        rows.append(current)
    elif line.startswith("Rss:"):
        current[0] = int(line.split()[1])
    elif line.startswith("Private_Dirty:"):
        current[1] = int(line.split()[1])
for rss, dirty, size, perms, name in sorted(rows, key=lambda r: -r[0]):
    if rss >= 200:
        print(f"{rss:8} KiB resident {dirty:8} dirty {size:8} KiB mapped  {perms}  {name}")
PY
rm -f "$peak"

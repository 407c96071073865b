#!/usr/bin/env bash
# Counts the work decode + transform does per record, at a past revision and now, on the
# same generated 6,000-record batch (crates/core/examples/profile.rs under callgrind:
# instructions are deterministic, unlike times on a shared 2-core machine).
#
#   bench/core-ab.sh REV [ROUTES...]   default routes: bench/routes.toml routes.toml
#
# Each routes file is profiled as it is in the working tree, at both revisions (the past
# revision's profile example compiles in its routes.toml, so the file is copied there).
# Routes using options REV does not know are skipped for REV. Needs valgrind.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rev="${1:?usage: bench/core-ab.sh REV [ROUTES...]}"
shift
routes=("$@")
[ ${#routes[@]} -gt 0 ] || routes=(bench/routes.toml routes.toml)
rounds=1
records=6000
old="$root/target/core-ab-worktree"
git worktree remove --force "$old" 2>/dev/null || true
git worktree add -q --detach "$old" "$rev"
trap 'git worktree remove --force "$old" 2>/dev/null || true' EXIT

count() { # binary [routes]: instructions per record in cdc_relay_core::process
  local out
  out="$(mktemp)"
  valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='cdc_relay_core::process' \
    "$@" >/dev/null 2>&1 || { rm -f "$out"; return 1; }
  local total
  total="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
  rm -f "$out"
  echo $(( total / (records * rounds) ))
}

cargo build -q --release -p cdc-relay-core --example profile
printf '%-22s %14s %14s %8s\n' routes "$rev" now ratio
for file in "${routes[@]}"; do
  cp "$file" "$old/routes.toml"
  then=$( (cd "$old" && CARGO_TARGET_DIR="$root/target/core-ab" cargo build -q --release -p cdc-relay-core --example profile 2>/dev/null) \
    && count "$root/target/core-ab/release/examples/profile" "$rounds" || echo "")
  now=$(count "$root/target/release/examples/profile" "$rounds" "$file")
  if [ -n "$then" ]; then
    printf '%-22s %14s %14s %8s\n' "$file" "$then" "$now" "$(python3 -c "print(f'{$now/$then:.3f}')")"
  else
    printf '%-22s %14s %14s %8s\n' "$file" "(not valid)" "$now" "-"
  fi
  git -C "$old" checkout -q -- routes.toml
done

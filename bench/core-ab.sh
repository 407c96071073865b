#!/usr/bin/env bash
# Counts the work decode + transform does per record, at a past revision and now, on the
# same generated 6,000-record batch (crates/core/examples/profile.rs under callgrind:
# instructions are deterministic, unlike times on a shared 2-core machine).
#
# Two counts per revision: `process` is decode + transform of each record (what every
# revision's profile example runs); `event` adds parsing the MSK event from its bytes and
# dropping its records (the example's `pass`, from the revision that parses events from
# bytes on; "-" before it).
#
# A third row, `wide`, counts decode + transform of updates whose rows have 40 columns in
# table order, not by name (crates/core/examples/wide.rs, copied into the past revision
# when it lacks it; "(not valid)" for revisions before 2830483, whose core names the
# position type elsewhere), with the route it names: the column selection's share grows
# with the columns, and the generated batch has 7, by name.
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
wide_records=4000 # RECORDS in crates/core/examples/wide.rs
old="$root/target/core-ab-worktree"
git worktree remove --force "$old" 2>/dev/null || true
git worktree add -q --detach "$old" "$rev"
trap 'git worktree remove --force "$old" 2>/dev/null || true' EXIT

count() { # function binary [routes]: instructions per record in function
  local out function="$1" per=$((records * rounds))
  shift
  # The wide example runs its own records, once.
  [ "$function" = 'wide::pass' ] && per="$wide_records"
  out="$(mktemp)"
  valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="$function" \
    "$@" >/dev/null 2>&1 || { rm -f "$out"; return 1; }
  local total
  total="$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
  rm -f "$out"
  [[ "$total" =~ ^[0-9]+$ && "$total" -gt 0 ]] || { echo "-"; return 0; }
  echo $(( total / per ))
}

ratio() { # then now
  if ! [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]]; then echo "-"; else python3 -c "print(f'{$2/$1:.3f}')"; fi
}

cargo build -q --release -p cdc-relay-core --example profile
now_rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+changes')"
echo "# bench/core-ab.sh $rev: instructions per record, $rev against $now_rev, $(date -u +%FT%TZ)"
printf '%-22s %-8s %14s %14s %8s\n' routes count "$rev" now ratio
for file in "${routes[@]}"; do
  cp "$file" "$old/routes.toml"
  built=yes
  (cd "$old" && CARGO_TARGET_DIR="$root/target/core-ab" cargo build -q --release -p cdc-relay-core --example profile 2>/dev/null) || built=no
  for what in process event; do
    function='cdc_relay_core::process'
    [ "$what" = event ] && function='profile::pass'
    then="(not valid)"
    if [ "$built" = yes ]; then
      then=$(count "$function" "$root/target/core-ab/release/examples/profile" "$rounds" || echo "(not valid)")
    fi
    now=$(count "$function" "$root/target/release/examples/profile" "$rounds" "$file" || echo "(failed)")
    printf '%-22s %-8s %14s %14s %8s\n' "$file" "$what" "$then" "$now" "$(ratio "$then" "$now")"
  done
  git -C "$old" checkout -q -- routes.toml
done
if [ ! -e "$old/crates/core/examples/wide.rs" ]; then
  mkdir -p "$old/crates/core/examples" && cp crates/core/examples/wide.rs "$old/crates/core/examples/wide.rs" || true
fi
cargo build -q --release -p cdc-relay-core --example wide
then="(not valid)"
if (cd "$old" && CARGO_TARGET_DIR="$root/target/core-ab" cargo build -q --release -p cdc-relay-core --example wide 2>/dev/null); then
  then=$(count 'wide::pass' "$root/target/core-ab/release/examples/wide" 40 || echo "(not valid)")
fi
now=$(count 'wide::pass' "$root/target/release/examples/wide" 40 || echo "(failed)")
printf '%-22s %-8s %14s %14s %8s\n' "(its own route)" wide "$then" "$now" "$(ratio "$then" "$now")"

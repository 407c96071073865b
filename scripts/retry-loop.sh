#!/usr/bin/env bash
# The retry-loop harness at full size: every scenario of tests/retry_loop.rs over a
# 6,000-record event (RETRY_LOOP_RECORDS to change it), printing the per-scenario table
# that docs/reliability.md quotes.
set -euo pipefail
cd "$(dirname "$0")/.."
RETRY_LOOP_RECORDS="${RETRY_LOOP_RECORDS:-6000}" \
  cargo test --release --locked --test tests retry_loop -- --nocapture --test-threads 1 2>&1 |
  grep -E '^(\||retry loop|test result)'

#!/usr/bin/env bash
# Runs the whole comparison: builds every contender, starts the real broker, generates
# the inputs, runs the sweep interleaved, writes bench/results/latest.json,
# BENCHMARKS.md and bench/results/latency.png.
#
#   bench/run.sh            the full sweep (several minutes)
#   bench/run.sh --smoke    1,000 records, one run each: proves the harness works
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore confluent-kafka==2.16.1 matplotlib
command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/Shopify/sarama ] || {
  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq golang-go golang-github-shopify-sarama-dev >/dev/null; }
command -v node >/dev/null || { apt-get update -qq; apt-get install -y -qq nodejs npm >/dev/null; }
(cd bench/node && npm ci --no-audit --no-fund --silent)
(cd bench/go && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" go build -o "$root/target/relaybench" relaybench)
cargo build --release --locked --workspace --bins --examples
exec python3 bench/bench.py "$@"

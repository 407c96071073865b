# Sourced by the bench/lambda-*.sh scripts: the function behind `cargo lambda watch` on
# port $port, producing to the embedded mock cluster (`cdc-relay mock-cluster`) with the
# benchmark's routes, warmed with one 1-record invocation. Sets $work (a temporary
# folder, removed at exit with every process started here), $url (the invoke endpoint),
# post FILE (POSTs an event, prints curl's time), $watch (the emulator) and
# $function_pid. Expects $port, $bin (the release binary) and the array watch_env
# (more --env-var arguments for the function, possibly empty).
if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
  echo "port $port is taken (an emulator left by an earlier run?)" >&2
  exit 1
fi
work=$(mktemp -d)
pids=()
groups=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  for group in "${groups[@]}"; do kill -- "-$group" 2> /dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The mock cluster runs until its standard input ends.
mkfifo "$work/in"
sleep 100000 > "$work/in" &
pids+=($!)
"$bin" mock-cluster < "$work/in" > "$work/mock.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/mock.out" ] && break; sleep 0.1; done
brokers=$(head -n 1 "$work/mock.out")
[ -n "$brokers" ] || { echo "the mock cluster did not start" >&2; exit 1; }
"$bin" gen-event --records 1 > "$work/warm.json"

# setsid runs it in a session of its own (no fork here: this script's background jobs
# lead no process group), and cargo hands over to cargo-lambda: $! is the emulator.
setsid cargo lambda watch --release --invoke-port "$port" --ignore-changes \
  --env-var "RELAY_BROKERS=$brokers" --env-var RELAY_PARTIAL_BATCH=true "${watch_env[@]}" \
  --env-var "RELAY_ROUTES=$PWD/bench/routes.toml" --env-var RUST_LOG=warn > "$work/watch.log" 2>&1 &
watch=$!
groups+=("$watch")
url="http://127.0.0.1:$port/2015-03-31/functions/cdc-relay/invocations"
post() { curl -s -o /dev/null -w '%{time_total}' -X POST --data-binary "@$1" "$url"; }
ready=""
for _ in $(seq 600); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary "@$work/warm.json" "$url" || true)" = 200 ]; then
    ready=yes
    break
  fi
  kill -0 "$watch" 2> /dev/null || break
  sleep 0.5
done
[ -n "$ready" ] || { echo "cargo lambda watch never answered:" >&2; tail -n 20 "$work/watch.log" >&2; exit 1; }
post "$work/warm.json" > /dev/null

# The function: this binary, with the emulator among its ancestors (it runs in a
# session of its own).
exe=$(realpath "$bin")
function_pid=""
for pid in $(pgrep -f "cdc-relay"); do
  [ "$(readlink "/proc/$pid/exe" 2> /dev/null)" = "$exe" ] || continue
  up=$pid
  while [ -n "$up" ] && [ "$up" -gt 1 ]; do
    if [ "$up" = "$watch" ]; then function_pid=$pid; break; fi
    up=$(awk '{print $4}' "/proc/$up/stat" 2> /dev/null || true)
  done
  [ -z "$function_pid" ] || break
done
[ -n "$function_pid" ] || { echo "the function's process was not found under the emulator" >&2; exit 1; }
groups+=("$function_pid")
pids+=("$function_pid")


#!/usr/bin/env bash
# Logging overhead: router throughput with SQLite request logging on vs off, against one mock
# engine, in the same run, on loopback only. Rounds alternate on/off so drift hits both.
#
#   load/bench/logging_overhead.sh [SECONDS_PER_RUN=10] [ROUNDS=3]
#   env: CONNS (default 32), ROUTER_WORKERS (1), MOCK_WORKERS (1), SKIP_BUILD=1
#
# Needs wrk. Prints one line per run and a summary with the on/off throughput ratio
# (medians), plus the row count the log holds after the "on" runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-10}
ROUNDS=${2:-3}
CONNS=${CONNS:-32}
ROUTER_WORKERS=${ROUTER_WORKERS:-1}
MOCK_WORKERS=${MOCK_WORKERS:-1}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --bins >/dev/null
BIN=target/release
WORK=$(mktemp -d)
cleanup() {
  for f in "$WORK"/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Start a process whose first stdout line is "… listening on http://ADDR"; echo the URL.
# Its pid goes to $WORK/NAME.pid (this runs in a command substitution's subshell).
start() {
  local out="$WORK/$1.out"; local pidfile="$WORK/$1.pid"; shift
  "$@" >"$out" 2>"$out.err" &
  echo $! >"$pidfile"
  for _ in $(seq 1 200); do
    url=$(grep -o 'http://[0-9.:]*' "$out" 2>/dev/null | head -1 || true)
    [ -n "$url" ] && { echo "$url"; return; }
    sleep 0.05
  done
  echo "could not start $*" >&2; cat "$out.err" >&2; exit 1
}

MOCK=$(start mock "$BIN/switchyard-mock" --port 0 --workers "$MOCK_WORKERS" --chunks 8 \
  --settings-json '{"record_requests":false}')
: >"$WORK/none.yaml"
cat >"$WORK/models.yaml" <<YAML
models:
  - id: bench
    pricing: {prompt: "0.000001", completion: "0.000002"}
    route:
      - kind: vllm
        base_url: "$MOCK"
YAML

run() { # $1 = on|off → prints requests/s
  local mode=$1 enabled=true
  [ "$mode" = off ] && enabled=false
  local url
  url=$(REQUEST_LOG_ENABLED=$enabled SQLITE_DB_PATH="$WORK/logs.db" \
    WORKERS=$ROUTER_WORKERS RUST_LOG=warn HEALTH_CHECK_INTERVAL_SECS=0.2 \
    start "router-$mode" "$BIN/switchyard" serve --config "$WORK/models.yaml" \
    --routing "$WORK/none.yaml" --host 127.0.0.1 --port 0)
  local pid
  pid=$(cat "$WORK/router-$mode.pid")
  for _ in $(seq 1 100); do
    curl -fs "$url/health" | grep -q '"ready":1' && break
    sleep 0.05
  done
  local rps
  local out
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s load/bench/chat.lua "$url/v1/chat/completions")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  [ "$mode" = on ] && awk '/requests in/ {print $1}' <<<"$out" >>"$WORK/sent-on"
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$WORK/router-$mode.pid"
  echo "$rps"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

ON=(); OFF=()
for r in $(seq 1 "$ROUNDS"); do
  on=$(run on); off=$(run off)
  ON+=("$on"); OFF+=("$off")
  printf 'round %d: logging on %8.1f req/s   off %8.1f req/s\n' "$r" "$on" "$off"
done
mon=$(printf '%s\n' "${ON[@]}" | median)
moff=$(printf '%s\n' "${OFF[@]}" | median)
rows=$(SQLITE_DB_PATH="$WORK/logs.db" "$BIN/switchyard" usage --by none --json \
  | awk -F': ' '/"requests"/ {gsub(",","",$2); print $2}')
echo "median: on ${mon} req/s, off ${moff} req/s, ratio on/off $(awk -v a="$mon" -v b="$moff" 'BEGIN {printf "%.3f", a/b}')"
sent=$(awk '{s+=$1} END {print s+0}' "$WORK/sent-on")
spilled=$( (cat "$WORK"/logs.db.spill.jsonl* 2>/dev/null || true) | wc -l)
echo "requests answered during the 'on' runs (wrk): ${sent}"
echo "rows logged during the 'on' runs: ${rows:-0} in the database + ${spilled} in the spill file (${ROUNDS} x ${DURATION}s, ${CONNS} connections, router workers ${ROUTER_WORKERS})"

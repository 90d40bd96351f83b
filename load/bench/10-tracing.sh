#!/usr/bin/env bash
# Bench 10 — the cost of OpenTelemetry traces (docs/operations.md#tracing): router throughput
# with tracing off, on at sampler 1.0 and on at 0.01, against one mock engine, on loopback.
# The collector is a sink that accepts OTLP/HTTP and discards it (python3). Rounds alternate
# off / 1.0 / 0.01 so drift hits every mode; the summary gives medians and ratios to "off".
#
# Usage: load/bench/10-tracing.sh [--duration SECS] [--smoke]
# Env: ROUNDS (3), CONNS (32), ROUTER_WORKERS (1), BENCH_PROFILE (release | debug),
#      SKIP_BUILD=1, RESULTS=FILE.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-32}"
ensure_tool wrk wrk || { log "wrk is required"; exit 2; }
build_release

# The OTLP sink: 200 to every POST, body read and dropped.
SINK_PORT="$(free_port)"
python3 - "$SINK_PORT" >"$WORK/sink.out" 2>&1 <<'PY' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
PIDS+=("$!")
SINK_URL="http://127.0.0.1:$SINK_PORT"

"$BIN/switchyard-mock" --host 127.0.0.1 --port 0 --workers 1 \
    --settings-json '{"record_requests":false}' >"$WORK/mock.out" 2>"$WORK/mock.err" &
PIDS+=("$!")
MOCK_URL="$(wait_line "$WORK/mock.out" "listening on" 60 | grep -o 'http://[0-9.:]*')"
cat >"$WORK/models.yaml" <<YAML
models:
  - id: bench
    route:
      - kind: vllm
        base_url: "$MOCK_URL"
YAML

# run MODE: requests/s of one wrk run against a fresh router in MODE (off | 1.0 | 0.01).
run() {
    local mode="$1" env=()
    if [ "$mode" != off ]; then
        env=(OTEL_EXPORTER_OTLP_ENDPOINT="$SINK_URL" OTEL_TRACES_SAMPLER=parentbased_traceidratio
            OTEL_TRACES_SAMPLER_ARG="$mode" OTEL_SERVICE_NAME=bench)
    fi
    ROUTER_WORKERS="${ROUTER_WORKERS:-1}" start_router "router-$mode-$RANDOM" "$WORK/models.yaml" \
        REQUEST_LOG_ENABLED=false "${env[@]}"
    wait_ready "$ROUTER_URL" 30
    wrk -t1 -c"$CONNS" -d1s -s "$ROOT/load/bench/chat.lua" "$ROUTER_URL/v1/chat/completions" >/dev/null
    local out
    out="$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$ROOT/load/bench/chat.lua" "$ROUTER_URL/v1/chat/completions")"
    kill -TERM "$ROUTER_PID"
    while kill -0 "$ROUTER_PID" 2>/dev/null; do sleep 0.05; done
    awk '/Requests\/sec/ {print $2}' <<<"$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

MODES=(off 1.0 0.01)
declare -A SEEN
for r in $(seq 1 "$ROUNDS"); do
    line="round $r:"
    for mode in "${MODES[@]}"; do
        rps="$(run "$mode")"
        SEEN[$mode]+="$rps "
        line+=" $mode ${rps} req/s"
    done
    log "$line"
done
med() { tr ' ' '\n' <<<"${SEEN[$1]}" | grep . | median; }
OFF="$(med off)"
{
    echo "### Bench 10 — tracing cost (OTLP/HTTP to a discarding sink)"
    echo
    echo "Measured on $(machine_line); $BENCH_PROFILE binaries. wrk -c$CONNS, ${DURATION}s per run, ${ROUNDS} alternated round(s), router WORKERS=${ROUTER_WORKERS:-1}, request log off."
    echo
    echo "| tracing | req/s (median) | rounds | ratio to off |"
    echo "|---|---|---|---|"
    for mode in "${MODES[@]}"; do
        m="$(med "$mode")"
        echo "| $mode | $m | ${SEEN[$mode]}| $(awk -v a="$m" -v b="$OFF" 'BEGIN{printf "%.3f", a/b}') |"
    done
} | emit

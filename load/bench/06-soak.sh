#!/usr/bin/env bash
# Bench 6 — soak: chat JSON (with a share of streams) through the router at half the measured
# peak, open loop, for N minutes. Reports RSS growth (end vs after the first tenth of the run)
# and the error count. Targets: < 5 % RSS growth, zero errors.
#
# Usage: load/bench/06-soak.sh [--minutes N (default 10)] [--smoke]
# The mock answers at once (CHUNK_MS=0), so the peak is the router's, not the mock's latency.
# Env: PEAK_RPS (skip the peak measurement), STREAM_SHARE (chat:stream weights, "9:1"),
#      CHUNK_MS (0), MAX_IN_FLIGHT (1024: arrivals beyond it wait in the generator, their
#      latency still counted from the schedule, instead of opening ever more connections until
#      descriptors run out), ROUTER_WORKERS (2), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
MINUTES=10
STREAM_SHARE="${STREAM_SHARE:-9:1}"
parse_common "$@"
[ "$SMOKE" = 1 ] && MINUTES=0.2
SECS="$(awk -v m="$MINUTES" 'BEGIN{printf "%d", m*60}')"
[ "$SECS" -ge 5 ] || SECS=5
MAX_SECS=$((6 * 3600))
[ "$SECS" -le "$MAX_SECS" ] || { echo "--minutes is capped at 360" >&2; exit 2; }

build_release
raise_fd_limit 65536
start_fleet mock --workers 1 --chunks 8 --chunk-interval-ms "${CHUNK_MS:-0}"
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"
start_router router "$WORK/models.yaml"
wait_ready "$ROUTER_URL" 30

if [ -z "${PEAK_RPS:-}" ]; then
    f="$(load peak -t "$ROUTER_URL" -s chat -m bench -c 32 -d "$([ "$SMOKE" = 1 ] && echo 2 || echo 10)")"
    PEAK_RPS="$(j "$f" '"%.0f" % r["totals"]["ok_rps"]')"
fi
RATE="$(awk -v p="$PEAK_RPS" 'BEGIN{printf "%.0f", p/2}')"
[ "$RATE" -ge 1 ] || RATE=1
log "peak $PEAK_RPS req/s → soak at $RATE req/s for ${SECS}s"

cat >"$WORK/soak.yaml" <<EOF
scenarios:
  - {kind: chat, model: bench, weight: ${STREAM_SHARE%%:*}}
  - {kind: chat_stream, model: bench, weight: ${STREAM_SHARE##*:}}
EOF
"$LOAD" run -q --threads "$GEN_THREADS" -f "$WORK/soak.yaml" -t "$ROUTER_URL" --rate "$RATE" -d "${SECS}s" \
    --max-in-flight "${MAX_IN_FLIGHT:-1024}" \
    --json "$WORK/soak.json" --html "$WORK/soak.html" --label "soak ${MINUTES} min" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")

# RSS every second; the baseline is the reading after a tenth of the run (warm pools, caches).
WARM=$((SECS / 10)); [ "$WARM" -ge 2 ] || WARM=2
: >"$WORK/rss.txt"
for s in $(seq 1 "$SECS"); do
    sleep 1
    echo "$s $(rss_kib "$ROUTER_PID")" >>"$WORK/rss.txt"
done
wait "$LOAD_PID" || true
# After the drain: what stays when the load is gone (a leak stays, a backlog does not).
sleep 2
AFTER="$(rss_kib "$ROUTER_PID")"
BASE="$(awk -v w="$WARM" '$1==w{print $2}' "$WORK/rss.txt")"
END="$(tail -n1 "$WORK/rss.txt" | cut -d' ' -f2)"
PEAK="$(sort -n -k2 "$WORK/rss.txt" | tail -n1 | cut -d' ' -f2)"
GROWTH="$(awk -v a="$END" -v b="$BASE" 'BEGIN{ if (b>0) printf "%.1f", (a/b-1)*100; else print "n/a" }')"
ERR_KINDS="$(j "$WORK/soak.json" '", ".join("%s %s×%d" % (s["name"], k, v) for s in r["scenarios"] for k, v in s["errors_by_kind"].items()) or "none"')"
read -r REQS ERRS RPS P50 P99 < <(j "$WORK/soak.json" '"%s %s %.1f %s %s" % (r["totals"]["requests"], r["totals"]["errors"], r["totals"]["throughput_rps"], r["scenarios"][0]["latency_us"]["p50"], r["scenarios"][0]["latency_us"]["p99"])')
mkdir -p "$ROOT/load/bench/out"
cp "$WORK/soak.html" "$ROOT/load/bench/out/soak-latest.html"

{
    echo "### Bench 6 — soak (${MINUTES} min at half of peak)"
    echo
    echo "Measured on $(machine_line). Peak (c=32 chat) ${PEAK_RPS} req/s; soak open loop at ${RATE} req/s, chat:stream = ${STREAM_SHARE}; HTML report: load/bench/out/soak-latest.html."
    echo
    echo "| requests | errors | req/s done | chat p50 / p99 µs (from schedule) | RSS at ${WARM}s MiB | RSS end MiB | RSS peak MiB | RSS idle after MiB | growth | target | verdict |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    echo "| $REQS | $ERRS | $RPS | $P50 / $P99 | $(mib "$BASE") | $(mib "$END") | $(mib "$PEAK") | $(mib "$AFTER") | ${GROWTH}% | < 5 % growth, 0 errors | **$(awk -v g="$GROWTH" -v e="$ERRS" 'BEGIN{print (g<5 && e==0)?"met":"missed"}')** |"
    echo
    echo "Errors by kind: $ERR_KINDS."
    echo
    echo "req/s done below the scheduled rate, or a p99 far above p50, means the machine could not carry the rate: RSS then tracks the backlog of open requests, not a leak (compare 'RSS idle after')."
} | emit

#!/usr/bin/env bash
# Bench 5 — scale of config: 10,000 models over 1,000 endpoints. Measures start-up time (until
# /health answers, and until every endpoint is ready), GET /v1/models latency, and chat routing
# throughput at c=32 against the same router shape with a 1-model config.
# Target: throughput within 10 % of the 1-model config.
#
# "1,000 endpoints" = 1,000 distinct endpoint identities, i.e. 1,000 BackendActors, each probing
# its own base URL. PORTS mock servers (one process, `switchyard-load fleet`) serve them; with
# PORTS < ENDPOINTS the extra endpoints differ by a placeholder api_key (still a distinct actor
# and probe, sharing a server). PORTS=ENDPOINTS gives one server per endpoint.
#
# Usage: load/bench/05-scale.sh [--duration SECS] [--smoke]
# Probes run at the router's default interval (10 s): 1,000 endpoints then cost ~100 probes/s.
# Env: MODELS (10000), ENDPOINTS (1000), PORTS (ENDPOINTS), CONCURRENCY (32),
#      HEALTH_INTERVAL (10), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
export HEALTH_INTERVAL="${HEALTH_INTERVAL:-10}"
parse_common "$@"
MODELS="${MODELS:-10000}"
ENDPOINTS="${ENDPOINTS:-1000}"
PORTS="${PORTS:-$ENDPOINTS}"
CONCURRENCY="${CONCURRENCY:-32}"

build_release
raise_fd_limit 65536
log "starting $PORTS mock servers"
start_fleet fleet --count "$PORTS" --workers 1
"$LOAD" gen-config --urls-file "$WORK/fleet.urls" --models "$MODELS" --endpoints "$ENDPOINTS" \
    --model-prefix bench --out "$WORK/big.yaml"
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/one.yaml"

# startup NAME YAML: sets HEALTH_MS and READY_MS since spawn (probes run at start).
startup() {
    local name="$1" yaml="$2" t0 t1 t2
    t0="$(date +%s%N)"
    start_router "$name" "$yaml"
    until curl -s -o /dev/null --max-time 1 "$ROUTER_URL/health"; do sleep 0.01; done
    t1="$(date +%s%N)"
    wait_ready "$ROUTER_URL" 300
    t2="$(date +%s%N)"
    HEALTH_MS=$(((t1 - t0) / 1000000))
    READY_MS=$(((t2 - t0) / 1000000))
}

# throughput NAME URL ARGS...: sets RPS P50 ERR (warm-up second first).
throughput() {
    local name="$1" url="$2" f
    shift 2
    load "warm-$name" -t "$url" -s chat -c "$CONCURRENCY" -d 1 "$@" >/dev/null
    f="$(load "$name" -t "$url" -s chat -c "$CONCURRENCY" -d "$DURATION" "$@")"
    read -r RPS P50 ERR < <(j "$f" '"%s %s %s" % (r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"], r["totals"]["errors"])')
}

# Direct baselines: one mock, and every mock port in turn (what spreading costs the fleet
# itself, with no router in the way).
throughput direct-one "$FLEET_URL" -m mock-model
DONE_RPS=$RPS DONE_P50=$P50
throughput direct-all "$FLEET_URL" -m mock-model --targets-file "$WORK/fleet.urls"
DALL_RPS=$RPS DALL_P50=$P50

startup one "$WORK/one.yaml"
ONE_HEALTH=$HEALTH_MS ONE_READY=$READY_MS
ONE_IDLE="$(rss_kib "$ROUTER_PID")"
throughput one "$ROUTER_URL" -m bench
ONE_RPS=$RPS ONE_P50=$P50 ONE_ERR=$ERR
ONE_RSS="$(rss_kib "$ROUTER_PID")"
kill -TERM "$ROUTER_PID"; wait "$ROUTER_PID" 2>/dev/null || true
log "1 model: ready in ${ONE_READY} ms, $ONE_RPS req/s"

startup big "$WORK/big.yaml"
BIG_HEALTH=$HEALTH_MS BIG_READY=$READY_MS
BIG_IDLE="$(rss_kib "$ROUTER_PID")"
log "$MODELS models / $ENDPOINTS endpoints: /health in ${BIG_HEALTH} ms, all ready in ${BIG_READY} ms"
f="$(load models-list -t "$ROUTER_URL" -s get -c 1 -d "$DURATION")"
read -r LIST_P50 LIST_P99 LIST_BYTES < <(j "$f" '"%s %s %s" % (r["scenarios"][0]["latency_us"]["p50"], r["scenarios"][0]["latency_us"]["p99"], r["scenarios"][0]["bytes_in"]//max(1,r["scenarios"][0]["requests"]))')
throughput big-one "$ROUTER_URL" -m bench-00000
SAME_RPS=$RPS SAME_P50=$P50 SAME_ERR=$ERR
BIG_RSS1="$(rss_kib "$ROUTER_PID")"
throughput big-all "$ROUTER_URL" -m bench --model-pool "$MODELS"
ALL_RPS=$RPS ALL_P50=$P50 ALL_ERR=$ERR
BIG_RSS="$(rss_kib "$ROUTER_PID")"

pct() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%+.1f%%", (a/b-1)*100; else print "n/a" }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN{ print (b>0 && a/b>=0.9)?"met":"missed" }'; }
{
    echo "### Bench 5 — scale of config ($MODELS models, $ENDPOINTS endpoints on $PORTS mock ports)"
    echo
    echo "Measured on $(machine_line). Chat JSON at c=$CONCURRENCY, ${DURATION}s per run; router WORKERS=${ROUTER_WORKERS:-2}; probe interval ${HEALTH_INTERVAL}s."
    echo
    echo "| config | /health answers | all endpoints ready | RSS ready MiB | RSS after one-model run MiB | RSS after all-models run MiB |"
    echo "|---|---|---|---|---|---|"
    echo "| 1 model, 1 endpoint | ${ONE_HEALTH} ms | ${ONE_READY} ms | $(mib "$ONE_IDLE") | $(mib "$ONE_RSS") | – |"
    echo "| $MODELS models, $ENDPOINTS endpoints | ${BIG_HEALTH} ms | ${BIG_READY} ms | $(mib "$BIG_IDLE") | $(mib "$BIG_RSS1") | $(mib "$BIG_RSS") |"
    echo
    echo "The one-model column follows the \`/v1/models\` runs (answers of several MB each); the all-models run also opens upstream connections to every endpoint from each router worker."
    echo
    echo "\`GET /v1/models\` with $MODELS models: p50 ${LIST_P50} µs, p99 ${LIST_P99} µs, ${LIST_BYTES} bytes."
    echo
    echo "| routing | req/s | p50 µs | errors | vs 1-model | target (within 10 %) |"
    echo "|---|---|---|---|---|---|"
    printf '| direct, one mock port | %.0f | %s | 0 | – | – |\n' "$DONE_RPS" "$DONE_P50"
    printf '| direct, all %s ports in turn | %.0f | %s | 0 | – | – |\n' "$PORTS" "$DALL_RPS" "$DALL_P50"
    printf '| 1-model config | %.0f | %s | %s | – | – |\n' "$ONE_RPS" "$ONE_P50" "$ONE_ERR"
    printf '| big config, one model | %.0f | %s | %s | %s | **%s** |\n' "$SAME_RPS" "$SAME_P50" "$SAME_ERR" "$(pct "$SAME_RPS" "$ONE_RPS")" "$(verdict "$SAME_RPS" "$ONE_RPS")"
    printf '| big config, all %s models in turn | %.0f | %s | %s | %s | **%s** |\n' "$MODELS" "$ALL_RPS" "$ALL_P50" "$ALL_ERR" "$(pct "$ALL_RPS" "$ONE_RPS")" "$(verdict "$ALL_RPS" "$ONE_RPS")"
    echo
    echo "Router ÷ direct with requests spread over every endpoint: $(awk -v a="$ALL_RPS" -v b="$DALL_RPS" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'); with one endpoint: $(awk -v a="$ONE_RPS" -v b="$DONE_RPS" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }')."
} | emit

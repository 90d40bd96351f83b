#!/usr/bin/env bash
# Bench 4 — request logging on vs off: chat JSON throughput at concurrency 32 through the router,
# once with durable request logging on and once off, in one run. Target: on ≥ 0.9 × off.
#
# The logging switch belongs to issue 4. Until it lands, LOG_ON_ENV / LOG_OFF_ENV are
# PLACEHOLDERS: set them to the real knob, e.g.
#   LOG_ON_ENV="USE_SQLITE_LOG=true"  LOG_OFF_ENV="REQUEST_LOG=off"  load/bench/04-logging.sh
# A build without issue 4 (no `switchyard logs` subcommand) is reported as "not available on
# this build"; the two runs still happen, so the script is proven end to end.
#
# Usage: load/bench/04-logging.sh [--duration SECS] [--smoke]
# Env: LOG_ON_ENV, LOG_OFF_ENV, CONCURRENCY (32), ROUNDS (1), ROUTER_WORKERS (2), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
LOG_ON_ENV="${LOG_ON_ENV:-SWITCHYARD_REQUEST_LOG=on}"
LOG_OFF_ENV="${LOG_OFF_ENV:-SWITCHYARD_REQUEST_LOG=off}"
CONCURRENCY="${CONCURRENCY:-32}"
ROUNDS="${ROUNDS:-1}"

build_release
raise_fd_limit 16384
AVAILABLE=1
if ! "$BIN/switchyard" logs --help >/dev/null 2>&1; then
    AVAILABLE=0
    log "this build has no request-log switch (issue 4): running the placeholder toggle anyway"
fi
start_fleet mock --workers 1
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"

# run_with NAME ENV: start a router with ENV, measure, stop it; sets RESULT="rps p50 errors"
# (median round). Not run in a subshell, so the exit trap still knows the router's PID.
run_with() {
    local name="$1" envset="$2" r f rows=()
    start_router "$name" "$WORK/models.yaml" $envset
    wait_ready "$ROUTER_URL" 30
    load "warm-$name" -t "$ROUTER_URL" -s chat -m bench -c "$CONCURRENCY" -d 1 >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        f="$(load "$name-$r" -t "$ROUTER_URL" -s chat -m bench -c "$CONCURRENCY" -d "$DURATION")"
        rows+=("$(j "$f" '"%s %s %s" % (r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"], r["totals"]["errors"])')")
    done
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
    RESULT="$(printf '%s\n' "${rows[@]}" | sort -n -k1 | awk -v n="${#rows[@]}" 'NR==int((n+1)/2)')"
}

run_with log-off "$LOG_OFF_ENV"
read -r OFF_RPS OFF_P50 OFF_ERR <<<"$RESULT"
run_with log-on "$LOG_ON_ENV"
read -r ON_RPS ON_P50 ON_ERR <<<"$RESULT"
RATIO="$(awk -v a="$ON_RPS" -v b="$OFF_RPS" 'BEGIN{ if (b>0) printf "%.3f", a/b; else print "n/a" }')"
if [ "$AVAILABLE" = 1 ]; then
    VERDICT="$(awk -v r="$RATIO" 'BEGIN{print (r>=0.9)?"met":"missed"}')"
else
    VERDICT="not available on this build (placeholder toggle; both runs identical in effect)"
fi

{
    echo "### Bench 4 — logging on vs off"
    echo
    echo "Preliminary unless stated otherwise; $(machine_line). Chat JSON, c=$CONCURRENCY, ${DURATION}s per run, $ROUNDS round(s). On: \`$LOG_ON_ENV\`; off: \`$LOG_OFF_ENV\`."
    echo
    echo "| logging | req/s | p50 µs | errors |"
    echo "|---|---|---|---|"
    printf '| off | %.0f | %s | %s |\n' "$OFF_RPS" "$OFF_P50" "$OFF_ERR"
    printf '| on | %.0f | %s | %s |\n' "$ON_RPS" "$ON_P50" "$ON_ERR"
    echo
    echo "- on ÷ off: $RATIO (target ≥ 0.9): **$VERDICT**"
} | emit

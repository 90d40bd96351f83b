#!/usr/bin/env bash
# Bench 4 — request logging on vs off: chat JSON throughput at concurrency 32 through the router,
# once with durable request logging on and once off, in one run. Target: on ≥ 0.9 × off.
#
# The switch is `REQUEST_LOG_ENABLED` (SQLite `api_logs` rows; metrics are kept either way).
# Each round starts a fresh router with logging off, then one with it on, so machine drift hits
# both sides; the medians are compared. After each "on" run the rows in `api_logs` (plus lines in
# the spill file) are counted against the requests answered: nothing may be lost.
#
# Usage: load/bench/04-logging.sh [--duration SECS] [--smoke]
# Env: LOG_ON_ENV (REQUEST_LOG_ENABLED=true), LOG_OFF_ENV (REQUEST_LOG_ENABLED=false),
#      CONCURRENCY (32), ROUNDS (3), ROUTER_WORKERS (2), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
LOG_ON_ENV="${LOG_ON_ENV:-REQUEST_LOG_ENABLED=true}"
LOG_OFF_ENV="${LOG_OFF_ENV:-REQUEST_LOG_ENABLED=false}"
CONCURRENCY="${CONCURRENCY:-32}"
ROUNDS="${ROUNDS:-3}"

build_release
raise_fd_limit 16384
start_fleet mock --workers 1
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"

# run_once NAME ENV: a fresh router with ENV, warm-up, one measured run, SIGTERM (the logger
# drains on shutdown); sets RESULT="rps p50 errors answered". Not run in a subshell, so the
# exit trap still knows the router's PID.
run_once() {
    local name="$1" envset="$2" f
    start_router "$name" "$WORK/models.yaml" $envset
    wait_ready "$ROUTER_URL" 30
    load "warm-$name" -t "$ROUTER_URL" -s chat -m bench -c "$CONCURRENCY" -d 1 >/dev/null
    f="$(load "$name" -t "$ROUTER_URL" -s chat -m bench -c "$CONCURRENCY" -d "$DURATION")"
    RESULT="$(j "$f" '"%s %s %s %s" % (r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"], r["totals"]["errors"], r["totals"]["requests"])')"
    kill -TERM "$ROUTER_PID" 2>/dev/null || true
    wait "$ROUTER_PID" 2>/dev/null || true
}

# kept_rows DIR: rows in api_logs plus lines in the spill file.
kept_rows() {
    python3 - "$1/router.db" <<'PY'
import os, sqlite3, sys
db = sys.argv[1]
rows = sqlite3.connect(db).execute("select count(*) from api_logs").fetchone()[0] if os.path.exists(db) else 0
spill = db + ".spill.jsonl"
lines = sum(1 for _ in open(spill)) if os.path.exists(spill) else 0
print(rows + lines)
PY
}

OFF_ROWS=(); ON_ROWS=(); ANSWERED=0; KEPT=0
for r in $(seq 1 "$ROUNDS"); do
    run_once "log-off-$r" "$LOG_OFF_ENV"
    OFF_ROWS+=("$RESULT")
    run_once "log-on-$r" "$LOG_ON_ENV"
    ON_ROWS+=("$RESULT")
    # Warm-up requests are logged too: count them from the warm-up report.
    read -r _ _ _ measured <<<"$RESULT"
    warm="$(j "$WORK/warm-log-on-$r.json" 'r["totals"]["requests"]')"
    ANSWERED=$((ANSWERED + measured + warm))
    KEPT=$((KEPT + $(kept_rows "$WORK/log-on-$r")))
    log "round $r: off ${OFF_ROWS[-1]%% *} req/s, on ${ON_ROWS[-1]%% *} req/s"
done
median() { printf '%s\n' "$@" | sort -n -k1 | awk -v n="$#" 'NR==int((n+1)/2)'; }
read -r OFF_RPS OFF_P50 OFF_ERR _ <<<"$(median "${OFF_ROWS[@]}")"
read -r ON_RPS ON_P50 ON_ERR _ <<<"$(median "${ON_ROWS[@]}")"
RATIO="$(awk -v a="$ON_RPS" -v b="$OFF_RPS" 'BEGIN{ if (b>0) printf "%.3f", a/b; else print "n/a" }')"
VERDICT="$(awk -v r="$RATIO" 'BEGIN{print (r>=0.9)?"met":"missed"}')"

{
    echo "### Bench 4 — logging on vs off"
    echo
    echo "Measured on $(machine_line). Chat JSON, c=$CONCURRENCY, ${DURATION}s per run, $ROUNDS round(s). On: \`$LOG_ON_ENV\`; off: \`$LOG_OFF_ENV\`."
    echo
    echo "| logging | rounds (req/s) | median req/s | p50 µs | errors |"
    echo "|---|---|---|---|---|"
    printf '| off | %s | %.0f | %s | %s |\n' "$(printf '%s\n' "${OFF_ROWS[@]}" | awk '{printf "%s%.0f", (NR>1?", ":""), $1}')" "$OFF_RPS" "$OFF_P50" "$OFF_ERR"
    printf '| on | %s | %.0f | %s | %s |\n' "$(printf '%s\n' "${ON_ROWS[@]}" | awk '{printf "%s%.0f", (NR>1?", ":""), $1}')" "$ON_RPS" "$ON_P50" "$ON_ERR"
    echo
    echo "- on ÷ off (medians): $RATIO (target ≥ 0.9): **$VERDICT**"
    echo "- requests answered while logging was on (warm-up included): $ANSWERED; rows kept (api_logs + spill): $KEPT"
} | emit

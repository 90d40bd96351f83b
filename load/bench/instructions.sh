#!/usr/bin/env bash
# Instructions per chat request in the router, counted by callgrind: deterministic whatever
# else the shared machine does, so a before/after delta of one change is exact. The router
# runs under valgrind with one HTTP worker in front of one mock; 2,000 requests warm it up
# (callgrind dumps and zeroes its counters there), then 4,000 more are counted and dumped:
# the second dump ÷ 4,000 is the figure, start-up excluded. Once with the request log off and
# once on (SQLite), as docs/benchmarks.md reports them; mode `floor` counts the load tool's
# `floor-proxy` instead (a bare actix-web + awc relay: what the HTTP crates alone cost).
#
# Usage: load/bench/instructions.sh
# Env: SCEN (chat; chat_stream for streams), MODES ("off on floor"), WARM (2000), COUNT (4000),
#      KEEP_DUMPS=1 keeps the dumps under load/bench/out/, ROUTER_BIN (a saved router binary to
#      compare, e.g. the one before a change), ROUTER_RUST_LOG (warn; `info`, the router's
#      default, adds each request's finish line on stderr), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
SCEN="${SCEN:-chat}"
MODES="${MODES:-off on floor}"
WARM="${WARM:-2000}"
COUNT="${COUNT:-4000}"
OUT="$ROOT/load/bench/out"
mkdir -p "$OUT"

build_release
ensure_tool valgrind valgrind || { echo "valgrind not available" >&2; exit 1; }
start_fleet mock --workers 1
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"

# dump_total FILE: the instruction total of one callgrind dump.
dump_total() { awk '/^(summary|totals):/{print $2; exit}' "$1"; }

for mode in $MODES; do
    enabled="$([ "$mode" = on ] && echo true || echo false)"
    dir="$WORK/cg-$mode"
    mkdir -p "$dir"
    if [ "$mode" = floor ]; then
        (cd "$dir" && exec valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
            "$LOAD" floor-proxy --upstream "$FLEET_URL" --workers 1) >"$dir/stdout" 2>"$dir/stderr" &
        ready_text="switchyard-load floor-proxy ready: "
    else
        (cd "$dir" && exec env RUST_LOG="${ROUTER_RUST_LOG:-warn}" SQLITE_DB_PATH="$dir/db" WORKERS=1 \
            REQUEST_LOG_ENABLED="$enabled" HEALTH_CHECK_INTERVAL_SECS=3600 \
            valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
            "${ROUTER_BIN:-$BIN/switchyard}" serve --config "$WORK/models.yaml" --host 127.0.0.1 --port 0) \
            >"$dir/stdout" 2>"$dir/stderr" &
        ready_text="switchyard listening on "
    fi
    CG_PID=$!
    PIDS+=("$CG_PID")
    line="$(wait_line "$dir/stdout" "$ready_text" 300)"
    CG_URL="${line#"$ready_text"}"
    if [ "$mode" = floor ]; then
        # The relay has no /health of its own: the mock's answer through it says it is up.
        for _ in $(seq 1 600); do
            curl -sf --max-time 2 -o /dev/null "$CG_URL/health" && break
            sleep 0.2
        done
    else
        wait_ready "$CG_URL" 120
    fi
    "$LOAD" run -q -t "$CG_URL" -s "$SCEN" -m bench -c 4 -n "$WARM" --timeout 120s \
        --json "$dir/warm.json" >/dev/null
    sleep 1 # the logger's last batch of the warm-up lands in the first dump
    callgrind_control -d "$CG_PID" >/dev/null
    "$LOAD" run -q -t "$CG_URL" -s "$SCEN" -m bench -c 4 -n "$COUNT" --timeout 120s \
        --json "$dir/run.json" >/dev/null
    sleep 1 # and the measured requests' rows in the second
    callgrind_control -d "$CG_PID" >/dev/null
    kill -TERM "$CG_PID"
    wait "$CG_PID" 2>/dev/null || true
    second="$dir/cg.out.2" # callgrind numbers its dumps: .1 the warm-up, .2 the count
    total="$(dump_total "$second")"
    ok="$(j "$dir/run.json" 'r["totals"]["ok"]' 2>/dev/null || j "$dir/run.json" 'r["totals"]["requests"]')"
    per="$(awk -v t="$total" -v n="$COUNT" 'BEGIN{printf "%.0f", t/n}')"
    case "$mode" in
        floor) what="floor-proxy (actix-web + awc relay, no JSON/log/metrics)" ;;
        *) what="switchyard, logging $mode" ;;
    esac
    [ "${ROUTER_RUST_LOG:-warn}" = warn ] || what="$what, RUST_LOG=$ROUTER_RUST_LOG"
    echo "$what: $per instructions per $SCEN request ($total over $COUNT requests, $ok ok)"
    if [ "${KEEP_DUMPS:-0}" = 1 ]; then
        cp "$second" "$OUT/instructions-$SCEN-$mode.callgrind"
    fi
done

#!/usr/bin/env bash
# Profile the router (and the generator) under bench 1's load: chat JSON at c=32 through the
# router to a fast fixed mock. perf samples on the software clock (hardware counters are often
# not available in VMs); the top symbols of each process are printed and the perf.data files kept
# under load/bench/out/.
#
# Usage: load/bench/profile.sh [--duration SECS] [--smoke]
# Env: PROFILE_STREAMS=1 profiles chat_stream instead; CALLGRIND=1 also runs the router under
#      valgrind --tool=callgrind for a fixed request count (slow; instruction counts repeat
#      exactly whatever else the machine does). SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
OUT="$ROOT/load/bench/out"
mkdir -p "$OUT"
SCEN="$([ "${PROFILE_STREAMS:-0}" = 1 ] && echo chat_stream || echo chat)"

build_release
ensure_tool perf linux-perf || { echo "perf not available (apt-get install linux-perf)" >&2; exit 1; }
start_fleet mock --workers 1
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"
start_router router "$WORK/models.yaml"
wait_ready "$ROUTER_URL" 30
load warm -t "$ROUTER_URL" -s "$SCEN" -m bench -c 32 -d 1 >/dev/null

perf record -e cpu-clock -F 1999 -g -o "$OUT/router.perf.data" -p "$ROUTER_PID" \
    -- sleep "$DURATION" >/dev/null 2>&1 &
perf stat -e context-switches,cpu-migrations,task-clock -p "$ROUTER_PID" -o "$OUT/router.stat" \
    -- sleep "$DURATION" >/dev/null 2>&1 &
STAT_PID=$!
PERF_PID=$!
"$LOAD" run -q -t "$ROUTER_URL" -s "$SCEN" -m bench -c 32 -d "$DURATION" --json "$WORK/p.json" &
GEN_PID=$!
PIDS+=("$GEN_PID")
sleep 0.3
perf record -e cpu-clock -F 1999 -g -o "$OUT/load.perf.data" -p "$GEN_PID" \
    -- sleep "$(awk -v d="$DURATION" 'BEGIN{print d-0.5}')" >/dev/null 2>&1 || true
wait "$PERF_PID" || true
wait "$STAT_PID" || true
wait "$GEN_PID" || true
REQS="$(j "$WORK/p.json" 'r["totals"]["requests"]')"
j "$WORK/p.json" '"router c=32 %s: %.0f req/s, p50 %s µs" % (r["scenarios"][0]["kind"], r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"])'
echo "== router: perf stat over the run ($REQS requests)"
grep -E 'context-switches|cpu-migrations|task-clock' "$OUT/router.stat" | sed 's/^ *//'
CS="$(awk '/context-switches/{gsub(",","",$1); print $1}' "$OUT/router.stat")"
awk -v cs="$CS" -v n="$REQS" 'BEGIN{ if (n>0) printf "context switches per request: %.2f\n", cs/n }'
for who in router load; do
    echo "== $who: top symbols (self, cpu-clock)"
    perf report -i "$OUT/$who.perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | cut -c1-150 | head -n 25 || true
    echo "== $who: by shared object"
    perf report -i "$OUT/$who.perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | head -n 6 || true
done

if [ "${CALLGRIND:-0}" = 1 ]; then
    ensure_tool valgrind valgrind || { echo "valgrind not available" >&2; exit 1; }
    kill -TERM "$ROUTER_PID"; wait "$ROUTER_PID" 2>/dev/null || true
    mkdir -p "$WORK/cg"
    (cd "$WORK/cg" && exec env RUST_LOG=warn SQLITE_DB_PATH="$WORK/cg/db" WORKERS=1 \
        valgrind --tool=callgrind --callgrind-out-file="$OUT/router.callgrind" \
        "$BIN/switchyard" serve --config "$WORK/models.yaml" --host 127.0.0.1 --port 0) \
        >"$WORK/cg/stdout" 2>"$WORK/cg/stderr" &
    CG_PID=$!
    PIDS+=("$CG_PID")
    line="$(wait_line "$WORK/cg/stdout" "switchyard listening on" 300)"
    CG_URL="${line#switchyard listening on }"
    wait_ready "$CG_URL" 120
    "$LOAD" run -q -t "$CG_URL" -s "$SCEN" -m bench -c 4 -n 2000 --timeout 120s --json "$WORK/cg.json"
    kill -TERM "$CG_PID"; wait "$CG_PID" 2>/dev/null || true
    echo "== router under callgrind (2,000 requests): top functions by instructions"
    callgrind_annotate --inclusive=no "$OUT/router.callgrind" 2>/dev/null | cut -c1-160 | head -n 40 || true
fi

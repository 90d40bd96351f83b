#!/usr/bin/env bash
# Bench 9 — shared limits (docs/limits.md): what a key's rpm, tpm and budget add to the hot
# path, and how often the quota ledger is asked under steady load.
#   1. added p50 at c=1, key with rpm + tpm + budget vs the same router's key without limits,
#      both keys sent at the same time by two generators (closed loop, c=1 each; median of
#      ROUNDS per-round differences). Target ≤ 5 µs.
#   2. steady open-loop load (RATE req/s) on the limited key: ledger exchanges counted from
#      `switchyard_quota_lease_requests_total`, per allowance and lease interval (1 s).
#      Target ≤ 1 per replica, allowance and interval.
# With DATABASE_URL (PostgreSQL) three replicas share it and the load is spread over them;
# otherwise one replica on SQLite (the same code).
#
# Usage: load/bench/09-limits.sh [--duration SECS] [--smoke]
#   3. (CALLGRIND=1, the default when valgrind is installed) the same difference in instructions
#      per request, counted by callgrind in one router process (zeroed and dumped per phase),
#      turned into µs with the router's CPU time per instruction measured without valgrind.
# Env: ROUNDS (3), RATE (150), DATABASE_URL, ROUTER_WORKERS (2), SKIP_BUILD=1, RESULTS=FILE,
#      CALLGRIND (1), CG_REQUESTS (2000).
source "$(dirname "$0")/lib.sh"
parse_common "$@"
ROUNDS="${ROUNDS:-3}"
RATE="${RATE:-150}"
ADMIN=bench-admin-key-7
WARMUP="$([ "$SMOKE" = 1 ] && echo 0.5 || echo 2)"

build_release
raise_fd_limit 16384
start_fleet mock --workers 1
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"
cat >"$WORK/keys.yaml" <<'KEYS'
keys:
  - {name: free, key: bench-free-key-1}
  - {name: limited, key: bench-limited-key-1, rpm: 1000000, tpm: 1000000000, budget_usd: 1000000, budget_period: total}
KEYS
chmod 600 "$WORK/keys.yaml"

DB_ENV=()
REPLICAS=(r1)
if [ -n "${DATABASE_URL:-}" ]; then
    DB_ENV=(USE_SQLITE_LOG=false "DATABASE_URL=$DATABASE_URL")
    REPLICAS=(r1 r2 r3)
fi
URLS=()
for name in "${REPLICAS[@]}"; do
    start_router "$name" "$WORK/models.yaml" KEYS_FILE="$WORK/keys.yaml" ADMIN_API_KEY="$ADMIN" \
        REPLICA_ID="$name" "${DB_ENV[@]}"
    wait_ready "$ROUTER_URL" 30
    URLS+=("$ROUTER_URL")
done
log "replicas: ${URLS[*]}"

# One round: both keys at c=1 at the same moment (one generator of one thread each, so the
# pair is c=2 on the router's two workers). Whatever the shared machine does during the round
# hits both keys alike; sequential rounds, even alternated, left ±30–300 µs of drift between
# the two halves of a round, far more than the 5 µs being measured.
paired_round() {
    local r="$1" free limited
    "$LOAD" run -q --threads 1 --json "$WORK/free-r$r.json" -t "${URLS[0]}" -s chat -m bench -c 1 \
        -d "$DURATION" --api-key bench-free-key-1 >&2 &
    free=$!
    "$LOAD" run -q --threads 1 --json "$WORK/limited-r$r.json" -t "${URLS[0]}" -s chat -m bench -c 1 \
        -d "$DURATION" --api-key bench-limited-key-1 >&2 &
    limited=$!
    wait "$free" "$limited"
    echo "$(j "$WORK/free-r$r.json" 'r["scenarios"][0]["latency_us"]["p50"]') $(j "$WORK/limited-r$r.json" 'r["scenarios"][0]["latency_us"]["p50"]')"
}
median() { sort -n | awk '{v[NR]=$1} END{if (NR==0) print 0; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
for key in bench-free-key-1 bench-limited-key-1; do
    load "warm-$key" -t "${URLS[0]}" -s chat -m bench -c 1 -d "$WARMUP" --api-key "$key" >/dev/null
done
FREES=() LIMITEDS=() DIFFS=()
for r in $(seq 1 "$ROUNDS"); do
    read -r a b <<<"$(paired_round "$r")"
    FREES+=("$a") LIMITEDS+=("$b") DIFFS+=("$(awk -v a="$a" -v b="$b" 'BEGIN{print b-a}')")
done
FREE="$(printf '%s\n' "${FREES[@]}" | median)"
LIMITED="$(printf '%s\n' "${LIMITEDS[@]}" | median)"
ADDED="$(printf '%s\n' "${DIFFS[@]}" | median)"
log "p50 free ${FREE}µs limited ${LIMITED}µs; per-round differences ${DIFFS[*]}; median ${ADDED}µs"

# exchanges: the sum of every replica's ledger exchange counter.
exchanges() {
    local url total=0 n
    for url in "${URLS[@]}"; do
        n="$(curl -s -H "Authorization: Bearer $ADMIN" "$url/metrics" |
            awk '/^switchyard_quota_lease_requests_total /{print $2}')"
        total=$((total + ${n:-0}))
    done
    echo "$total"
}
TARGETS=()
for url in "${URLS[@]}"; do TARGETS+=(-t "$url"); done
# Settle first (the first leases are sized before any rate is known), then count.
load steady-warm "${TARGETS[@]}" -s chat -m bench --rate "$RATE" -d 3 --api-key bench-limited-key-1 >/dev/null
BEFORE="$(exchanges)"
F="$(load steady "${TARGETS[@]}" -s chat -m bench --rate "$RATE" -d "$DURATION" --api-key bench-limited-key-1)"
AFTER="$(exchanges)"
OK="$(j "$F" 'r["totals"]["ok"]')"
ERRS="$(j "$F" 'r["totals"]["errors"]')"
ALLOWANCES=3
PER="$(awk -v d="$((AFTER - BEFORE))" -v r="${#URLS[@]}" -v a="$ALLOWANCES" -v s="$DURATION" \
    'BEGIN{printf "%.2f", d / r / a / s}')"
log "exchanges $((AFTER - BEFORE)) over ${DURATION}s: $PER per replica, allowance and second"

# Instructions: what the limited key's path costs more, counted by callgrind (exact whatever
# else the machine does), turned into time with this router's own CPU time per instruction.
CG_ADDED="" CG_FREE="" CG_LIMITED="" CG_NS=""
if [ "${CALLGRIND:-1}" = 1 ] && [ "$SMOKE" != 1 ] && ensure_tool valgrind valgrind; then
    CG_N="${CG_REQUESTS:-2000}"
    # CPU time per request of the plain router (no valgrind), from /proc/PID/stat.
    cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
    start_router cpu "$WORK/models.yaml" KEYS_FILE="$WORK/keys.yaml" ADMIN_API_KEY="$ADMIN" REPLICA_ID=cpu "${DB_ENV[@]}"
    wait_ready "$ROUTER_URL" 30
    load cpu-warm -t "$ROUTER_URL" -s chat -m bench -c 1 -d "$WARMUP" --api-key bench-free-key-1 >/dev/null
    T0="$(cpu_ticks "$ROUTER_PID")"
    F="$(load cpu -t "$ROUTER_URL" -s chat -m bench -c 1 -n $((CG_N * 5)) --api-key bench-free-key-1)"
    T1="$(cpu_ticks "$ROUTER_PID")"
    CPU_US="$(awk -v t="$((T1 - T0))" -v hz="$(getconf CLK_TCK)" -v n="$((CG_N * 5))" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}')"
    kill -TERM "$ROUTER_PID"; wait "$ROUTER_PID" 2>/dev/null || true
    mkdir -p "$WORK/cg"
    start_router cg "$WORK/models.yaml" KEYS_FILE="$WORK/keys.yaml" ADMIN_API_KEY="$ADMIN" REPLICA_ID=cg "${DB_ENV[@]}" \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/cg/out" --dump-instr=no
    CG_PID="$ROUTER_PID"
    wait_ready "$ROUTER_URL" 120
    for key in bench-free-key-1 bench-limited-key-1; do
        load "cg-warm-$key" -t "$ROUTER_URL" -s chat -m bench -c 1 -n 200 --timeout 60s --api-key "$key" >/dev/null
    done
    # One dump per phase: zero, run, dump.
    phase_instructions() {
        callgrind_control -z "$CG_PID" >/dev/null
        load "cg-$1" -t "$ROUTER_URL" -s chat -m bench -c 1 -n "$CG_N" --timeout 60s --api-key "$1" >/dev/null
        callgrind_control -d "$1" "$CG_PID" >/dev/null
        sleep 1
        local file
        file="$(ls -t "$WORK"/cg/out.* | head -n 1)"
        callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}'
    }
    # Alternate twice so a slow drift (the request log's table growing) cancels out.
    I_FREE1="$(phase_instructions bench-free-key-1)"
    I_LIM1="$(phase_instructions bench-limited-key-1)"
    I_LIM2="$(phase_instructions bench-limited-key-1)"
    I_FREE2="$(phase_instructions bench-free-key-1)"
    kill -TERM "$CG_PID"; wait "$CG_PID" 2>/dev/null || true
    CG_FREE="$(awk -v a="$I_FREE1" -v b="$I_FREE2" -v n="$CG_N" 'BEGIN{printf "%.0f", (a+b)/2/n}')"
    CG_LIMITED="$(awk -v a="$I_LIM1" -v b="$I_LIM2" -v n="$CG_N" 'BEGIN{printf "%.0f", (a+b)/2/n}')"
    CG_NS="$(awk -v us="$CPU_US" -v i="$CG_FREE" 'BEGIN{printf "%.4f", us * 1000 / i}')"
    CG_ADDED="$(awk -v l="$CG_LIMITED" -v f="$CG_FREE" -v ns="$CG_NS" 'BEGIN{printf "%.2f", (l - f) * ns / 1000}')"
    log "callgrind: free ${CG_FREE} instr/req, limited ${CG_LIMITED} instr/req; router CPU ${CPU_US} µs/req without valgrind = ${CG_NS} ns/instr; added ${CG_ADDED} µs"
fi

{
    echo "### Bench 9 — shared limits (rpm + tpm + budget on one key)"
    echo
    echo "Measured on $(machine_line). ${#URLS[@]} replica(s) on $([ -n "${DATABASE_URL:-}" ] && echo PostgreSQL || echo SQLite), router WORKERS=${ROUTER_WORKERS:-2}; ${DURATION}s per cell, ${ROUNDS} round(s)."
    echo
    echo "| measure | value | target |"
    echo "|---|---|---|"
    echo "| p50 c=1, key without limits | ${FREE} µs | |"
    echo "| p50 c=1, key with rpm + tpm + budget | ${LIMITED} µs | |"
    echo "| added p50 (median of ${ROUNDS} paired rounds' differences, both keys at once: ${DIFFS[*]}) | ${ADDED} µs | ≤ 5 µs: **$(awk -v a="$ADDED" 'BEGIN{print (a<=5)?"met":"missed"}')** |"
    if [ -n "$CG_ADDED" ]; then
        echo "| instructions per request (callgrind, c=1, ${CG_N} per phase): without limits / with | ${CG_FREE} / ${CG_LIMITED} | |"
        echo "| router CPU per request without valgrind (c=1) | ${CPU_US} µs (${CG_NS} ns per instruction) | |"
        # An upper bound: the whole process's CPU per instruction includes the kernel's share
        # (syscalls, wake-ups), which callgrind does not count.
        echo "| added CPU on the path, from the instruction difference (upper bound) | ≤ ${CG_ADDED} µs | ≤ 5 µs: **$(awk -v a="$CG_ADDED" 'BEGIN{print (a<=5)?"met":"not shown by this bound"}')** |"
    fi
    echo "| ledger exchanges at ${RATE} req/s for ${DURATION}s | $((AFTER - BEFORE)) ($OK ok, $ERRS errors) | |"
    echo "| per replica, allowance and lease interval (1 s) | $PER | ≤ 1: **$(awk -v a="$PER" 'BEGIN{print (a<=1)?"met":"missed"}')** |"
} | emit

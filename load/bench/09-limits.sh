#!/usr/bin/env bash
# Bench 9 — shared limits (docs/limits.md): what a key's rpm, tpm and budget add to the hot
# path, and how often the quota ledger is asked under steady load.
#   1. added p50 at c=1, key with rpm + tpm + budget vs the same router's key without limits
#      (closed loop, median of ROUNDS). Target ≤ 5 µs.
#   2. steady open-loop load (RATE req/s) on the limited key: ledger exchanges counted from
#      `switchyard_quota_lease_requests_total`, per allowance and lease interval (1 s).
#      Target ≤ 1 per replica, allowance and interval.
# With DATABASE_URL (PostgreSQL) three replicas share it and the load is spread over them;
# otherwise one replica on SQLite (the same code).
#
# Usage: load/bench/09-limits.sh [--duration SECS] [--smoke]
# Env: ROUNDS (3), RATE (150), DATABASE_URL, ROUTER_WORKERS (2), SKIP_BUILD=1, RESULTS=FILE.
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

# p50 KEY: median over ROUNDS of the c=1 p50 (µs) on the first replica.
p50() {
    local key="$1" r f rows=()
    load "warm-$key" -t "${URLS[0]}" -s chat -m bench -c 1 -d "$WARMUP" --api-key "$key" >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        f="$(load "$key-r$r" -t "${URLS[0]}" -s chat -m bench -c 1 -d "$DURATION" --api-key "$key")"
        rows+=("$(j "$f" 'r["scenarios"][0]["latency_us"]["p50"]')")
    done
    printf '%s\n' "${rows[@]}" | sort -n | awk -v n="${#rows[@]}" 'NR==int((n+1)/2)'
}
FREE="$(p50 bench-free-key-1)"
LIMITED="$(p50 bench-limited-key-1)"
ADDED="$(awk -v a="$LIMITED" -v b="$FREE" 'BEGIN{print a-b}')"
log "p50 free ${FREE}µs limited ${LIMITED}µs added ${ADDED}µs"

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

{
    echo "### Bench 7 — shared limits (rpm + tpm + budget on one key)"
    echo
    echo "Measured on $(machine_line). ${#URLS[@]} replica(s) on $([ -n "${DATABASE_URL:-}" ] && echo PostgreSQL || echo SQLite), router WORKERS=${ROUTER_WORKERS:-2}; ${DURATION}s per cell, ${ROUNDS} round(s)."
    echo
    echo "| measure | value | target |"
    echo "|---|---|---|"
    echo "| p50 c=1, key without limits | ${FREE} µs | |"
    echo "| p50 c=1, key with rpm + tpm + budget | ${LIMITED} µs | |"
    echo "| added p50 | ${ADDED} µs | ≤ 5 µs: **$(awk -v a="$ADDED" 'BEGIN{print (a<=5)?"met":"missed"}')** |"
    echo "| ledger exchanges at ${RATE} req/s for ${DURATION}s | $((AFTER - BEFORE)) ($OK ok, $ERRS errors) | |"
    echo "| per replica, allowance and lease interval (1 s) | $PER | ≤ 1: **$(awk -v a="$PER" 'BEGIN{print (a<=1)?"met":"missed"}')** |"
} | emit

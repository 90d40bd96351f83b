#!/usr/bin/env bash
# Bench 1 — router overhead: chat JSON against a fast fixed mock, called directly, through the
# router and through nginx (proxy_pass with upstream keepalive), at concurrency 1 and 32.
# Targets: added p50 at c=1 ≤ 50 µs; router throughput at c=32 ≥ 0.6 × nginx.
#
# Usage: load/bench/01-overhead.sh [--duration SECS] [--smoke]
# Env: ROUNDS (default 1: each measurement repeated, median kept), ROUTER_WORKERS (2),
#      NGINX_WORKERS (2), GEN_THREADS (2), SKIP_BUILD=1, RESULTS=FILE.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
ROUNDS="${ROUNDS:-1}"
WARMUP="$([ "$SMOKE" = 1 ] && echo 0.5 || echo 2)"

build_release
raise_fd_limit 16384
start_fleet mock --workers 1
log "mock at $FLEET_URL"
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"
start_router router "$WORK/models.yaml"
wait_ready "$ROUTER_URL" 30
log "router at $ROUTER_URL"
NGINX_URL=""
if ensure_tool nginx nginx-light || have_nginx; then
    start_nginx nginx "${FLEET_URL#http://}"
    log "nginx at $NGINX_URL"
else
    log "nginx not installed (apt-get install nginx): its row is skipped"
fi

# measure NAME URL MODEL CONC: median-of-ROUNDS run; prints "rps p50 p99" (µs).
measure() {
    local name="$1" url="$2" model="$3" c="$4" r f rows=()
    load "warm-$name-$c" -t "$url" -s chat -m "$model" -c "$c" -d "$WARMUP" >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        f="$(load "$name-c$c-r$r" -t "$url" -s chat -m "$model" -c "$c" -d "$DURATION" \
            --label "$name c=$c")"
        rows+=("$(j "$f" '"%s %s %s %s" % (r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"], r["scenarios"][0]["latency_us"]["p99"], r["totals"]["errors"])')")
    done
    printf '%s\n' "${rows[@]}" | sort -n -k1 | awk -v n="${#rows[@]}" 'NR==int((n+1)/2)'
}

declare -A RPS P50 P99 ERR
for c in 1 32; do
    for t in direct router nginx; do
        case "$t" in
            direct) url="$FLEET_URL"; model=mock-model ;;
            router) url="$ROUTER_URL"; model=bench ;;
            nginx) [ -n "$NGINX_URL" ] || continue; url="$NGINX_URL"; model=mock-model ;;
        esac
        read -r rps p50 p99 err < <(measure "$t" "$url" "$model" "$c")
        RPS[$t$c]="$rps"; P50[$t$c]="$p50"; P99[$t$c]="$p99"; ERR[$t$c]="$err"
        log "$t c=$c: $rps req/s p50 ${p50}µs p99 ${p99}µs errors $err"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
{
    echo "### Bench 1 — router overhead (chat JSON, fast fixed mock)"
    echo
    echo "Measured on $(machine_line). ${DURATION}s per cell, ${ROUNDS} round(s), router WORKERS=${ROUTER_WORKERS:-2}, nginx workers ${NGINX_WORKERS:-2}, generator threads $GEN_THREADS."
    echo
    echo "| path | c | req/s | p50 µs | p99 µs | errors | added p50 µs | req/s ÷ direct | req/s ÷ nginx |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for c in 1 32; do
        for t in direct router nginx; do
            [ -n "${RPS[$t$c]:-}" ] || continue
            added="$(awk -v a="${P50[$t$c]}" -v b="${P50[direct$c]}" 'BEGIN{print a-b}')"
            vsn="n/a"; [ -n "${RPS[nginx$c]:-}" ] && vsn="$(ratio "${RPS[$t$c]}" "${RPS[nginx$c]}")"
            printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$t" "$c" "${RPS[$t$c]}" \
                "${P50[$t$c]}" "${P99[$t$c]}" "${ERR[$t$c]}" "$added" \
                "$(ratio "${RPS[$t$c]}" "${RPS[direct$c]}")" "$vsn"
        done
    done
    added1="$(awk -v a="${P50[router1]}" -v b="${P50[direct1]}" 'BEGIN{print a-b}')"
    met1="$(awk -v a="$added1" 'BEGIN{print (a<=50)?"met":"missed"}')"
    echo
    echo "- added p50 at c=1: ${added1} µs (target ≤ 50 µs): **$met1**"
    if [ -n "${RPS[nginx32]:-}" ]; then
        r32="$(ratio "${RPS[router32]}" "${RPS[nginx32]}")"
        met32="$(awk -v a="$r32" 'BEGIN{print (a>=0.6)?"met":"missed"}')"
        echo "- router ÷ nginx throughput at c=32: ${r32} (target ≥ 0.6): **$met32**"
    else
        echo "- router ÷ nginx throughput at c=32: nginx not installed, not measured"
    fi
} | emit

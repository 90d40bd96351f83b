#!/usr/bin/env bash
# Bench 0 — the generator's own ceiling: switchyard-load against the mock directly (chat JSON,
# zero delays), 1 and 2 generator threads, c=1 and c=32, with wrk (if installed) as the
# reference client on the same mock. If the router's figures in bench 1 come near these, the
# generator — not the router — is the limit.
#
# Usage: load/bench/00-generator.sh [--duration SECS] [--smoke]
# Env: MOCK_WORKERS (1), SKIP_BUILD=1, RESULTS=FILE.
source "$(dirname "$0")/lib.sh"
parse_common "$@"

build_release
raise_fd_limit 16384
start_fleet mock --workers "${MOCK_WORKERS:-1}"
BODY='{"model":"mock-model","messages":[{"role":"user","content":"route the tokens through a mesh of actors"}]}'
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body   = '$BODY'
wrk.headers["Content-Type"] = "application/json"
EOF

ROWS=()
for c in 1 32; do
    for t in 1 2; do
        f="$(GEN_THREADS=$t load "gen-t$t-c$c" -t "$FLEET_URL" -s chat -c "$c" -d "$DURATION")"
        ROWS+=("$(j "$f" '"| switchyard-load | %s | '"$t"' | %.0f | %s | %s |" % ('"$c"', r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"], r["scenarios"][0]["latency_us"]["p99"])')")
    done
    if ensure_tool wrk wrk; then
        out="$(wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$WORK/post.lua" "$FLEET_URL/v1/chat/completions")"
        rps="$(awk '/Requests\/sec/{printf "%.0f", $2}' <<<"$out")"
        p50="$(awk '$1=="50%"{print $2}' <<<"$out")"
        p99="$(awk '$1=="99%"{print $2}' <<<"$out")"
        ROWS+=("| wrk | $c | 1 | $rps | $p50 | $p99 |")
    fi
done

{
    echo "### Bench 0 — generator ceiling (chat JSON straight to the mock)"
    echo
    echo "Measured on $(machine_line). ${DURATION}s per cell; mock workers ${MOCK_WORKERS:-1}. wrk p50/p99 are wrk's own (units as printed)."
    echo
    echo "| client | c | threads | req/s | p50 µs | p99 µs |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | emit

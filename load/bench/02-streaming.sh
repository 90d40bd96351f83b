#!/usr/bin/env bash
# Bench 2 — streaming: time to first token and inter-chunk gap at 100 and 1,000 concurrent
# streams, router vs direct, against a mock that spaces its chunks (so coalescing would show).
# Target: < 1 ms added at the median (TTFT and gap); no chunk coalescing.
#
# Each level runs twice: with every connection's streams started together (they last the same
# time, so they stay in step and each wave of starts reaches the router as one burst), and with
# the connections' starts spread over one stream's length (`--spread`: the same number of
# streams in flight, arriving as they would from independent clients).
#
# Usage: load/bench/02-streaming.sh [--duration SECS] [--smoke]
# Env: CHUNKS (20), CHUNK_MS (25), TTFT_MS (50), LEVELS ("100 1000"), STARTS ("together
#      spread"), ROUTER_WORKERS (2), GEN_THREADS (2), SKIP_BUILD=1, RESULTS=FILE.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
CHUNKS="${CHUNKS:-20}"
CHUNK_MS="${CHUNK_MS:-25}"
TTFT_MS="${TTFT_MS:-50}"
LEVELS="${LEVELS:-100 1000}"
STARTS="${STARTS:-together spread}"

build_release
raise_fd_limit 16384
start_fleet mock --workers 1 --chunks "$CHUNKS" --chunk-interval-ms "$CHUNK_MS" --ttft-ms "$TTFT_MS"
"$LOAD" gen-config --url "$FLEET_URL" --models 1 --model-prefix bench --out "$WORK/models.yaml"
start_router router "$WORK/models.yaml"
wait_ready "$ROUTER_URL" 30

# A stream lasts TTFT + (CHUNKS-1)·gap; run at least three of them per connection.
STREAM_S="$(awk -v t="$TTFT_MS" -v c="$CHUNKS" -v g="$CHUNK_MS" 'BEGIN{print (t+(c-1)*g)/1000}')"
RUN_S="$(awk -v d="$DURATION" -v s="$STREAM_S" 'BEGIN{m=3*s+0.5; print (d>m)?d:m}')"

row() { # FILE → "ttft_p50 ttft_p99 gap_p50 gap_p99 coalesced_reads content_reads tokens_p50 streams errors"
    j "$1" '"%s %s %s %s %s %s %s %s %s" % (
        (r["scenarios"][0]["first_us"] or {}).get("p50",0), (r["scenarios"][0]["first_us"] or {}).get("p99",0),
        (r["scenarios"][0]["gap_us"] or {}).get("p50",0), (r["scenarios"][0]["gap_us"] or {}).get("p99",0),
        r["scenarios"][0]["coalescing"]["coalesced_reads"], r["scenarios"][0]["coalescing"]["content_reads"],
        (r["scenarios"][0]["tokens_per_s"] or {}).get("p50",0), r["totals"]["ok"], r["totals"]["errors"])'
}

SPREAD_MS="$(awk -v s="$STREAM_S" 'BEGIN{printf "%d", s*1000}')"
declare -A ROW
for c in $LEVELS; do
    for starts in $STARTS; do
        spread=()
        [ "$starts" = spread ] && spread=(--spread "${SPREAD_MS}ms")
        for t in direct router; do
            if [ "$t" = direct ]; then url="$FLEET_URL"; model=mock-model; else url="$ROUTER_URL"; model=bench; fi
            f="$(load "$t-$c-$starts" -t "$url" -s chat_stream -m "$model" -c "$c" -d "$RUN_S" \
                "${spread[@]}" --timeout 60s --label "stream $t c=$c, starts $starts")"
            ROW[$t$c$starts]="$(row "$f")"
            log "$t c=$c starts $starts: ${ROW[$t$c$starts]}"
        done
    done
done

{
    echo "### Bench 2 — streaming (mock: ${CHUNKS} chunks, ${CHUNK_MS} ms apart, TTFT ${TTFT_MS} ms)"
    echo
    echo "Measured on $(machine_line). ${RUN_S}s per cell, router WORKERS=${ROUTER_WORKERS:-2}, generator threads $GEN_THREADS; starts \"spread\": the connections' first streams spread over ${SPREAD_MS} ms."
    echo
    echo "| path | streams | starts | TTFT p50 µs | TTFT p99 µs | gap p50 µs | gap p99 µs | coalesced reads | tokens/s p50 | streams done | errors | added TTFT p50 µs | added gap p50 µs |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    verdicts=()
    for c in $LEVELS; do
        for starts in $STARTS; do
            read -r dt _ dg _ dco _ _ _ _ <<<"${ROW[direct$c$starts]}"
            for t in direct router; do
                read -r tt tt99 g g99 co cr tok ok err <<<"${ROW[$t$c$starts]}"
                at="$(awk -v a="$tt" -v b="$dt" 'BEGIN{print a-b}')"
                ag="$(awk -v a="$g" -v b="$dg" 'BEGIN{print a-b}')"
                echo "| $t | $c | $starts | $tt | $tt99 | $g | $g99 | $co of $cr | $tok | $ok | $err | $at | $ag |"
                if [ "$t" = router ]; then
                    # |added gap|: coalesced events arrive together, which shows as a *smaller* gap.
                    m="$(awk -v a="$at" -v b="$ag" -v co="$co" -v dco="$dco" 'function abs(x){return x<0?-x:x} BEGIN{print (a<1000 && abs(b)<1000 && co<=dco)?"met":"missed"}')"
                    verdicts+=("- c=$c, starts $starts: added TTFT p50 ${at} µs, added gap p50 ${ag} µs, coalesced reads $co (direct $dco) — target < 1 ms added, no coalescing: **$m**")
                fi
            done
        done
    done
    echo
    printf '%s\n' "${verdicts[@]}"
} | emit

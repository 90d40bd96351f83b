#!/usr/bin/env bash
# Bench 7 — routing policies (`weighted`, `least_load`, `prefix_cache`), same requests for each,
# a fresh router per policy (`policy:` in models.yaml).
#
# Mock fleet: four mock engines with the cost model (2 slots each), one three times slower;
#   - open loop at 80 % of the fleet's total capacity, distinct prompts: p99 latency.
#     Target: least_load p99 ≤ 0.7 × weighted.
#   - closed loop at saturation, no shared prefixes: throughput.
#     Target: no policy loses more than 5 % against weighted.
# Real engines: two llama-server instances (gemma-3-270m from load/engines/setup.sh), each
#   pinned to one core with one thread, 2 slots, host prompt cache off (--cache-ram 0),
#   `--swa-full` (gemma-3's sliding window otherwise defeats any prefix reuse), `--metrics`; SHARED_PREFIXES long system prompts (default 3: more than one engine's 2
#   slots hold, fewer than all 4 slots hold) with short distinct questions, streamed, at c=1
#   and c=4. Target: prefix_cache mean and p90 TTFT ≤ 0.5 × weighted; least_load ≤ weighted.
#
# Usage: load/bench/07-routing.sh [--duration SECS] [--smoke]
# Env: PHASES ("mock real"), POLICIES ("weighted least_load prefix_cache"),
#      MOCK_DECODE_US (10000), MOCK_CHUNKS (10), MOCK_SLOW (3), MOCK_LOAD (0.8), MOCK_C (16),
#      REAL_DURATION (40, seconds per cell), SHARED_PREFIXES (3), PREFIX_WORDS (400),
#      REAL_CORES ("0 1"), HEALTH_INTERVAL (1), BENCH_PROFILE (release), SKIP_BUILD=1;
#      SWITCHYARD_ROUTING (a routing.yaml for every router, e.g. policy_settings.slot_wait_ms).
# Bounded: about 2 min of mock runs and 3 × (5 + 2 × REAL_DURATION) s of real-engine runs.
source "$(dirname "$0")/lib.sh"
export HEALTH_INTERVAL="${HEALTH_INTERVAL:-1}"
# The routers' /metrics are read for their decision counters (loopback only, no admin key).
export METRICS_PUBLIC=true
DURATION=20
parse_common "$@"
PHASES="${PHASES:-mock real}"
POLICIES="${POLICIES:-weighted least_load prefix_cache}"
MOCK_DECODE_US="${MOCK_DECODE_US:-10000}"
MOCK_CHUNKS="${MOCK_CHUNKS:-10}"
MOCK_SLOW="${MOCK_SLOW:-3}"
MOCK_LOAD="${MOCK_LOAD:-0.8}"
MOCK_C="${MOCK_C:-16}"
REAL_DURATION="${REAL_DURATION:-40}"
SHARED_PREFIXES="${SHARED_PREFIXES:-3}"
PREFIX_WORDS="${PREFIX_WORDS:-400}"
REAL_CORES="${REAL_CORES:-0 1}"
if [ "$SMOKE" = 1 ]; then REAL_DURATION=6; fi

build_release

# start_mock NAME SETTINGS_JSON: one switchyard-mock process; sets MOCK_URL. Not called in a
# subshell (`$(…)`), so its PID reaches PIDS and the cleanup stops it.
start_mock() {
    local name="$1" settings="$2" out="$WORK/$1.out"
    "$BIN/switchyard-mock" --host 127.0.0.1 --port 0 --settings-json "$settings" >"$out" 2>"$WORK/$name.err" &
    PIDS+=("$!")
    local line
    line="$(wait_line "$out" "listening on" 30)"
    MOCK_URL="${line##* }"
}

# models_yaml FILE POLICY KIND URL...: one model `bench` with one route per URL, weight 1.
models_yaml() {
    local file="$1" policy="$2" kind="$3"
    shift 3
    {
        echo "models:"
        echo "  - id: bench"
        echo "    policy: $policy"
        echo "    route:"
        local i=0 url
        for url in "$@"; do
            echo "      - {name: e$i, kind: $kind, base_url: \"$url\", weight: 1, provider_model_id: mock-model}"
            i=$((i + 1))
        done
    } >"$file"
}

# with_router POLICY KIND URL...: a fresh router for this policy (the previous one stopped).
with_router() {
    local policy="$1" kind="$2"
    shift 2
    if [ -n "${ROUTER_PID:-}" ]; then
        kill -TERM "$ROUTER_PID" 2>/dev/null || true
        wait "$ROUTER_PID" 2>/dev/null || true
    fi
    models_yaml "$WORK/$policy-$kind.yaml" "$policy" "$kind" "$@"
    start_router "router-$policy-$kind" "$WORK/$policy-$kind.yaml"
    wait_ready "$ROUTER_URL" 60
}

# share FILE: the report's first-token / latency summaries as "mean p50 p90 p99" in ms.
ms() { j "$1" "$2"; }
first_row() {
    ms "$1" '"%.0f %.0f %.0f %.0f %s %s" % tuple([r["scenarios"][0]["first_us"][k]/1000 for k in ("mean","p50","p90","p99")] + [r["totals"]["ok"], r["totals"]["errors"]])'
}
latency_row() {
    ms "$1" '"%.0f %.0f %.0f %.0f %.2f %s %s" % tuple([r["scenarios"][0]["latency_us"][k]/1000 for k in ("mean","p50","p90","p99")] + [r["totals"]["ok_rps"], r["totals"]["ok"], r["totals"]["errors"]])'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
verdict() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN{ print (b>0 && a/b<=t)?"met":"missed" }'; }

declare -A ROW DECISIONS

mock_phase() {
    local fast slow urls=() i
    fast="{\"chunks\":$MOCK_CHUNKS,\"cost_model\":{\"slots\":2,\"max_queue\":100000,\"prefill_us_per_token\":200,\"decode_us_per_token\":$MOCK_DECODE_US}}"
    slow="{\"chunks\":$MOCK_CHUNKS,\"cost_model\":{\"slots\":2,\"max_queue\":100000,\"prefill_us_per_token\":$((200 * MOCK_SLOW)),\"decode_us_per_token\":$((MOCK_DECODE_US * MOCK_SLOW))}}"
    for i in 0 1 2; do
        start_mock "mock$i" "$fast"
        urls+=("$MOCK_URL")
    done
    start_mock mock3 "$slow"
    urls+=("$MOCK_URL")
    # A request: ~12 prompt tokens of prefill, then chunks-1 decode gaps; 2 slots per engine.
    MOCK_CAPACITY="$(awk -v d="$MOCK_DECODE_US" -v c="$MOCK_CHUNKS" -v s="$MOCK_SLOW" 'BEGIN{
        t = (12*200 + (c-1)*d) / 1e6; printf "%.1f", 3*2/t + 2/(s*t) }')"
    MOCK_RATE="$(awk -v c="$MOCK_CAPACITY" -v l="$MOCK_LOAD" 'BEGIN{printf "%.1f", c*l}')"
    log "mock fleet: capacity ~$MOCK_CAPACITY req/s, open loop at $MOCK_RATE req/s"
    local p f
    for p in $POLICIES; do
        with_router "$p" vllm "${urls[@]}"
        f="$(load "mock-open-$p" -t "$ROUTER_URL" -s chat_stream -m bench --shared-prefixes 0 \
            --rate "$MOCK_RATE" -d "${DURATION}s" --timeout 120s --label "mock open $p")"
        ROW[open$p]="$(latency_row "$f")"
        f="$(load "mock-closed-$p" -t "$ROUTER_URL" -s chat_stream -m bench --shared-prefixes 0 \
            -c "$MOCK_C" -d "$((DURATION * 3 / 4))s" --timeout 120s --label "mock closed $p")"
        ROW[closed$p]="$(latency_row "$f")"
        log "mock $p: open ${ROW[open$p]} | closed ${ROW[closed$p]}"
    done
    {
        echo "### Bench 7 — routing policies, mock fleet (4 engines × 2 slots, one ${MOCK_SLOW}× slower)"
        echo
        echo "Measured on $(machine_line). Mock cost model: ${MOCK_CHUNKS} output tokens at ${MOCK_DECODE_US} µs (slow engine ×${MOCK_SLOW}), 200 µs per uncached prompt token; distinct prompts (no shared prefix); fleet capacity ~${MOCK_CAPACITY} req/s. Router WORKERS=${ROUTER_WORKERS:-2}, probe interval ${HEALTH_INTERVAL}s, binaries: ${BENCH_PROFILE:-release}."
        echo
        echo "Open loop at $MOCK_RATE req/s (${MOCK_LOAD} of capacity), ${DURATION}s, streamed; latency of the whole stream, ms:"
        echo
        echo "| policy | mean | p50 | p90 | p99 | ok req/s | ok | errors | p99 ÷ weighted |"
        echo "|---|---|---|---|---|---|---|---|---|"
        local w99 mean p50 p90 p99 rps ok err
        read -r _ _ _ w99 _ _ _ <<<"${ROW[openweighted]:-0 0 0 0 0 0 0}"
        for p in $POLICIES; do
            read -r mean p50 p90 p99 rps ok err <<<"${ROW[open$p]}"
            echo "| $p | $mean | $p50 | $p90 | $p99 | $rps | $ok | $err | $(ratio "$p99" "$w99") |"
        done
        echo
        echo "Closed loop at c=$MOCK_C (saturation), $((DURATION * 3 / 4))s, no shared prefixes:"
        echo
        echo "| policy | ok req/s | p50 ms | p99 ms | errors | ÷ weighted |"
        echo "|---|---|---|---|---|---|"
        local wrps
        read -r _ _ _ _ wrps _ _ <<<"${ROW[closedweighted]:-0 0 0 0 0 0 0}"
        for p in $POLICIES; do
            read -r mean p50 p90 p99 rps ok err <<<"${ROW[closed$p]}"
            echo "| $p | $rps | $p50 | $p99 | $err | $(ratio "$rps" "$wrps") |"
        done
        echo
        if [ -n "${ROW[openleast_load]:-}" ] && [ -n "${ROW[openweighted]:-}" ]; then
            read -r _ _ _ p99 _ _ _ <<<"${ROW[openleast_load]}"
            echo "- least_load p99 ÷ weighted p99 = $(ratio "$p99" "$w99") — target ≤ 0.7: **$(verdict "$p99" "$w99" 0.7)**"
        fi
        for p in $POLICIES; do
            read -r _ _ _ _ rps _ _ <<<"${ROW[closed$p]}"
            echo "- $p throughput ÷ weighted = $(ratio "$rps" "$wrps") — target ≥ 0.95: **$(awk -v a="$rps" -v b="$wrps" 'BEGIN{print (b>0 && a/b>=0.95)?"met":"missed"}')**"
        done
    } | emit
}

# start_llama NAME CORE: llama-server pinned to CORE; sets LLAMA_URL (not in a subshell, as
# start_mock).
start_llama() {
    local name="$1" core="$2" port
    port="$(free_port)"
    # --swa-full: gemma-3 uses sliding-window attention, and without a full-size SWA cache
    # llama.cpp keeps only the window and re-processes every prompt from its start (measured:
    # cache_n = 1 on a repeated 380-token system prompt; with it, cache_n = 373).
    OMP_WAIT_POLICY=passive taskset -c "$core" "$LLAMA_SERVER" -m "$GEMMA_GGUF" --host 127.0.0.1 --port "$port" \
        -t 1 -c 4096 --parallel 2 --swa-full --cache-ram 0 --metrics --no-webui --alias mock-model \
        --chat-template-file "$GEMMA_CHAT_TEMPLATE" >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
    local i
    for i in $(seq 1 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ] && break
        sleep 0.2
    done
    LLAMA_URL="http://127.0.0.1:$port"
}

real_phase() {
    local env_file="${SWITCHYARD_ENGINES_DIR:-$HOME/.cache/switchyard-engines}/engines.env"
    if [ ! -f "$env_file" ]; then
        log "no $env_file: run load/engines/setup.sh first; skipping the real-engine phase"
        return
    fi
    # shellcheck disable=SC1090
    source "$env_file"
    local urls=() core i=0
    for core in $REAL_CORES; do
        start_llama "llama$i" "$core"
        urls+=("$LLAMA_URL")
        i=$((i + 1))
    done
    log "llama-server instances: ${urls[*]}"
    local p c f workload=(-s chat_stream -m bench --shared-prefixes "$SHARED_PREFIXES" --prefix-words "$PREFIX_WORDS" --prompt-words 8 --max-tokens 8 --timeout 120s)
    for p in $POLICIES; do
        with_router "$p" llamacpp "${urls[@]}"
        # Warm-up (not measured): each engine's slots and the router's view start from this
        # policy's own history.
        load "real-warm-$p" -t "$ROUTER_URL" "${workload[@]}" -c 1 -n $((2 * SHARED_PREFIXES)) >/dev/null
        for c in 1 4; do
            f="$(load "real-$p-c$c" -t "$ROUTER_URL" "${workload[@]}" -c "$c" -d "${REAL_DURATION}s" --label "real $p c=$c")"
            ROW[real$p$c]="$(first_row "$f")"
            # The router's decisions so far (warm-up and cells), by reason.
            DECISIONS[$p$c]="$(curl -s --max-time 5 "$ROUTER_URL/metrics" | sed -n 's/^switchyard_routing_decisions_total{policy="[a-z_]*",reason="\([a-z_]*\)"} \([0-9]*\)$/\1 \2/p' | paste -sd, -)"
            log "real $p c=$c: TTFT mean p50 p90 p99 ok errors = ${ROW[real$p$c]}; decisions so far: ${DECISIONS[$p$c]}"
        done
    done
    {
        echo "### Bench 7 — routing policies, real engines (2 × llama-server, gemma-3-270m, 1 core and 2 slots each)"
        echo
        echo "Measured on $(machine_line). $SHARED_PREFIXES shared system prompts of ~$PREFIX_WORDS words (≈ $((PREFIX_WORDS * 5 / 4)) tokens) + distinct 10-word questions, 8 output tokens, streamed; ${REAL_DURATION}s per cell; llama-server -t 1 --parallel 2 -c 4096 --swa-full --cache-ram 0 --metrics, pinned with taskset to cores ${REAL_CORES}. Router probe interval ${HEALTH_INTERVAL}s, binaries: ${BENCH_PROFILE:-release}."
        echo
        echo "| policy | c | TTFT mean ms | p50 | p90 | p99 | requests | errors | mean ÷ weighted | p90 ÷ weighted |"
        echo "|---|---|---|---|---|---|---|---|---|---|"
        local mean p50 p90 p99 ok err wmean wp90
        for c in 1 4; do
            read -r wmean _ wp90 _ _ _ <<<"${ROW[realweighted$c]:-0 0 0 0 0 0}"
            for p in $POLICIES; do
                read -r mean p50 p90 p99 ok err <<<"${ROW[real$p$c]}"
                echo "| $p | $c | $mean | $p50 | $p90 | $p99 | $ok | $err | $(ratio "$mean" "$wmean") | $(ratio "$p90" "$wp90") |"
            done
        done
        echo
        for p in $POLICIES; do
            echo "- $p decisions by reason, counted from the warm-up on: after c=1 ${DECISIONS[${p}1]:-n/a}; after c=4 ${DECISIONS[${p}4]:-n/a}"
        done
        echo
        for c in 1 4; do
            read -r wmean _ wp90 _ _ _ <<<"${ROW[realweighted$c]:-0 0 0 0 0 0}"
            if [ -n "${ROW[realprefix_cache$c]:-}" ]; then
                read -r mean _ p90 _ _ _ <<<"${ROW[realprefix_cache$c]}"
                echo "- c=$c prefix_cache: mean ÷ weighted $(ratio "$mean" "$wmean"), p90 ÷ weighted $(ratio "$p90" "$wp90") — target ≤ 0.5: **$(awk -v a="$mean" -v b="$wmean" -v c="$p90" -v d="$wp90" 'BEGIN{print (b>0 && d>0 && a/b<=0.5 && c/d<=0.5)?"met":"missed"}')**"
            fi
            if [ -n "${ROW[realleast_load$c]:-}" ]; then
                read -r mean _ p90 _ _ _ <<<"${ROW[realleast_load$c]}"
                echo "- c=$c least_load: mean ÷ weighted $(ratio "$mean" "$wmean") — target ≤ 1 (within 5 % noise): **$(verdict "$mean" "$wmean" 1.05)**"
            fi
        done
    } | emit
}

for phase in $PHASES; do
    case "$phase" in
        mock) mock_phase ;;
        real) real_phase ;;
        *) echo "unknown phase $phase" >&2; exit 2 ;;
    esac
done

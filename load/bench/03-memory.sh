#!/usr/bin/env bash
# Bench 3 — router memory (VmRSS, sampled every 100 ms from /proc/PID/status; VmHWM at the end):
# idle, with 1,000 open streams, and with 50 concurrent 20 MiB transcription uploads.
# Targets: idle < 30 MiB; 1,000 streams < 150 MiB; uploads < 150 MiB.
# The upload part needs the multimodal endpoints (/v1/audio/transcriptions): on a build without
# them the router answers 404 and the row says "not available on this build".
#
# Usage: load/bench/03-memory.sh [--duration SECS] [--smoke]
# Env: STREAMS (1000), UPLOADS (50), UPLOAD_SIZE (20MiB), ROUTER_WORKERS (2), SKIP_BUILD=1.
source "$(dirname "$0")/lib.sh"
parse_common "$@"
STREAMS="${STREAMS:-1000}"
UPLOADS="${UPLOADS:-50}"
UPLOAD_SIZE="${UPLOAD_SIZE:-20MiB}"

build_release
raise_fd_limit 16384
# Streams of 100 chunks 100 ms apart: each stays open ~10 s.
start_fleet mock --workers 1 --chunks 100 --chunk-interval-ms 100
cat >"$WORK/models.yaml" <<EOF
models:
  - id: bench
    route: [{kind: vllm, base_url: "$FLEET_URL", provider_model_id: mock-model}]
  - id: bench-whisper
    type: transcription
    route: [{kind: whisper, base_url: "$FLEET_URL", provider_model_id: whisper-mock}]
EOF
start_router router "$WORK/models.yaml"
wait_ready "$ROUTER_URL" 30
sleep 1
IDLE="$(rss_kib "$ROUTER_PID")"
log "idle RSS $(mib "$IDLE") MiB"

HOLD="$(awk -v d="$DURATION" 'BEGIN{print (d>5)?d:5}')"
"$LOAD" run -q --threads "$GEN_THREADS" -t "$ROUTER_URL" -s chat_stream -m bench -c "$STREAMS" -d "$HOLD" --timeout 60s \
    --json "$WORK/streams.json" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
STREAM_PEAK="$(sample_rss "$ROUTER_PID" "$HOLD")"
wait "$LOAD_PID" || true
STREAM_INFO="$(j "$WORK/streams.json" '"%s streams completed, %s errors" % (r["totals"]["requests"], r["totals"]["errors"])')"
log "with $STREAMS streams: peak RSS $(mib "$STREAM_PEAK") MiB ($STREAM_INFO)"

# Does this build serve uploads? A small probe upload tells.
head -c 1024 /dev/zero >"$WORK/probe.wav"
PROBE="$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 \
    -F model=bench-whisper -F "file=@$WORK/probe.wav;type=audio/wav" \
    "$ROUTER_URL/v1/audio/transcriptions" || echo 000)"
UPLOAD_ROW=""
if [ "$PROBE" = 404 ] || [ "$PROBE" = 405 ]; then
    UPLOAD_ROW="| $UPLOADS × $UPLOAD_SIZE uploads | not available on this build (router answered $PROBE) | – | < 150 MiB | not measured |"
    log "uploads: not available on this build ($PROBE)"
else
    "$LOAD" run -q --threads "$GEN_THREADS" -t "$ROUTER_URL" -s transcription -m bench-whisper -c "$UPLOADS" \
        --file-size "$UPLOAD_SIZE" -d "$HOLD" --timeout 120s --json "$WORK/uploads.json" &
    LOAD_PID=$!
    PIDS+=("$LOAD_PID")
    UP_PEAK="$(sample_rss "$ROUTER_PID" "$HOLD")"
    wait "$LOAD_PID" || true
    UP_INFO="$(j "$WORK/uploads.json" '"%s uploads, %s errors" % (r["totals"]["requests"], r["totals"]["errors"])')"
    met="$(awk -v k="$UP_PEAK" 'BEGIN{print (k/1024<150)?"met":"missed"}')"
    UPLOAD_ROW="| $UPLOADS × $UPLOAD_SIZE uploads | $(mib "$UP_PEAK") | $UP_INFO (probe $PROBE) | < 150 MiB | **$met** |"
    log "uploads: peak RSS $(mib "$UP_PEAK") MiB ($UP_INFO)"
fi
HWM="$(hwm_kib "$ROUTER_PID")"

{
    echo "### Bench 3 — router memory"
    echo
    echo "Measured on $(machine_line). Router WORKERS=${ROUTER_WORKERS:-2}; ${HOLD}s per phase; VmHWM at the end $(mib "$HWM") MiB."
    echo
    echo "| state | peak RSS MiB | load | target | verdict |"
    echo "|---|---|---|---|---|"
    echo "| idle (started, endpoints ready) | $(mib "$IDLE") | – | < 30 MiB | **$(awk -v k="$IDLE" 'BEGIN{print (k/1024<30)?"met":"missed"}')** |"
    echo "| $STREAMS open streams | $(mib "$STREAM_PEAK") | $STREAM_INFO | < 150 MiB | **$(awk -v k="$STREAM_PEAK" 'BEGIN{print (k/1024<150)?"met":"missed"}')** |"
    echo "$UPLOAD_ROW"
} | emit

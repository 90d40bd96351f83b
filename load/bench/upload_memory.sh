#!/usr/bin/env bash
# Upload memory benchmark: many concurrent transcription uploads through the router, with the
# router's resident memory sampled from /proc. Shows that memory stays bounded by a small
# per-upload buffer, whatever the file size and whether the file is streamed (model first) or
# spooled to disk (file first).
#
#   load/bench/upload_memory.sh                        # 50 × 20 MiB, debug build
#   CONCURRENCY=100 FILE_MB=20 PROFILE=release load/bench/upload_memory.sh
#
# Needs: curl, a Linux /proc. Prints one line per scenario and a summary; exit code 1 if any
# upload failed.
set -euo pipefail

CONCURRENCY=${CONCURRENCY:-50}
FILE_MB=${FILE_MB:-20}
PROFILE=${PROFILE:-debug}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [[ "$PROFILE" == release ]]; then
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bins
else
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --bins
fi
BIN="$ROOT/target/$PROFILE"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n "${KEEP_WORK:-}" ]] && echo "work dir kept: $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait until `out` has the line "<prefix> http://HOST:PORT" and set URL to it. Processes are
# started in this shell (not in a $(...) subshell) so their pids are known and cleaned up.
wait_for_url() {
    local out=$1 prefix=$2
    for _ in $(seq 1 200); do
        URL=$(sed -n "s|^$prefix ||p" "$out" 2>/dev/null | head -1 || true)
        [[ -n "$URL" ]] && return
        sleep 0.1
    done
    echo "process did not start; its stderr:" >&2
    cat "$out.err" >&2
    exit 1
}

"$BIN/switchyard-mock" --port 0 >"$WORK/mock.out" 2>"$WORK/mock.out.err" &
PIDS+=($!)
wait_for_url "$WORK/mock.out" "switchyard-mock listening on"
MOCK=$URL
cat >"$WORK/models.yaml" <<EOF
models:
  - id: bench-whisper
    type: transcription
    route:
      - kind: whisper
        base_url: "$MOCK"
        provider_model_id: openai/whisper-small
EOF
(cd "$WORK" && exec env RUST_LOG="${ROUTER_LOG:-warn}" HEALTH_CHECK_INTERVAL_SECS=0.2 UPLOAD_SPOOL_DIR="$WORK/spool" \
    "$BIN/switchyard" serve --config "$WORK/models.yaml" --host 127.0.0.1 --port 0) \
    >"$WORK/router.out" 2>"$WORK/router.out.err" &
ROUTER_PID=$!
PIDS+=("$ROUTER_PID")
wait_for_url "$WORK/router.out" "switchyard listening on"
ROUTER=$URL
for _ in $(seq 1 100); do
    curl -s "$ROUTER/health" | grep -q '"ready":1' && break
    sleep 0.1
done

head -c $((FILE_MB * 1024 * 1024)) /dev/urandom >"$WORK/audio.wav"
FILE_BYTES=$(stat -c %s "$WORK/audio.wav")

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$ROUTER_PID/status"; }

# One scenario: CONCURRENCY uploads at once, RSS sampled every 20 ms; prints the peak.
run() {
    local name=$1 order=$2
    # Warm up the worker threads and connection pools with one small upload.
    curl -s -o /dev/null "$ROUTER/v1/audio/transcriptions" -F model=bench-whisper -F file=@"$WORK/models.yaml"
    local base peak samples=0
    base=$(rss_kib)
    peak=$base
    local start=$SECONDS
    local uploads=()
    for i in $(seq 1 "$CONCURRENCY"); do
        if [[ "$order" == model-first ]]; then
            curl -s -o "$WORK/resp.$i" "$ROUTER/v1/audio/transcriptions" \
                -F model=bench-whisper -F file=@"$WORK/audio.wav" &
        else
            curl -s -o "$WORK/resp.$i" "$ROUTER/v1/audio/transcriptions" \
                -F file=@"$WORK/audio.wav" -F model=bench-whisper &
        fi
        uploads+=($!)
    done
    running() {
        local pid
        for pid in "${uploads[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
        return 1
    }
    while running; do
        local now
        now=$(rss_kib)
        ((now > peak)) && peak=$now
        samples=$((samples + 1))
        sleep 0.02
    done
    wait "${uploads[@]}" || true
    local ok=0
    for i in $(seq 1 "$CONCURRENCY"); do
        if grep -q "\"file_bytes\":$FILE_BYTES" "$WORK/resp.$i"; then
            ok=$((ok + 1))
        else
            echo "  upload $i failed: $(head -c 300 "$WORK/resp.$i")" >&2
        fi
    done
    printf '%-11s uploads=%d ok=%d file=%dMiB elapsed=%ds rss_before=%.1fMiB rss_peak=%.1fMiB growth=%.1fMiB per_upload=%.0fKiB samples=%d\n' \
        "$name" "$CONCURRENCY" "$ok" "$FILE_MB" $((SECONDS - start)) \
        "$(echo "$base / 1024" | bc -l)" "$(echo "$peak / 1024" | bc -l)" \
        "$(echo "($peak - $base) / 1024" | bc -l)" "$(echo "($peak - $base) / $CONCURRENCY" | bc -l)" "$samples"
    [[ $ok -eq $CONCURRENCY ]]
}

echo "switchyard upload memory: $CONCURRENCY concurrent uploads of $FILE_MB MiB ($PROFILE build)"
echo "total uploaded per scenario: $((CONCURRENCY * FILE_MB)) MiB"
status=0
run streamed model-first || status=1
run spooled file-first || status=1
printf 'router VmHWM (peak RSS of the whole run): %.1f MiB\n' \
    "$(awk '/^VmHWM:/ {print $2 / 1024}' "/proc/$ROUTER_PID/status")"
exit $status

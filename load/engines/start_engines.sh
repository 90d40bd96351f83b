#!/usr/bin/env bash
# Start the real engines on free loopback ports and wait until each is healthy:
#   chat        llama-server, gemma-3-270m, chat completions      (router kind: llama-server / openai)
#   embeddings  llama-server --embeddings --pooling mean, same GGUF (second instance: with
#               --embeddings llama-server serves embeddings only)
#   tts         tts_server.py (espeak-ng)                          (router kind: tts-engine)
#   stt         stt_server.py (PocketSphinx)                       (router kind: whisper)
#
#   load/engines/start_engines.sh            # all four
#   ENGINES=chat,tts load/engines/start_engines.sh
#   load/engines/stop_engines.sh
#
# Writes $RUN/engines.json (URLs, models, pids, logs), $RUN/engines.run.env (shell-sourceable
# CHAT_BASE_URL=... lines) and $RUN/pids, with RUN=${ENGINES_RUN_DIR:-$CACHE/run}. Run setup.sh first.
#
# Knobs (environment): SWITCHYARD_ENGINES_DIR, ENGINES_RUN_DIR (default $CACHE/run; e2e.sh gives
#   each run its own, so it never touches engines started by hand), ENGINES, ENGINES_HOST (127.0.0.1),
#   LLAMA_THREADS (2), LLAMA_CTX (2048), LLAMA_PARALLEL (2), ENGINES_START_TIMEOUT (180 s),
#   ENGINES_API_KEY (unset: the engines are open; set: all four require "Bearer $ENGINES_API_KEY")
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SWITCHYARD_ENGINES_DIR:-$HOME/.cache/switchyard-engines}"
ENV_FILE="$CACHE/engines.env"
[ -f "$ENV_FILE" ] || { echo "no $ENV_FILE: run $HERE/setup.sh first" >&2; exit 1; }
RUN_OVERRIDE="${ENGINES_RUN_DIR:-}"  # engines.env sets ENGINES_RUN_DIR too; the caller's wins
# shellcheck disable=SC1090
source "$ENV_FILE"
RUN="${RUN_OVERRIDE:-$CACHE/run}"
mkdir -p "$RUN"
ENGINES="${ENGINES:-chat,embeddings,tts,stt}"
HOST="${ENGINES_HOST:-127.0.0.1}"
THREADS="${LLAMA_THREADS:-2}"
CTX="${LLAMA_CTX:-2048}"
PARALLEL="${LLAMA_PARALLEL:-2}"
TIMEOUT="${ENGINES_START_TIMEOUT:-180}"

if [ -f "$RUN/pids" ]; then
  alive=1
  while read -r name pid; do kill -0 "$pid" 2>/dev/null || alive=0; done <"$RUN/pids"
  if ((alive)) && [ -f "$RUN/engines.run.env" ]; then  # and really answering?
    while IFS='=' read -r key val; do
      [[ $key == *_BASE_URL ]] || continue
      [ "$(curl -s -o /dev/null -w '%{http_code}' "${val%/v1}/health")" = 200 ] || alive=0
    done <"$RUN/engines.run.env"
  fi
  if ((alive)) && [ -f "$RUN/engines.json" ]; then
    echo "engines already running (stop them with ENGINES_RUN_DIR=$RUN $HERE/stop_engines.sh):"
    cat "$RUN/engines.run.env"
    exit 0
  fi
  echo "stale engine state in $RUN: stopping what is left"
  "$HERE/stop_engines.sh" >/dev/null || true
fi
: >"$RUN/pids"
rm -f "$RUN/engines.json" "$RUN/engines.run.env"

want() { [[ ",$ENGINES," == *",$1,"* ]]; }
T0=$(date +%s.%N)

# OpenMP threads that spin while waiting for work starve each other on a busy 2-core box
# (measured: 2-5 tokens/s spinning vs ~20 passive); let them sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
LLAMA_COMMON=(-m "$GEMMA_GGUF" --host "$HOST" --port 0 -t "$THREADS" -c "$CTX" --parallel "$PARALLEL" --no-webui)
if [ -n "${ENGINES_API_KEY:-}" ]; then  # via a file / the environment, not the command line
  (umask 077; printf '%s\n' "$ENGINES_API_KEY" >"$RUN/api-key")
  LLAMA_COMMON+=(--api-key-file "$RUN/api-key")
  export ENGINE_API_KEY="$ENGINES_API_KEY"
else
  rm -f "$RUN/api-key"
  unset ENGINE_API_KEY
fi

start() {  # name logfile cmd...
  local name=$1 log=$2; shift 2
  "$@" >"$RUN/$name.out" 2>"$log" </dev/null &
  echo "$name $!" >>"$RUN/pids"
}

if want chat; then
  start chat "$RUN/chat.log" "$LLAMA_SERVER" "${LLAMA_COMMON[@]}" --alias gemma-3-270m \
    --chat-template-file "$GEMMA_CHAT_TEMPLATE"
fi
if want embeddings; then
  start embeddings "$RUN/embeddings.log" "$LLAMA_SERVER" "${LLAMA_COMMON[@]}" --alias gemma-3-270m-embed \
    --embeddings --pooling mean
fi
if want tts; then
  start tts "$RUN/tts.log" "$VENV_PYTHON" "$HERE/tts_server.py" --host "$HOST" --port 0 --quiet
fi
if want stt; then
  start stt "$RUN/stt.log" "$VENV_PYTHON" "$HERE/stt_server.py" --host "$HOST" --port 0 --quiet
fi

# The servers print "listening on http://HOST:PORT" (llama-server to its log, ours to stdout).
url_of() {
  local name=$1
  grep -ho 'listening on http://[^ ]*' "$RUN/$name.out" "$RUN/$name.log" 2>/dev/null | head -n1 | sed 's/^listening on //' || true
}

declare -A URL
deadline=$(( $(date +%s) + TIMEOUT ))
while read -r name pid; do
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name (pid $pid) exited during start-up; last log lines:" >&2
      tail -n 20 "$RUN/$name.log" >&2
      "$HERE/stop_engines.sh" >/dev/null || true
      exit 1
    fi
    u=$(url_of "$name")
    # llama-server answers /health 503 while it loads the model
    if [ -n "$u" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$u/health")" = 200 ]; then
      URL[$name]=$u
      break
    fi
    if (( $(date +%s) > deadline )); then
      echo "$name not healthy after ${TIMEOUT}s; see $RUN/$name.log" >&2
      "$HERE/stop_engines.sh" >/dev/null || true
      exit 1
    fi
    sleep 0.25
  done
done <"$RUN/pids"
ELAPSED=$(python3 -c "import time; print(f'{time.time() - $T0:.1f}')")

python3 - "$RUN" "$ELAPSED" "$THREADS" "$CTX" "$PARALLEL" <<EOF
import json, os, sys, time
run, elapsed, threads, ctx, parallel = sys.argv[1:]
urls = {"chat": "${URL[chat]:-}", "embeddings": "${URL[embeddings]:-}", "tts": "${URL[tts]:-}", "stt": "${URL[stt]:-}"}
pids = dict(line.split() for line in open(os.path.join(run, "pids")))
meta = {
    "chat": {"kind": "llama-server", "model": "gemma-3-270m", "endpoints": ["/v1/chat/completions", "/v1/completions"]},
    "embeddings": {"kind": "llama-server", "model": "gemma-3-270m-embed", "endpoints": ["/v1/embeddings"]},
    "tts": {"kind": "tts-engine", "model": "tts-1", "endpoints": ["/v1/audio/speech"]},
    "stt": {"kind": "whisper", "model": "whisper-1", "endpoints": ["/v1/audio/transcriptions", "/v1/audio/translations"]},
}
engines = {}
for name, url in urls.items():
    if not url:
        continue
    engines[name] = dict(meta[name], url=url, base_url=url + "/v1", health_url=url + "/health",
                         pid=int(pids[name]), log=os.path.join(run, name + ".log"))
doc = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "startup_seconds": float(elapsed),
       "api_key_required": bool(os.environ.get("ENGINE_API_KEY")),
       "llama": {"threads": int(threads), "ctx": int(ctx), "parallel": int(parallel),
                 "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
       "engines": engines}
with open(os.path.join(run, "engines.json"), "w") as f:
    json.dump(doc, f, indent=2)
with open(os.path.join(run, "engines.run.env"), "w") as f:
    for name, e in engines.items():
        up = name.upper()
        f.write(f"{up}_BASE_URL={e['base_url']}\n{up}_MODEL={e['model']}\n{up}_PID={e['pid']}\n")
EOF
echo "engines healthy after ${ELAPSED}s:"
sed 's/^/    /' "$RUN/engines.run.env"
echo "details: $RUN/engines.json; stop with ENGINES_RUN_DIR=$RUN $HERE/stop_engines.sh"

#!/usr/bin/env bash
# End to end with real engines and real clients: switchyard in front of llama.cpp's llama-server
# (chat, embeddings), the reference TTS (espeak-ng) and STT (PocketSphinx) servers and the mock
# engine (images, video, and a failing chat route that shows fallback), driven by the official
# openai SDK (openai_checks.py: chat, completions, …), the other APIs' SDK scripts when present
# (anthropic_checks.py, responses_checks.py; see section 4b) and by HybridInference's own curl
# commands (its local-model guide and README).
#
#   load/engines/e2e.sh               # everything; runs setup.sh first if the cache is missing
#   load/engines/e2e.sh --no-setup    # a missing cache is a FAIL instead
#   load/engines/e2e.sh --if-cached   # CI: "SKIP real-engine e2e: no cached engines at ..." + exit 0
#                                     # when the cache is missing (never runs setup.sh)
# Options: --debug (use debug binaries, as CI does after `cargo test`), --skip-build (use the
#   binaries as they are), --no-server-tests (skip test_servers.py),
#   --keep (keep the work dir), --tps-requests N (4), --tps-max-tokens N (64).
# Environment: SWITCHYARD_ENGINES_DIR (the cache, default ~/.cache/switchyard-engines),
#   E2E_TIMEOUT (2700 s for the whole run after setup), E2E_SETUP_TIMEOUT (5400 s),
#   E2E_SUMMARY (also write the summary there; default $CACHE/e2e-last-summary.txt).
#
# The openai SDK runs twice: against a plain-HTTP router, then (a subset) against a second router
# serving HTTPS itself with a CA this script makes with openssl (SKIP without openssl).
#
# Everything listens on 127.0.0.1 only. Every process it starts is stopped on exit (by pid),
# also on failure, Ctrl-C or timeout. Prints PASS/FAIL/SKIP per check with its time and a
# summary; exits 1 if any check failed (124 on timeout), 0 otherwise.
# shellcheck disable=SC2317  # functions reached through traps, after an exec that shellcheck sees as the end
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${SWITCHYARD_ENGINES_DIR:-$HOME/.cache/switchyard-engines}"
export SWITCHYARD_ENGINES_DIR="$CACHE"

NO_SETUP=0 IF_CACHED=0 SKIP_BUILD=0 SERVER_TESTS=1 KEEP=0 TPS_REQUESTS=4 TPS_MAX_TOKENS=64 PROFILE=release
ARGS=("$@")
while (($#)); do
  case "$1" in
    --no-setup) NO_SETUP=1 ;;
    --if-cached) IF_CACHED=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --debug) PROFILE=debug ;;
    --no-server-tests) SERVER_TESTS=0 ;;
    --keep) KEEP=1 ;;
    --tps-requests) TPS_REQUESTS="$2"; shift ;;
    --tps-max-tokens) TPS_MAX_TOKENS="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "e2e.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# ------------------------------------------------------------------ 0. the cache, bounded
cache_ok() {  # the files e2e needs from setup.sh
  [ -f "$CACHE/engines.env" ] || return 1
  # shellcheck disable=SC1091
  ( source "$CACHE/engines.env" && [ -x "$LLAMA_SERVER" ] && [ -f "$GEMMA_GGUF" ] \
      && [ -f "$GEMMA_CHAT_TEMPLATE" ] && [ -x "$VENV_PYTHON" ] \
      && "$VENV_PYTHON" -c 'import openai, pocketsphinx, pytest' 2>/dev/null )
}

if [ -z "${_E2E_INNER:-}" ]; then
  export _E2E_T0
  _E2E_T0=$(date +%s.%N)
  _E2E_SETUP_NOTE="cached engines at $CACHE"
  if ! cache_ok; then
    if ((IF_CACHED)); then
      echo "SKIP real-engine e2e: no cached engines at $CACHE (build them once with load/engines/setup.sh, ~30 min)"
      exit 0
    fi
    if ((NO_SETUP)); then
      echo "FAIL real-engine e2e: no cached engines at $CACHE and --no-setup given (run load/engines/setup.sh)"
      exit 1
    fi
    echo "==> no cached engines at $CACHE: running load/engines/setup.sh (first time ~30 min)"
    t=$(date +%s)
    if ! timeout -k 30 "${E2E_SETUP_TIMEOUT:-5400}" "$HERE/setup.sh"; then
      echo "FAIL real-engine e2e: setup.sh failed (see its output above)"
      exit 1
    fi
    _E2E_SETUP_NOTE="setup.sh ran, $(( $(date +%s) - t ))s"
  fi
  export _E2E_SETUP_NOTE _E2E_INNER=1
  # The rest runs under one deadline. timeout signals the whole process group (engines, router,
  # checks), and the EXIT trap below then stops what is left by pid.
  exec timeout -k 20 "${E2E_TIMEOUT:-2700}" "$0" "${ARGS[@]}"
fi

# ------------------------------------------------------------------ helpers
# shellcheck disable=SC1091
source "$CACHE/engines.env"
PY="$VENV_PYTHON"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-e2e.XXXXXX")"
mkdir -p "$WORK/logs" "$WORK/out"
export ENGINES_RUN_DIR="$WORK/engines"   # our own engine run dir: never touches engines started by hand
SUMMARY_FILE="${E2E_SUMMARY:-$CACHE/e2e-last-summary.txt}"
SEP=$'\x1f'      # field separator in RESULTS (details may contain anything else)
RESULTS=()      # "VERDICT<SEP>name<SEP>seconds<SEP>detail"
PIDS=()         # mocks and router
ENGINES_STARTED=0
STATUS=0

now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
record() {  # VERDICT NAME SECONDS DETAIL (kept on one line: newlines become " / ")
  local d=${4//$'\n'/ / }
  RESULTS+=("$1$SEP$2$SEP$3$SEP$d")
  printf '%-4s %-26s %7ss  %s\n' "$1" "$2" "$3" "$d"
}

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  ((rc == 0)) || STATUS=$rc
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done   # router first, then mocks
  if ((ENGINES_STARTED)); then "$HERE/stop_engines.sh" >"$WORK/logs/stop_engines.log" 2>&1 || true; fi
  print_summary
  if ((KEEP)) || [ "$STATUS" != 0 ]; then
    echo "logs and outputs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$STATUS"
}
on_signal() {
  record FAIL "interrupted" "$(secs_since "$_E2E_T0")" "signal $1 (E2E_TIMEOUT ${E2E_TIMEOUT:-2700}s reached, or Ctrl-C)"
  STATUS=124
  exit 124
}
trap cleanup EXIT
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

print_summary() {
  local pass=0 fail=0 skip=0 line v n s d wall f="$WORK/summary.txt"
  wall=$(secs_since "$_E2E_T0")
  {
    echo
    echo "==================== real-engine e2e summary ===================="
    echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%M:%SZ); $_E2E_SETUP_NOTE"
  } >"$f"
  for line in "${RESULTS[@]}"; do
    IFS=$SEP read -r v n s d <<<"$line"
    case $v in PASS) pass=$((pass + 1)) ;; FAIL) fail=$((fail + 1)) ;; SKIP) skip=$((skip + 1)) ;; esac
    printf '%-4s %-26s %7ss  %s\n' "$v" "$n" "$s" "$d" >>"$f"
  done
  {
    echo "-----------------------------------------------------------------"
    echo "e2e: $pass passed, $fail failed, $skip skipped; wall time ${wall}s"
  } >>"$f"
  cat "$f"
  { mkdir -p "$(dirname "$SUMMARY_FILE")" && cp "$f" "$SUMMARY_FILE"; } 2>/dev/null || true
  if ((fail)) && [ "$STATUS" = 0 ]; then STATUS=1; fi
}

# step NAME TIMEOUT CMD...: run CMD (output to logs/NAME.log) under a timeout; PASS with the
# last line of its output (or the last line matching $STEP_DETAIL) as detail, or FAIL with the
# last line and the log path.
step() {
  local name=$1 limit=$2 t rc detail
  shift 2
  t=$(now)
  timeout -k 5 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  detail=$(grep -v '^\s*$' "$WORK/logs/$name.log" | tail -n1 | sed 's/^ *//' | cut -c1-150)
  if ((rc == 0)) && [ -n "${STEP_DETAIL:-}" ]; then
    detail=$(grep -- "$STEP_DETAIL" "$WORK/logs/$name.log" | tail -n1 | sed 's/:$//' | cut -c1-150)
  fi
  if ((rc == 0)); then
    record PASS "$name" "$(secs_since "$t")" "$detail"
  else
    ((rc == 124)) && detail="timed out after ${limit}s; $detail"
    record FAIL "$name" "$(secs_since "$t")" "exit $rc: $detail (log: $WORK/logs/$name.log)"
  fi
  return $rc
}

# wait_line FILE PATTERN SECONDS PID: print the first line of FILE matching PATTERN.
wait_line() {
  local file=$1 pat=$2 secs=$3 pid=$4 i
  for i in $(seq $((secs * 10))); do
    if grep -q -- "$pat" "$file" 2>/dev/null; then grep -m1 -- "$pat" "$file"; return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

echo "real-engine e2e: cache $CACHE, work dir $WORK"

# ------------------------------------------------------------------ 1. the reference servers' own tests
if ((SERVER_TESTS)); then
  step test_servers.py 600 "$PY" -m pytest -q -p no:cacheprovider "$HERE/test_servers.py"
else
  record SKIP test_servers.py 0.00 "--no-server-tests"
fi

# ------------------------------------------------------------------ 2. engines
ENGINES_STARTED=1
if STEP_DETAIL="engines healthy" step start_engines 240 "$HERE/start_engines.sh"; then
  # shellcheck disable=SC1091
  source "$ENGINES_RUN_DIR/engines.run.env"
else
  exit 1
fi

# ------------------------------------------------------------------ 3. router and mocks
BIN="$ROOT/target/$PROFILE"
if ((SKIP_BUILD)) && [ -x "$BIN/switchyard" ] && [ -x "$BIN/switchyard-mock" ]; then
  record SKIP cargo_build 0.00 "--skip-build: using $BIN as it is"
elif [ "$PROFILE" = debug ]; then
  # CI: the debug binaries `cargo test` just built; no second (release) build.
  step cargo_build 2400 bash -c "cd '$ROOT' && cargo build --bins" || exit 1
else
  step cargo_build 2400 bash -c "cd '$ROOT' && cargo build --release --bins" || exit 1
fi

start_mock() {  # NAME ARGS...: sets MOCK_URL
  local name=$1 line pid
  shift
  "$BIN/switchyard-mock" --host 127.0.0.1 --port 0 "$@" >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err" </dev/null &
  pid=$!
  PIDS+=("$pid")
  line=$(wait_line "$WORK/logs/$name.out" "listening on" 30 "$pid") || return 1
  MOCK_URL=${line##* }
}
t=$(now)
if start_mock mock-media --model mock-image --model mock-video --video-steps 3 --video-step-ms 200 \
   && MEDIA_URL=$MOCK_URL \
   && start_mock mock-broken --model gemma-3-270m --fail-rate 1.0 --fail-status 500 \
   && BROKEN_URL=$MOCK_URL; then
  record PASS start_mocks "$(secs_since "$t")" "media $MEDIA_URL; broken (fail_rate 1.0, 500) $BROKEN_URL"
else
  record FAIL start_mocks "$(secs_since "$t")" "switchyard-mock did not start (logs in $WORK/logs)"
  exit 1
fi

# The generated config: every route points at a loopback engine started above.
cat >"$WORK/models.yaml" <<EOF
# Generated by load/engines/e2e.sh for one run.
models:
  - id: gemma-3-270m
    name: Gemma 3 270M (llama.cpp), behind a broken mock route that shows fallback
    type: chat
    context_length: 1024
    pricing: {prompt: "0", completion: "0"}
    route:
      # 50 of 51 first attempts pick the broken mock (500 every time); the router retries on
      # llama-server. After 5 failures in a row its circuit opens and llama-server gets the
      # traffic straight away (half-open trial every CIRCUIT_COOLDOWN_SECS).
      - {name: broken-mock, kind: vllm, weight: 50, base_url: "$BROKEN_URL/v1", provider_model_id: gemma-3-270m}
      - {name: llama-server, kind: llamacpp, weight: 1, base_url: "${CHAT_BASE_URL%/v1}", provider_model_id: gemma-3-270m}
  - id: gemma-3-270m-solo
    name: Gemma 3 270M (llama.cpp only; the tokens/s comparison)
    type: chat
    context_length: 1024
    route:
      - {name: llama-server, kind: llamacpp, base_url: "${CHAT_BASE_URL%/v1}", provider_model_id: gemma-3-270m}
  - id: gemma-3-270m-translated
    name: Gemma 3 270M (llama.cpp) behind a kind that serves chat only (APIs translated or refused)
    type: chat
    context_length: 1024
    route:
      - {name: chat-only, kind: transformers, base_url: "${CHAT_BASE_URL%/v1}", provider_model_id: gemma-3-270m}
  - id: gemma-3-270m-embed
    name: Gemma 3 270M embeddings (llama.cpp --embeddings --pooling mean)
    type: embedding
    route:
      - {kind: llamacpp, base_url: "${EMBEDDINGS_BASE_URL%/v1}", provider_model_id: gemma-3-270m-embed}
  - id: tts-1
    name: espeak-ng (reference TTS server)
    type: speech
    supported_voices: [alloy, ash, ballad, coral, echo, fable, nova, onyx, sage, shimmer, verse]
    route:
      - {kind: tts-engine, base_url: "${TTS_BASE_URL%/v1}", provider_model_id: tts-1}
  - id: whisper-1
    name: PocketSphinx en-us (reference STT server)
    type: transcription
    route:
      - {kind: whisper, base_url: "${STT_BASE_URL%/v1}", provider_model_id: whisper-1}
  - id: mock-image
    name: Mock image engine
    type: image
    route:
      - {kind: custom, base_url: "$MEDIA_URL", provider_model_id: mock-image}
  - id: mock-video
    name: Mock video engine
    type: video
    route:
      - {kind: video-engine, base_url: "$MEDIA_URL", provider_model_id: mock-video}
EOF

API_KEY="sk-e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ADMIN_KEY="sk-e2e-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# launch_router NAME [VAR=VALUE...]: start a router on the generated config (logs NAME.out/.err,
# files under $WORK/NAME) with the extra environment given, and wait until /health shows every
# endpoint ready; sets LAUNCHED_URL. CURL_TLS (curl options, e.g. --cacert) reaches an https one.
launch_router() {
  local name=$1 t line code ready=0 pid
  shift
  t=$(now)
  mkdir -p "$WORK/$name"
  (
    cd "$WORK/$name" || exit 1
    exec env API_KEYS="$API_KEY" ADMIN_API_KEY="$ADMIN_KEY" RUST_LOG="${ROUTER_RUST_LOG:-warn}" \
      SQLITE_DB_PATH="$WORK/$name/router.db" UPLOAD_SPOOL_DIR="$WORK/$name/spool" \
      VIDEO_STORAGE_DIR="$WORK/$name/video" VIDEO_POLL_INTERVAL_MS=200 HEALTH_CHECK_INTERVAL_SECS=2 \
      CIRCUIT_COOLDOWN_SECS=600 WORKERS=2 "$@" \
      "$BIN/switchyard" serve --config "$WORK/models.yaml" --host 127.0.0.1 --port 0
  ) >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err" </dev/null &
  pid=$!
  PIDS+=("$pid")
  if line=$(wait_line "$WORK/logs/$name.out" "switchyard listening on" 60 "$pid"); then
    LAUNCHED_URL=${line##* }
  else
    record FAIL "start_$name" "$(secs_since "$t")" "no 'listening' line; see $WORK/logs/$name.err"
    return 1
  fi
  # /health: every endpoint probed and ready
  for _ in $(seq 600); do
    # shellcheck disable=SC2086 # CURL_TLS is a list of options
    code=$(curl -s ${CURL_TLS:-} -o "$WORK/out/health-wait.json" -w '%{http_code}' --max-time 2 "$LAUNCHED_URL/health" || true)
    if [ "$code" = 200 ] && python3 "$HERE/curl_checks.py" health "$WORK/out/health-wait.json" >/dev/null; then
      ready=1; break
    fi
    sleep 0.1
  done
  if ((ready)); then
    record PASS "start_$name" "$(secs_since "$t")" "$LAUNCHED_URL ($(python3 "$HERE/curl_checks.py" health "$WORK/out/health-wait.json"))"
  else
    record FAIL "start_$name" "$(secs_since "$t")" "/health never showed every endpoint ready: $(cat "$WORK/out/health-wait.json" 2>/dev/null)"
    return 1
  fi
}

API_KEY="sk-e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ADMIN_KEY="sk-e2e-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
launch_router router || exit 1
ROUTER=$LAUNCHED_URL

# ------------------------------------------------------------------ 4. the openai SDK through the router
t=$(now)
mkdir -p "$WORK/tmp"
# record_checks PREFIX LOG RC T0: one result per "PASS|FAIL|SKIP name secs detail" line a check
# script printed; a failing exit without a FAIL line is a FAIL of its own.
record_checks() {
  local prefix=$1 log=$2 rc=$3 t0=$4 v name secs detail
  while read -r v name secs detail; do
    record "$v" "$prefix:$name" "${secs%s}" "$(cut -c1-150 <<<"$detail")"
  done < <(grep -E '^(PASS|FAIL|SKIP) ' "$log")
  if ((rc != 0)) && ! grep -q '^FAIL ' "$log"; then
    record FAIL "$prefix" "$(secs_since "$t0")" "exit $rc; see $log"
  fi
}
# completions.create goes natively to llama-server (gemma-3-270m-solo, kind llamacpp); the
# chat-only route must refuse it with the SDK's own status error (501 unsupported_endpoint).
TMPDIR="$WORK/tmp" timeout -k 5 600 "$PY" "$HERE/openai_checks.py" --base-url "$ROUTER/v1" --api-key "$API_KEY" \
  --chat-model gemma-3-270m --embed-model gemma-3-270m-embed --tts-model tts-1 --stt-model whisper-1 \
  --image-model mock-image --video-model mock-video \
  --completions-model gemma-3-270m-solo --chat-only-model gemma-3-270m-translated \
  -v >"$WORK/logs/openai_checks.log" 2>&1
record_checks sdk "$WORK/logs/openai_checks.log" $? "$t"

# ------------------------------------------------------------------ 4b. the other APIs' SDK scripts
# Each script, when this tree has it, runs once against both gemma-3-270m-solo (kind llamacpp:
# llama-server's own endpoint where the kind serves the API natively) and gemma-3-270m-translated
# (kind transformers: the router translates to and from chat), printing
# "PASS|FAIL|SKIP name secs detail" lines and exiting 1 on any failure. anthropic_checks.py gets
# the router's root (the anthropic SDK adds /v1/messages), responses_checks.py its /v1.
# Tool calls are skipped here: gemma-3-270m with this template never emits one, even when
# tool_choice forces it (measured: plain text back, natively and translated). The tool-call
# paths, native and translated, JSON and streamed, are checked by the same scripts against the
# mock engine and by tests/api/{messages,responses}.rs.
NO_TOOLS="gemma-3-270m makes no tool calls; covered against the mock by tests/api/{messages,responses}.rs"
sdk_script() {  # LABEL SCRIPT MODULE ARGS...
  local label=$1 script=$2 module=$3 t0
  shift 3
  if [ ! -f "$HERE/$script" ]; then
    record SKIP "$label" 0.00 "load/engines/$script is not in this tree"
    return
  fi
  if ! "$PY" -c "import $module" 2>/dev/null; then
    record FAIL "$label" 0.00 "python package $module missing from $PY (requirements.txt; rerun setup.sh)"
    return
  fi
  t0=$(now)
  TMPDIR="$WORK/tmp" timeout -k 5 600 "$PY" "$HERE/$script" --api-key "$API_KEY" --no-tools "$NO_TOOLS" \
    "$@" >"$WORK/logs/$label.log" 2>&1
  record_checks "$label" "$WORK/logs/$label.log" $? "$t0"
}
sdk_script anthropic anthropic_checks.py anthropic --base-url "$ROUTER" \
  --model gemma-3-270m-solo --translated-model gemma-3-270m-translated
# No engine here serves Responses natively (llama.cpp's is translated: it stores nothing and
# its events do not suit the SDK), so both models take the translated path; the native relay
# and previous_response_id are checked against the mock by tests/api/responses.rs.
sdk_script responses responses_checks.py openai --base-url "$ROUTER/v1" \
  --translated-model gemma-3-270m-solo

# ------------------------------------------------------------------ 4c. the openai SDK over HTTPS
# A second router on the same engines serving HTTPS itself (TLS_CERT_FILE/TLS_KEY_FILE), with a
# CA made here by openssl; the SDK trusts it through SSL_CERT_FILE (httpx reads it), curl
# through --cacert and checks that HTTP/2 is negotiated.
https_pass() {
  local tls=$WORK/tls t0
  if ! command -v openssl >/dev/null 2>&1; then
    record SKIP https 0.00 "openssl not installed: no test CA for the HTTPS pass"
    return
  fi
  mkdir -p "$tls"
  t0=$(now)
  if ! {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=switchyard e2e CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
      && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" \
      && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext" \
      && openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 2 -extfile "$tls/san.ext" -out "$tls/server.pem"
  } >"$WORK/logs/https_ca.log" 2>&1; then
    record FAIL https_ca "$(secs_since "$t0")" "openssl failed; see $WORK/logs/https_ca.log"
    return
  fi
  record PASS https_ca "$(secs_since "$t0")" "test CA and server certificate in $tls"
  CURL_TLS="--cacert $tls/ca.pem" launch_router router-https \
    TLS_CERT_FILE="$tls/server.pem" TLS_KEY_FILE="$tls/server.key" || return
  local https_router=$LAUNCHED_URL version
  t0=$(now)
  version=$(curl -s --http2 --cacert "$tls/ca.pem" -o "$WORK/out/https-models.json" -w '%{http_version}' \
    -H "Authorization: Bearer $API_KEY" "$https_router/v1/models" || true)
  if [ "$version" = 2 ]; then
    record PASS https_http2 "$(secs_since "$t0")" "curl --http2 --cacert: HTTP/$version"
  else
    record FAIL https_http2 "$(secs_since "$t0")" "curl --http2 --cacert negotiated '$version'"
  fi
  t0=$(now)
  SSL_CERT_FILE="$tls/ca.pem" TMPDIR="$WORK/tmp" timeout -k 5 600 "$PY" "$HERE/openai_checks.py" \
    --base-url "$https_router/v1" --api-key "$API_KEY" \
    --chat-model gemma-3-270m-solo --embed-model gemma-3-270m-embed --tts-model tts-1 --stt-model whisper-1 \
    --only models,chat,chat_stream,embeddings,tts,stt,error_auth \
    -v >"$WORK/logs/openai_checks_https.log" 2>&1
  record_checks sdk-https "$WORK/logs/openai_checks_https.log" $? "$t0"
}
https_pass

# ------------------------------------------------------------------ 5. HybridInference's curl commands
# Its guide "Adding a New Local Model" and its gateway README, as written there,
# with only the host, the model and the key changed. Outputs are checked by curl_checks.py.
AUTH="Authorization: Bearer $API_KEY"
CHAT_DIRECT=${CHAT_BASE_URL%/v1}
OUT=$WORK/out
check() {  # NAME CURL-OUTPUT-FILE CURL-EXIT KIND ARGS...: check a curl output
  local name=$1 file=$2 crc=$3 t0=$4 detail
  shift 4
  if ((crc != 0)); then
    record FAIL "$name" "$(secs_since "$t0")" "curl exit $crc; output $file"
    return
  fi
  if detail=$(python3 "$HERE/curl_checks.py" "$@" "$file" 2>&1); then
    record PASS "$name" "$(secs_since "$t0")" "$(cut -c1-150 <<<"$detail")"
  else
    record FAIL "$name" "$(secs_since "$t0")" "$(cut -c1-150 <<<"$detail") (output $file)"
  fi
}
check_sse() {  # NAME MODEL T0 CURL...: pipe a streaming curl into the SSE checker as it arrives
  local name=$1 model=$2 t0=$3 detail rc
  shift 3
  timeout -k 5 180 "$@" 2>"$OUT/$name.err" | tee "$OUT/$name.sse" \
    | python3 "$HERE/curl_checks.py" sse - --model "$model" --min-seconds 1 --since "$t0" >"$OUT/$name.check" 2>&1
  rc=("${PIPESTATUS[@]}")
  detail=$(cat "$OUT/$name.check")
  if [ "${rc[0]}" = 0 ] && [ "${rc[2]}" = 0 ]; then
    record PASS "$name" "$(secs_since "$t0")" "$(cut -c1-150 <<<"$detail")"
  else
    record FAIL "$name" "$(secs_since "$t0")" "curl exit ${rc[0]}: $(cut -c1-150 <<<"$detail") (output $OUT/$name.sse)"
  fi
}

# the guide, step 1: the local server itself, before the gateway
t=$(now); curl "$CHAT_DIRECT"/v1/models >"$OUT/guide-direct-models.json" 2>"$OUT/guide-direct-models.err"
check guide:direct-models "$OUT/guide-direct-models.json" $? "$t" models --expect gemma-3-270m
t=$(now)
curl -s -X POST "$CHAT_DIRECT"/v1/chat/completions \
  -H "Content-Type: application/json" \
  -d '{
    "model": "gemma-3-270m",
    "messages": [{"role": "user", "content": "Hello"}],
    "max_tokens": 32
  }' >"$OUT/guide-direct-chat.json"
check guide:direct-chat "$OUT/guide-direct-chat.json" $? "$t" chat
# the guide, step 5: through the gateway
t=$(now); curl "$ROUTER"/v1/models -H "$AUTH" >"$OUT/guide-models.json" 2>"$OUT/guide-models.err"
check guide:models "$OUT/guide-models.json" $? "$t" models \
  --expect gemma-3-270m,gemma-3-270m-embed,tts-1,whisper-1,mock-image,mock-video
t=$(now)
curl -s -X POST "$ROUTER"/v1/chat/completions -H "$AUTH" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "gemma-3-270m",
    "messages": [{"role": "user", "content": "Hello from the gateway"}],
    "max_tokens": 32
  }' >"$OUT/guide-chat.json"
check guide:chat "$OUT/guide-chat.json" $? "$t" chat --model gemma-3-270m
t=$(now)
check_sse guide:stream gemma-3-270m "$t" \
  curl -N -s -X POST "$ROUTER"/v1/chat/completions -H "$AUTH" \
  -H "Content-Type: application/json" \
  -d '{
    "model": "gemma-3-270m",
    "messages": [{"role": "user", "content": "Stream one sentence"}],
    "stream": true,
    "max_tokens": 64
  }'
# the README, "Quick Checks" and "Example Requests"
t=$(now); curl "$ROUTER"/health >"$OUT/readme-health.json" 2>"$OUT/readme-health.err"
check readme:health "$OUT/readme-health.json" $? "$t" health
t=$(now); curl "$ROUTER"/v1/models -H "$AUTH" >"$OUT/readme-models.json" 2>"$OUT/readme-models.err"
check readme:models "$OUT/readme-models.json" $? "$t" models --expect gemma-3-270m
t=$(now)
env \
http_proxy= \
curl -X POST "$ROUTER"/v1/chat/completions -H "$AUTH" \
-H "Content-Type: application/json" \
-d '{
"model": "gemma-3-270m",
"messages": [{"role": "user", "content": "Ping"}],
"max_tokens": 64
}' >"$OUT/readme-chat.json" 2>"$OUT/readme-chat.err"
check readme:chat "$OUT/readme-chat.json" $? "$t" chat --model gemma-3-270m
t=$(now)
check_sse readme:stream gemma-3-270m "$t" \
env \
http_proxy= \
curl -N -X POST "$ROUTER"/v1/chat/completions -H "$AUTH" \
-H "Content-Type: application/json" \
-d '{
"model": "gemma-3-270m",
"messages": [
{"role": "system", "content": "You are a helpful assistant."},
{"role": "user", "content": "Describe the architecture."}
],
"stream": true,
"temperature": 0.7,
"max_tokens": 256
}'
# the platform's own gateway path (its docs' model-type table): /api/v1/ai/chat/completions
t=$(now)
curl -s -X POST "$ROUTER"/api/v1/ai/chat/completions -H "$AUTH" \
  -H "Content-Type: application/json" \
  -d '{"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}' \
  >"$OUT/platform-chat.json"
check curl:platform-path "$OUT/platform-chat.json" $? "$t" chat --model gemma-3-270m
# and the same chat without a key: 401 invalid_api_key in OpenAI's shape
t=$(now)
code=$(curl -s -o "$OUT/noauth.json" -w '%{http_code}' -X POST "$ROUTER"/v1/chat/completions \
  -H "Content-Type: application/json" \
  -d '{"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Ping"}], "max_tokens": 8}')
if [ "$code" = 401 ]; then
  check curl:no-key-401 "$OUT/noauth.json" 0 "$t" error --code invalid_api_key
else
  record FAIL curl:no-key-401 "$(secs_since "$t")" "HTTP $code, expected 401 ($OUT/noauth.json)"
fi

# ------------------------------------------------------------------ 6. fallback happened
t=$(now)
curl -s "$BROKEN_URL/_mock/stats" >"$OUT/broken-mock-stats.json"
curl -s -H "Authorization: Bearer $ADMIN_KEY" "$ROUTER/metrics" >"$OUT/metrics.txt"
curl -s -H "Authorization: Bearer $ADMIN_KEY" "$ROUTER/admin/backends" >"$OUT/backends.json"
if detail=$(python3 - "$OUT/broken-mock-stats.json" "$OUT/metrics.txt" "$OUT/backends.json" "$BROKEN_URL" <<'PYEOF' 2>&1
import json, re, sys
stats = json.load(open(sys.argv[1]))
metrics = open(sys.argv[2]).read()
backends = json.load(open(sys.argv[3]))["data"]
faults = stats.get("faults_injected", 0)
# e.g. switchyard_fallbacks_total{model="gemma-3-270m",outcome="success"} 3
fallbacks = sum(float(m.group(1)) for m in re.finditer(
    r'^switchyard_fallbacks_total\{[^}]*model="gemma-3-270m"[^}]*outcome="success"[^}]*\} ([0-9.e+]+)$', metrics, re.M))
def endpoint(route):
    for ep in backends:
        if any(r.get("model") == "gemma-3-270m" and r.get("route") == route for r in ep.get("routes", [])):
            return ep
    return {}
broken, llama = endpoint("broken-mock"), endpoint("llama-server")
msg = (f"broken mock answered {faults} requests with 500; switchyard_fallbacks_total{{outcome=success}} "
       f"{fallbacks:g}; broken route: {broken.get('failures_total')} failures, circuit "
       f"{broken.get('circuit')}; llama-server: {llama.get('requests_total')} requests")
if faults < 1 or fallbacks < 1:
    print("FAIL: " + msg)
    sys.exit(1)
print(msg)
PYEOF
); then
  record PASS fallback "$(secs_since "$t")" "$detail"
else
  record FAIL fallback "$(secs_since "$t")" "$detail (outputs in $OUT)"
fi

# ------------------------------------------------------------------ 7. tokens/s: direct vs through the router
# Same settings, same run, ABBA order (direct, router, router, direct) so a drift in the load of
# the shared machine affects both sides alike. gemma-3-270m-solo has only the llama-server route.
tps() {  # NAME BASE_URL MODEL KEY
  timeout -k 5 600 "$PY" "$HERE/tokens_per_second.py" --base-url "$2" --model "$3" --api-key "$4" \
    --requests "$TPS_REQUESTS" --max-tokens "$TPS_MAX_TOKENS" --concurrency 1 \
    --json-out "$OUT/tps-$1.json" >"$WORK/logs/tps-$1.log" 2>&1
}
t=$(now)
tps_ok=1
tps direct1 "$CHAT_BASE_URL" gemma-3-270m sk-no-key-required || tps_ok=0
tps router1 "$ROUTER/v1" gemma-3-270m-solo "$API_KEY" || tps_ok=0
tps router2 "$ROUTER/v1" gemma-3-270m-solo "$API_KEY" || tps_ok=0
tps direct2 "$CHAT_BASE_URL" gemma-3-270m sk-no-key-required || tps_ok=0
if ((tps_ok)) && detail=$(python3 - "$OUT" <<'PYEOF' 2>&1
import json, statistics, sys
out = sys.argv[1]
def side(names):
    runs = [json.load(open(f"{out}/tps-{n}.json")) for n in names]
    reqs = [r for run in runs for r in run["requests"]]
    tokens = sum(r["tokens"] for r in reqs)
    wall = sum(run["wall_seconds"] for run in runs)
    decode = [r["decode_tps"] for r in reqs if r["decode_tps"] > 0]
    ttft = sorted(r["ttft"] for r in reqs)
    return {"n": len(reqs), "tps": tokens / wall, "decode": statistics.median(decode),
            "ttft": statistics.median(ttft) * 1000}
d, r = side(["direct1", "direct2"]), side(["router1", "router2"])
print(f"direct {d['tps']:.1f} tok/s (decode p50 {d['decode']:.1f}, TTFT p50 {d['ttft']:.0f} ms) | "
      f"router {r['tps']:.1f} tok/s (decode p50 {r['decode']:.1f}, TTFT p50 {r['ttft']:.0f} ms) | "
      f"router/direct {r['tps'] / d['tps']:.3f}, TTFT {round(r['ttft'] - d['ttft']):+d} ms; {d['n']}+{r['n']} requests")
PYEOF
); then
  record PASS tokens_per_second "$(secs_since "$t")" "$detail"
else
  record FAIL tokens_per_second "$(secs_since "$t")" "$(tail -n1 <<<"${detail:-a run failed}"); logs $WORK/logs/tps-*.log"
fi
for n in direct1 router1 router2 direct2; do
  sed "s/^/    [$n] /" "$WORK/logs/tps-$n.log" 2>/dev/null
done

exit 0

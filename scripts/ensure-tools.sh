#!/usr/bin/env bash
# Tools the deployment checks in `make test` need, installed when missing (idempotent):
#   promtool  Debian's `prometheus` package   (alert rules: check and unit tests)
#   checkov   PyPI, pinned, in its own venv    (.tools/checkov: policy check of the manifests)
#   kubectl   with its built-in kustomize      (on the machine image; not installable here)
# kubernetes-validate (schemas) is a dev dependency in pyproject.toml.
set -u
cd "$(dirname "$0")/.."
CHECKOV_VERSION=3.3.30
status=0

if ! command -v promtool >/dev/null 2>&1; then
  echo "tools: installing promtool (Debian package prometheus)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    >/dev/null || { echo "tools: promtool could not be installed" >&2; status=1; }
fi
if [ ! -x .tools/checkov/bin/checkov ] || ! .tools/checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "tools: installing checkov $CHECKOV_VERSION into .tools/checkov"
  { python3 -m venv .tools/checkov && .tools/checkov/bin/pip install -q "checkov==$CHECKOV_VERSION"; } \
    >/dev/null 2>&1 || { echo "tools: checkov could not be installed" >&2; status=1; }
fi
if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "tools: kubectl with kustomize is missing (the manifest tests will fail under CI=true)" >&2
  status=1
fi
[ "$status" = 0 ] && echo "tools: promtool, checkov, kubectl ready"
exit "$status"

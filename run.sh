#!/usr/bin/env bash
# One-stop entry point on a fresh machine: creates .venv on first use (installs this package, nnU-Net v2 and
# PyTorch), then runs the requested job.
#   ./run.sh demo [glua_demo options]   phantom -> convert -> plan/preprocess -> ... (see README)
#   ./run.sh test [pytest options]      the test suite (CPU only)
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-}"; shift || true
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import nnunet_glua, nnunetv2, pytest" 2>/dev/null; then
  echo "Setting up .venv (first run only; PyTorch and nnU-Net v2 are a large download)..."
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
fi
. .venv/bin/activate
case "$job" in
  demo) exec glua_demo "$@" ;;
  test) exec python -m pytest -q tests "$@" ;;
  *) echo "usage: ./run.sh demo|test [options]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Everything a GPU can tell us about tunecli in one run of under 8 minutes; --device cpu runs
# every step at small sizes in about 35 s (a test does, so the script cannot rot).
#   bash benchmarks/gpu_check.sh --data-root ../shared/data [--out gpu_check.json]
#   bash benchmarks/gpu_check.sh --device cpu --data-root ROOT
# On a machine whose Python lacks tunecli's other packages, wheels in .whl/ are installed first
# (see benchmarks/README.md, "gpu_check.sh").
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if ! "$python" -c "import optuna, hyperopt, typer, tunecli" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpu-check-site .whl/*.whl
  export PYTHONPATH=/tmp/gpu-check-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$python" benchmarks/gpu_check.py "$@"

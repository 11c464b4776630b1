#!/usr/bin/env bash
# GPU readiness: bf16 sampling, SFT and DPO through fusechat's stages on Qwen2.5-Coder-0.5B-Instruct;
# prints tokens/s and peak GPU memory (JSON lines). Arguments go to scripts/gpu_check.py (--help).
# On a machine without package access, wheels in .whl/ are installed to /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec python3 scripts/gpu_check.py "$@"

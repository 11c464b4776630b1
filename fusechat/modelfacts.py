"""Facts about a model that decide where it fits, read from its config only (never its weights): the
parameter count and KV-cache size from the architecture fields of a folder's config.json, a GGUF
file's header, the hub's config.json or (offline) `PAPER_CONFIGS`; and the memory fit of generation and
training on this machine's GPUs or RAM, with the tensor-parallel size vLLM needs.

The ground floor: the planner, the vLLM backend and the CLI read these facts; this module knows no stage.
accelerate's `estimate-memory` covers one model's weights and needs the hub, hence our own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fusechat import FusechatError
from fusechat.catalog import CATALOG, prepare
from fusechat.hardware import ram_gib
from fusechat.readers import hub_reachable

GIB = 1024**3
USABLE = 0.9  # share of a GPU's memory vLLM (and a careful user) gives a model

# The published config.json fields of the paper's models (hidden, layers, heads, kv heads, head dim,
# intermediate, vocabulary, tied embeddings), for planning without the hub.
PAPER_CONFIGS = {
    "google/gemma-2-27b-it": (4608, 46, 32, 16, 128, 36864, 256000, True),
    "google/gemma-2-9b-it": (3584, 42, 16, 8, 256, 14336, 256000, True),
    "mistralai/Mistral-Large-Instruct-2407": (12288, 88, 96, 8, 128, 28672, 32768, False),
    "Qwen/Qwen2.5-72B-Instruct": (8192, 80, 64, 8, 128, 29568, 152064, False),
    "Qwen/Qwen2.5-Math-72B-Instruct": (8192, 80, 64, 8, 128, 29568, 152064, False),
    "Qwen/Qwen2.5-7B-Instruct": (3584, 28, 28, 4, 128, 18944, 152064, False),
    "meta-llama/Llama-3.1-70B-Instruct": (8192, 80, 64, 8, 128, 28672, 128256, False),
    "meta-llama/Llama-3.1-8B-Instruct": (4096, 32, 32, 8, 128, 14336, 128256, False),
    "meta-llama/Llama-3.2-3B-Instruct": (3072, 28, 24, 8, 128, 8192, 128256, True),
    "meta-llama/Llama-3.2-1B-Instruct": (2048, 16, 32, 8, 64, 8192, 128256, True),
    "RLHFlow/ArmoRM-Llama3-8B-v0.1": (4096, 32, 32, 8, 128, 14336, 128256, False),
    # the catalog's models, for a plan made before they are installed (their GGUF's size is in the catalog)
    "HuggingFaceTB/SmolLM2-135M-Instruct": (576, 30, 9, 3, 64, 1536, 49152, True),
    "Qwen/Qwen2.5-Coder-0.5B-Instruct": (896, 24, 14, 2, 64, 4864, 151936, True),
    "Qwen/Qwen2.5-Coder-1.5B-Instruct": (1536, 28, 12, 2, 128, 8960, 151936, True),
    "google/gemma-3-270m": (640, 18, 4, 1, 256, 2048, 262144, True),
}


@dataclass
class Arch:
    """What planning needs from a model's config."""

    params: float
    layers: int
    kv_heads: int
    head_dim: int
    heads: int
    weight_bytes: float  # at the dtype it runs in (bf16 for HF models, the file's size for a GGUF)
    origin: str  # where the facts came from

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * dtype_bytes


def arch_from_fields(hidden, layers, heads, kv_heads, head_dim, inter, vocab, tied, origin, dtype_bytes=2,
                     qkv_bias=False) -> Arch:
    """A decoder with grouped-query attention and a gated MLP (Llama, Qwen2, Mistral, Gemma 2): exact for
    Llama-style models, within a fraction of a percent for the others (their extra norms)."""
    head_dim = head_dim or hidden // heads
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    attention += (heads + 2 * kv_heads) * head_dim if qkv_bias else 0  # Qwen2's q/k/v biases
    params = vocab * hidden * (1 if tied else 2) + layers * (attention + 3 * hidden * inter + 2 * hidden) + hidden
    return Arch(params, layers, kv_heads, head_dim, heads, params * dtype_bytes, origin)


def arch_from_config(cfg: dict, origin: str) -> Arch:
    cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model's
    dtype_bytes = 4 if str(cfg.get("torch_dtype") or cfg.get("dtype")) == "float32" else 2
    return arch_from_fields(cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
                            cfg.get("num_key_value_heads") or cfg["num_attention_heads"], cfg.get("head_dim"),
                            cfg["intermediate_size"], cfg["vocab_size"], cfg.get("tie_word_embeddings", False),
                            origin, dtype_bytes, cfg.get("model_type") == "qwen2")


def arch_from_gguf(path: Path) -> Arch:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))  # memory-maps the file; only the header is read

    def value(key):
        f = reader.fields[key]
        return int(f.parts[f.data[0]][0])

    name = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    hidden, heads = value(f"{name}.embedding_length"), value(f"{name}.attention.head_count")
    kv = value(f"{name}.attention.head_count_kv") if f"{name}.attention.head_count_kv" in reader.fields else heads
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    arch = arch_from_fields(hidden, value(f"{name}.block_count"), heads, kv, None,
                            value(f"{name}.feed_forward_length"), vocab, tied, f"GGUF header of {path.name}",
                            qkv_bias=name == "qwen2")
    arch.weight_bytes = path.stat().st_size
    return arch


def hub_config(ref: str) -> dict | None:
    if not hub_reachable():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(ref, "config.json")).read_text())
    except Exception:  # gated, moved, or no config: huggingface_hub raises several kinds
        return None


@cache
def model_arch(ref: str) -> Arch | None:
    """The model's facts, from the first place that has them; None when none does (planned as unknown)."""
    path = Path(ref).expanduser()
    if ref in CATALOG or path.suffix == ".gguf":
        try:
            return arch_from_gguf(prepare(ref, install=False) if ref in CATALOG else path)
        except (FusechatError, OSError, KeyError, ValueError):
            entry = CATALOG.get(ref)
            if entry is None or entry.hub_id not in PAPER_CONFIGS:
                return None
            # not installed yet (planning installs nothing): the upstream config, the catalog file's size
            arch = arch_from_fields(*PAPER_CONFIGS[entry.hub_id], origin=f"{entry.hub_id} (fusechat's config snapshot)",
                                    qkv_bias=entry.hub_id.startswith("Qwen/"))
            arch.weight_bytes = entry.size
            return arch
    if (path / "config.json").is_file():
        try:
            return arch_from_config(json.loads((path / "config.json").read_text()), f"{path}/config.json")
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSON errors are ValueErrors
            raise FusechatError(f"{path}/config.json: not a readable model config ({type(e).__name__}: "
                                f"{' '.join(str(e).split())[:120]})") from None
    config = hub_config(ref)  # the hub's own file when it can be reached; the snapshot otherwise
    if config is not None:
        return arch_from_config(config, f"{ref} config.json (hub)")
    if ref in PAPER_CONFIGS:
        return arch_from_fields(*PAPER_CONFIGS[ref], origin=f"{ref} (fusechat's config snapshot)")
    return None


# ---- fit ------------------------------------------------------------------------------------------


@dataclass
class Fit:
    where: str  # "1 GPU", "tensor parallel 4", "CPU RAM", "endpoint"
    gib: float  # memory per device
    ok: bool
    advice: str = ""


def generation_fit(arch: Arch | None, backend: str, gpus: int, gpu_gb: float, sequences: int, tokens: int,
                   tensor_parallel: int | None = None) -> Fit:
    """Where a model that generates (a source, a judge, the eval) fits with `sequences` of `tokens` cached."""
    if backend == "openai":
        return Fit("endpoint", 0.0, True)
    if backend == "dataset":
        return Fit("no model: responses from a dataset", 0.0, True)
    if arch is None:
        return Fit("config not found: fit not checked", 0.0, True, "model config not found: fit not checked")
    kv = arch.kv_bytes_per_token() * sequences * tokens
    if backend == "llamacpp" or gpus == 0:
        need = (arch.weight_bytes + kv) / GIB
        return Fit("CPU RAM", need, need <= ram_gib() * USABLE, "" if need <= ram_gib() * USABLE else
                   f"needs {need:.0f} GiB, this machine has {ram_gib():.0f}")
    usable = gpu_gb * USABLE * 1e9 / GIB
    if backend == "transformers":  # the whole model on one device
        need = (arch.weight_bytes + kv) / GIB
        if need <= usable:
            return Fit("1 GPU", need, True)
        tp = tensor_parallel_for(arch, gpus, gpu_gb, tokens)
        hint = (f"use backend: vllm (tensor_parallel_size {tp})" if tp else
                "serve it elsewhere (backend: openai, an endpoint)")
        return Fit("1 GPU", need, False, f"needs {need:.0f} GiB on one GPU of {gpu_gb:g} GB: {hint}")
    tp = tensor_parallel or tensor_parallel_for(arch, gpus, gpu_gb, tokens)  # vllm
    if tp is None or tp > gpus:
        return Fit(f"tensor parallel {tp or '?'}", arch.weight_bytes / GIB / max(gpus, 1), False,
                   f"weights {arch.weight_bytes / GIB:.0f} GiB and a cache of 16 x {tokens} tokens do not fit "
                   f"{gpus} GPU(s) of {gpu_gb:g} GB: "
                   "serve it elsewhere (backend: openai, an endpoint)")
    need = arch.weight_bytes / GIB / tp
    return Fit(f"vLLM, tensor parallel {tp}", need + 0.1 * usable, need <= 0.9 * usable)


def tensor_parallel_for(arch: Arch, gpus: int, gpu_gb: float, tokens: int) -> int | None:
    """The fewest GPUs (a power of two dividing the heads) holding the weights and a batch of 16 sequences."""
    usable = gpu_gb * USABLE * 1e9
    for tp in (1, 2, 4, 8, 16):
        if tp > max(gpus, 1) or arch.heads % tp or arch.kv_heads % tp and tp % arch.kv_heads:
            continue
        if (arch.weight_bytes + arch.kv_bytes_per_token() * 16 * tokens) / tp <= usable:
            return tp
    return None


def tensor_parallel(name: str, model: str, tokens: int) -> int:
    """The tensor-parallel size for vLLM on this machine's GPUs, or one line saying it cannot fit."""
    import torch

    arch = model_arch(model)
    gpus = torch.cuda.device_count()
    if arch is None or not gpus:
        return 1
    gpu_gb = torch.cuda.get_device_properties(0).total_memory / 1e9
    size = tensor_parallel_for(arch, gpus, gpu_gb, tokens)
    if size is None:
        raise FusechatError(f"{name}: {model} ({arch.weight_bytes / GIB:.0f} GiB of weights) does not fit "
                            f"{gpus} GPU(s) of {gpu_gb:.0f} GB; serve it elsewhere (backend: openai)")
    return size


def training_fit(arch: Arch | None, gpus: int, gpu_gb: float, lora: bool) -> Fit:
    """Full fine-tuning with AdamW keeps ~16 bytes a parameter (weights, gradients, two moments, fp32),
    sharded over the GPUs by FSDP/ZeRO-3; LoRA keeps the bf16 weights and little else. Activations
    are left out (activation checkpointing bounds them)."""
    if arch is None:
        return Fit("config not found: fit not checked", 0.0, True, "model config not found: fit not checked")
    need = arch.params * (2.2 if lora else 16) / GIB
    if gpus == 0:
        ok = need <= ram_gib() * USABLE
        return Fit("CPU RAM", need, ok, "" if ok else f"needs {need:.0f} GiB to train, this machine has "
                   f"{ram_gib():.0f}: `lora:` or GPUs")
    per_gpu = need / gpus
    usable = gpu_gb * USABLE * 1e9 / GIB
    advice = "" if per_gpu <= usable else f"needs {per_gpu:.0f} GiB per GPU: more GPUs or `lora:`"
    return Fit(f"{gpus} GPU(s), sharded" if gpus > 1 else "1 GPU", per_gpu, per_gpu <= usable, advice)

"""`fusechat plan`: what a recipe will cost before any work: work per stage, memory fit, time, disk.

It reads model configs only, never weights: a folder's config.json, a GGUF file's header, the hub's
config.json, or (offline) `PAPER_CONFIGS`, a snapshot of the paper models' published configs. The
parameter count and KV-cache size follow from the architecture fields. Time comes from throughput
figures, each labelled with where it came from:
- a finished stage of an earlier run in the same run folder (its measured tokens/s and lengths);
- `fusechat plan --calibrate`: a short measurement on this machine (a few real prompts per source, a
  few judgments, a few training steps of the target), cached in the fusechat cache folder;
- on GPUs, a roofline: an H100's bf16 rate at the utilisation BENCHMARKS.md assumes for planning (an
  estimate, labelled so; our own H100 figures are for a 0.5B model, too small to scale from).
accelerate's `estimate-memory` covers one model's weights and needs the hub; nothing estimates a whole
fusion pipeline, hence this module.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fusechat import FusechatError
from fusechat.hardware import describe
from fusechat.recipe import Recipe, Source

GIB = 1024**3
USABLE = 0.9  # share of a GPU's memory vLLM (and a careful user) gives a model
PROMPT_TOKENS = 256  # a typical chat prompt, for KV-cache and training lengths when nothing is measured
DEFAULT_LENGTH_SHARE = 0.5  # expected answer length as a share of max_new_tokens when nothing is measured
KEPT_SHARE = 0.5  # with `only_correct`, the share of checked answers assumed correct (and so rewarded)
# A checked prompt ("any") becomes a DPO pair when one source has a right and a wrong answer, an SFT
# example when only right ones exist, nothing when none is right; until a build says, assumed in these
# shares (the CPU runs measured 0.24-0.27 SFT, 0.25-0.66 pairs: math pairs easily, constraints less).
ANY_SPLIT = {"sft": 0.3, "dpo": 0.5}
# Planning assumptions for GPUs (BENCHMARKS.md, "Planning figures"): an H100's dense bf16 rate and the
# share of it each kind of work reaches on models of billions of parameters. A token costs 2 x params
# FLOPs to generate or score, 6 x params to train on (8 x params for DPO's extra reference pass).
H100_FLOPS = 989e12
UTILISATION = {"generate": 0.15, "score": 0.30, "sft": 0.30, "dpo": 0.30}
FLOPS_PER_PARAM = {"generate": 2, "score": 2, "sft": 6, "dpo": 8}

# The published config.json fields of the paper's models (hidden, layers, heads, kv heads, head dim,
# intermediate, vocabulary, tied embeddings), for planning without the hub.
PAPER_CONFIGS = {
    "google/gemma-2-27b-it": (4608, 46, 32, 16, 128, 36864, 256000, True),
    "google/gemma-2-9b-it": (3584, 42, 16, 8, 256, 14336, 256000, True),
    "mistralai/Mistral-Large-Instruct-2407": (12288, 88, 96, 8, 128, 28672, 32768, False),
    "Qwen/Qwen2.5-72B-Instruct": (8192, 80, 64, 8, 128, 29568, 152064, False),
    "Qwen/Qwen2.5-7B-Instruct": (3584, 28, 28, 4, 128, 18944, 152064, False),
    "meta-llama/Llama-3.1-70B-Instruct": (8192, 80, 64, 8, 128, 28672, 128256, False),
    "meta-llama/Llama-3.1-8B-Instruct": (4096, 32, 32, 8, 128, 14336, 128256, False),
    "meta-llama/Llama-3.2-3B-Instruct": (3072, 28, 24, 8, 128, 8192, 128256, True),
    "meta-llama/Llama-3.2-1B-Instruct": (2048, 16, 32, 8, 64, 8192, 128256, True),
    "RLHFlow/ArmoRM-Llama3-8B-v0.1": (4096, 32, 32, 8, 128, 14336, 128256, False),
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


@cache
def hub_reachable() -> bool:
    """One quick connection to the hub (its retries take a minute per file when offline)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


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
    from fusechat.catalog import CATALOG

    path = Path(ref).expanduser()
    if ref in CATALOG or path.suffix == ".gguf":
        from fusechat.catalog import prepare

        try:  # a catalog model not installed yet stays unknown: planning installs nothing
            return arch_from_gguf(prepare(ref, install=False) if ref in CATALOG else path)
        except (FusechatError, OSError, KeyError, ValueError):
            return None
    if (path / "config.json").is_file():
        return arch_from_config(json.loads((path / "config.json").read_text()), f"{path}/config.json")
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


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 16.0


def generation_fit(arch: Arch | None, backend: str, gpus: int, gpu_gb: float, sequences: int, tokens: int,
                   tensor_parallel: int | None = None) -> Fit:
    """Where a model that generates (a source, a judge, the eval) fits with `sequences` of `tokens` cached."""
    if backend == "openai":
        return Fit("endpoint", 0.0, True)
    if backend == "dataset":
        return Fit("no model: responses from a dataset", 0.0, True)
    if arch is None:
        return Fit("unknown", 0.0, True, "model config not found: fit not checked")
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
                   f"weights {arch.weight_bytes / GIB:.0f} GiB do not fit {gpus} GPU(s) of {gpu_gb:g} GB: "
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
        return Fit("unknown", 0.0, True, "model config not found: fit not checked")
    need = arch.params * (2.2 if lora else 16) / GIB
    if gpus == 0:
        return Fit("CPU RAM", need, need <= ram_gib() * USABLE)
    per_gpu = need / gpus
    usable = gpu_gb * USABLE * 1e9 / GIB
    advice = "" if per_gpu <= usable else f"needs {per_gpu:.0f} GiB per GPU: more GPUs or `lora:`"
    return Fit(f"{gpus} GPU(s), sharded" if gpus > 1 else "1 GPU", per_gpu, per_gpu <= usable, advice)


# ---- work and time ----------------------------------------------------------------------------------


@dataclass
class Row:
    stage: str
    what: str  # the model or part of the stage
    work: str
    tokens: float = 0.0
    seconds: float | None = None
    basis: str = ""  # where the speed figure came from
    fit: Fit | None = None


@dataclass
class Plan:
    recipe: str
    hardware: str
    rows: list[Row] = field(default_factory=list)
    disk_gib: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds or 0 for r in self.rows)

    def problems(self) -> list[str]:
        return [f"{r.stage} {r.what}: {r.fit.advice}" for r in self.rows if r.fit and not r.fit.ok]


def prompt_counts(recipe: Recipe) -> tuple[Counter, Counter, str]:
    """Prompts per domain and per domain/split: from the run folder when made, else built in memory."""
    made = recipe.run_path / "prompts" / "manifest.json"
    if made.is_file():
        counts = json.loads(made.read_text())["counts"]
        return Counter(counts["by_domain"]), Counter(counts["by_split"]), "the run folder's prompts"
    from fusechat.prompts import collect_prompts

    try:
        prompts, _ = collect_prompts(recipe)  # packs, files and datasets, as the stage reads them
    except FusechatError as e:  # files not here yet (a cluster recipe planned elsewhere): the declared counts
        if any(spec.n is None for spec in recipe.prompts.sets):
            raise FusechatError(f"{e}; `fusechat plan` needs the prompts, or `n` on every prompt set") from None
        by_domain = Counter()
        for spec in recipe.prompts.sets:
            by_domain[spec.domain] += spec.n
        by_split = Counter({f"{d}/{'sft' if d == 'chinese' else 'any'}": n for d, n in by_domain.items()})
        if by_domain["instruction"]:  # the seeded 40:60 split of open instruction prompts
            sft = round(by_domain["instruction"] * recipe.prompts.sft_fraction)
            del by_split["instruction/any"]
            by_split.update({"instruction/sft": sft, "instruction/dpo": by_domain["instruction"] - sft})
        return by_domain, by_split, "each set's `n` (its files are not readable here)"
    return (Counter(p.domain for p in prompts), Counter(f"{p.domain}/{p.split}" for p in prompts),
            "the recipe's prompt sets")


def imported_counts(recipe: Recipe) -> tuple[Counter, Counter, str]:
    """A `data:` recipe's SFT examples and DPO pairs: the build's when made, else the sets' rows."""
    from fusechat.import_data import _rows

    cfg, by_split = recipe.data, Counter()
    built = recipe.run_path / "build" / "manifest.json"
    if built.is_file():
        counts = json.loads(built.read_text())["counts"]
        by_split.update({f"{d}/sft": n for d, n in counts["sft"].items()} | {f"{d}/dpo": n for d, n in counts["dpo"].items()})
    else:
        for kind, name in (("sft", cfg.sft), ("dpo", cfg.dpo)):
            if not name:
                continue
            try:
                by_split[f"instruction/{kind}"] = sum(1 for _ in _rows(name, cfg.split, cfg.limit))
            except FusechatError as e:  # a hub set planned offline: its declared limit, if any
                if cfg.limit is None:
                    raise FusechatError(f"{e}; `fusechat plan` needs the data, or `data.limit`") from None
                by_split[f"instruction/{kind}"] = cfg.limit
    by_domain = Counter()
    for key, n in by_split.items():
        by_domain[key.split("/")[0]] += n
    return by_domain, by_split, "the data sets (no sampling: the recipe starts at build)"


def measured(recipe: Recipe) -> dict:
    """Speeds and lengths from the run folder's finished stages, when there are any."""
    out = {"tokens_per_s": {}, "lengths": {}, "prompt_tokens": None}
    sample = recipe.run_path / "sample" / "manifest.json"
    if sample.is_file():
        for name, t in (json.loads(sample.read_text()).get("timings") or {}).items():
            out["tokens_per_s"][name] = t["tokens_per_s"]
        lengths, prompts = {}, []
        for line in (recipe.run_path / "sample" / "samples.jsonl").open():
            r = json.loads(line)
            lengths.setdefault((r["source"], r["domain"]), []).append(r["completion_tokens"])
            prompts.append(r["prompt_tokens"])
        out["lengths"] = {k: sum(v) / len(v) for k, v in lengths.items()}
        out["prompt_tokens"] = sum(prompts) / len(prompts) if prompts else None
    return out


def calibration_file() -> Path:
    from fusechat.catalog import cache_dir

    return cache_dir() / "calibration.json"


def calibration_key(kind: str, model: str, backend: str, batch: int) -> str:
    from fusechat.hardware import usable_cores

    return f"{kind}|{model}|{backend}|batch {batch}|{usable_cores()} cores"


def calibrated() -> dict:
    try:
        return json.loads(calibration_file().read_text())
    except (OSError, ValueError):
        return {}


def make_plan(recipe: Recipe, gpus: int = 0, gpu_gb: float = 80.0) -> Plan:
    by_domain, by_split, prompt_origin = imported_counts(recipe) if recipe.data else prompt_counts(recipe)
    # On a CPU, name it: bf16 units or not is a factor of ~3 in every decoding and training speed (BENCHMARKS.md).
    hardware = f"{gpus} GPU(s) of {gpu_gb:g} GB" if gpus else f"this CPU ({describe()}, {ram_gib():.0f} GiB RAM)"
    plan = Plan(recipe.name, hardware, notes=[f"prompts: {dict(by_domain)} (from {prompt_origin})"])
    seen, cal = measured(recipe), calibrated()
    disk = 0.0
    prompt_tokens = []  # measured prompt lengths, for the training rows

    def speed(kind: str, model: str, backend: str, batch: int, arch: Arch | None, measured_name: str = ""):
        if measured_name and measured_name in seen["tokens_per_s"]:
            return seen["tokens_per_s"][measured_name], "measured in this run folder"
        if backend == "dataset":
            return 1e9, "read from a dataset"
        if gpus:
            if backend == "openai":
                return None, "an endpoint: not estimated"
            if arch is None:
                return None, "unknown model size"
            # generation runs one model on the GPUs that hold it, replicated over the rest (data parallel)
            return gpus * H100_FLOPS * UTILISATION[kind] / (FLOPS_PER_PARAM[kind] * arch.params), \
                "H100 roofline at BENCHMARKS.md's planning utilisation (estimate)"
        entry = cal.get(calibration_key(kind, model, backend, batch))
        if entry:
            return entry["tokens_per_s"], "calibrated on this machine"
        return None, "not calibrated: run `fusechat plan --calibrate`"

    # sample
    total_samples = 0
    for source in recipe.sources:
        arch = None if source.backend == "dataset" else model_arch(source.model)
        samples, tokens = 0, 0.0
        for domain, n in by_domain.items():
            k = n * source.samples_for(domain)
            entry = cal.get(calibration_key("length", source.model, domain, source.sampling.max_new_tokens)) or {}
            length = seen["lengths"].get((source.name, domain)) or entry.get("tokens") or \
                source.sampling.max_new_tokens * DEFAULT_LENGTH_SHARE
            if k and entry.get("prompt_tokens"):
                prompt_tokens.append(entry["prompt_tokens"])
            samples, tokens = samples + k, tokens + k * length
        total_samples += samples
        rate, basis = speed("generate", source.model, source.backend, source.batch_size, arch, source.name)
        fit = generation_fit(arch, source.backend, gpus, gpu_gb, source.batch_size or 8,
                             PROMPT_TOKENS + source.sampling.max_new_tokens, source.tensor_parallel_size)
        plan.rows.append(Row("sample", source.name, f"{samples:,} answers", tokens,
                             tokens / rate if rate else None, basis, fit))
        disk += samples * (4 * tokens / max(samples, 1) + 400) * 2  # JSONL + Arrow copy
        disk += arch.weight_bytes if arch and source.backend != "openai" else 0  # the downloaded weights

    # score
    reward = recipe.score.reward
    checked = {d: n for d, n in by_domain.items() if d in ("math", "code")} | {"instruction": by_split["instruction/any"]}
    judged = 0.0
    for d in reward.domains:  # with only_correct, only the checked answers that pass are rewarded
        k = sum(s.samples_for(d) for s in recipe.sources)
        kept = KEPT_SHARE if reward.only_correct or reward.only_ranked else 1.0
        per_prompt = {"open": k * 1.0, "checked": k * kept}
        if reward.only_ranked:
            # answers cut at max_new_tokens are never judged (calibrated share that finish), and a prompt's
            # lone judgeable answer is not either: k p - k p (1 - p)^(k - 1), p the judgeable share
            finished = [f for s in recipe.sources if s.samples_for(d) for f in [(cal.get(calibration_key(
                "length", s.model, d, s.sampling.max_new_tokens)) or {}).get("finished")] if f is not None]
            finished = sum(finished) / len(finished) if finished else 1.0
            for kind, p in (("open", finished), ("checked", finished * kept)):
                per_prompt[kind] = k * p - k * p * (1 - p) ** (k - 1)
        judged += (by_domain[d] - checked.get(d, 0)) * per_prompt["open"] + checked.get(d, 0) * per_prompt["checked"]
    judged = round(judged)
    scored = recipe.run_path / "score" / "manifest.json"
    if scored.is_file():  # measured
        judged = json.loads(scored.read_text())["counts"].get("with_reward", judged)
    if reward.kind != "none" and judged:
        arch = model_arch(reward.model)
        if reward.kind == "judge":
            entry = cal.get(calibration_key("judge", reward.model, reward.backend, 1))
            # the load is paid once: spread over the judgments
            per = entry["seconds_per_item"] + entry.get("load_s", 0) / judged if entry else None
            fit = generation_fit(arch, reward.backend, gpus, gpu_gb, 1, 4096)
            basis = "calibrated on this machine" if per else "not calibrated: run `fusechat plan --calibrate`"
        else:
            rate, basis = speed("score", reward.model, "transformers", reward.batch_size, arch)
            if not gpus and rate:  # calibrated decoding; one forward pass over a sequence runs ~10x faster
                rate *= 10
            length = PROMPT_TOKENS + (sum(seen["lengths"].values()) / len(seen["lengths"]) if seen["lengths"]
                                      else min((s.sampling.max_new_tokens for s in recipe.sources), default=1024) * DEFAULT_LENGTH_SHARE)
            per = length / rate if rate else None
            fit = generation_fit(arch, "transformers", gpus, gpu_gb, reward.batch_size, reward.max_length)
        work = f"{'~' if reward.only_correct or reward.only_ranked else ''}{judged:,} responses rewarded ({reward.kind})"
        plan.rows.append(Row("score", reward.model, work, 0, per * judged if per else None, basis, fit))
    code = sum(by_domain["code"] * s.samples_for("code") for s in recipe.sources)
    if code:
        plan.rows.append(Row("score", "sandbox", f"{code:,} programs run", 0,
                             code * 0.15 / recipe.score.workers, "BENCHMARKS.md: ~0.15 s a sandboxed run"))

    # train: one SFT answer or one pair per prompt (method.md §4)
    target = recipe.target.model if recipe.target else None
    if target:
        arch = model_arch(target)
        either = sum(n for key, n in by_split.items() if key.endswith("/any"))
        sft_n = sum(n for key, n in by_split.items() if key.endswith("/sft")) + round(either * ANY_SPLIT["sft"])
        dpo_n = sum(n for key, n in by_split.items() if key.endswith("/dpo")) + round(either * ANY_SPLIT["dpo"])
        built = recipe.run_path / "build" / "manifest.json"
        if built.is_file():  # measured: what the build made
            counts = json.loads(built.read_text())["counts"]
            sft_n, dpo_n = sum(counts["sft"].values()), sum(counts["dpo"].values())
        prompt = seen["prompt_tokens"] or (sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else PROMPT_TOKENS)
        answer_lengths = list(seen["lengths"].values()) or [
            (cal.get(calibration_key("length", s.model, d, s.sampling.max_new_tokens)) or {}).get("tokens")
            for s in recipe.sources for d in by_domain if s.samples_for(d)]
        answer_lengths = [x for x in answer_lengths if x]
        length = prompt + (sum(answer_lengths) / len(answer_lengths) if answer_lengths else
                           min((s.sampling.max_new_tokens for s in recipe.sources), default=1024) * DEFAULT_LENGTH_SHARE)
        batch = recipe.sft.batch_size
        for stage, cfg, n, per_item in (("sft", recipe.sft, sft_n, 1), ("dpo", recipe.dpo, dpo_n, 2)):
            tokens = n * per_item * min(length, cfg.max_length) * cfg.epochs
            rate, basis = speed(stage, target, "train", batch, arch)
            plan.rows.append(Row(stage, target, f"~{n:,} {'examples' if per_item == 1 else 'pairs'} "
                                 f"x {cfg.epochs:g} epoch(s)", tokens, tokens / rate if rate else None, basis,
                                 training_fit(arch, gpus, gpu_gb, cfg.lora is not None)))
            if arch:  # the saved model (bf16)
                disk += arch.params * 2
        if arch:  # at the peak, during one training stage: two checkpoints of fp32 weights and AdamW moments
            disk += 2 * arch.params * 12

    # eval
    ev = recipe.eval
    if target:
        items = {"math": ev.math.n if ev.math else 0, "humaneval": ev.humaneval or 0,
                 "mtbench": ev.mtbench or 0, "constraints": ev.constraints or 0}
        caps = {"math": (ev.math.max_new_tokens if ev.math else None) or ev.max_new_tokens}
        tokens = sum(n * caps.get(b, ev.max_new_tokens) * DEFAULT_LENGTH_SHARE for b, n in items.items())
        entry = cal.get(calibration_key("eval", target, "transformers", ev.batch_size))
        models = len(ev.models) + len(ev.extra_models)
        if entry:
            tokens = sum(n * entry["lengths"].get(b, caps.get(b, ev.max_new_tokens) * DEFAULT_LENGTH_SHARE)
                         for b, n in items.items())
            rate, basis = entry["tokens_per_s"], "calibrated on this machine"
        else:
            rate, basis = speed("generate", target, "transformers", ev.batch_size, model_arch(target))
        work = f"{models} model(s) x {sum(items.values()):,} items"
        plan.rows.append(Row("eval", target, work, tokens * models,
                             tokens * models / rate if rate else None, basis,
                             generation_fit(model_arch(target), "transformers", gpus, gpu_gb, ev.batch_size,
                                            PROMPT_TOKENS + ev.max_new_tokens)))
    judge = recipe.eval.judge or reward.model
    if target and ev.mtbench and judge:  # the MT-Bench judge grades every model's answers
        arch = model_arch(judge)
        judged = ev.mtbench * max(len(ev.models) - 1, 1)
        entry = cal.get(calibration_key("judge", judge, ev.judge_backend, 1))
        rate, basis = (None, "") if entry else speed("score", judge, ev.judge_backend, 1, arch)
        per = entry["seconds_per_item"] if entry else (PROMPT_TOKENS * 4 / rate if rate else None)
        plan.rows.append(Row("eval", f"judge {judge}", f"{judged:,} MT-Bench answers judged", 0,
                             per * judged if per else None, "calibrated on this machine" if entry else basis,
                             generation_fit(arch, ev.judge_backend, gpus, gpu_gb, 1, 4096)))
    if target and ev.harness:
        plan.notes.append(f"eval.harness: lm-eval runs {', '.join(ev.harness)} on every model; not in the estimate")
    if target and ev.judged:
        plan.notes.append(f"eval.judged: every model answers {', '.join(s.format for s in ev.judged)} (AlpacaEval has 805 "
                          f"questions, Arena-Hard 500){', judged both ways' if ev.pairwise_judge else ''}; not in the estimate")
    plan.disk_gib = disk / GIB
    if any(r.seconds is None for r in plan.rows):
        plan.notes.append("rows without a time have no throughput figure; the total leaves them out")
    return plan


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def render(plan: Plan) -> str:
    """The plan as a plain-text table (what `fusechat plan` and the start of `fusechat run` print)."""
    lines = [f"Plan for '{plan.recipe}' on {plan.hardware}:"]
    table = [("stage", "model", "work", "tokens", "time", "fits", "speed from")]
    for r in plan.rows:
        fit = "" if r.fit is None else (f"{r.fit.where}, {r.fit.gib:.1f} GiB" if r.fit.ok else f"NO: {r.fit.where}")
        table.append((r.stage, r.what, r.work, f"{r.tokens:,.0f}" if r.tokens else "", duration(r.seconds),
                      fit, r.basis))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.append(f"  total: {duration(plan.seconds)} of work with a figure; disk: {plan.disk_gib:.1f} GiB")
    lines += [f"  note: {n}" for n in plan.notes]
    lines += [f"  DOES NOT FIT: {p}" for p in plan.problems()]
    return "\n".join(lines)


def refuse_what_cannot_fit(plan: Plan) -> None:
    """One line, before any work, for the first model that cannot fit the hardware."""
    problems = plan.problems()
    if problems:
        raise FusechatError(f"{problems[0]} (on {plan.hardware}; `fusechat plan` shows the whole plan)")


# ---- calibration (CPU) ------------------------------------------------------------------------------


def spread(items: list, k: int) -> list:
    """`k` items evenly spaced over the list (the first few prompts of a set can be its easiest)."""
    return items if len(items) <= k else [items[i * len(items) // k] for i in range(k)]


def calibrate(recipe: Recipe, per_domain: int = 4, say=print) -> None:
    """Measure this machine: each source answering a few of the recipe's own prompts as the sample stage
    asks (every prompt its `samples_per_prompt` times, all at once), for speed and answer and prompt
    lengths per domain; the judge on those real answers; the target's training and evaluation speed. Cached."""
    from fusechat.prompts import collect_prompts
    from fusechat.sample.backend import Request, open_backend

    prompts, _ = collect_prompts(recipe) if recipe.prompts else ([], {})  # a `data:` recipe: the target only
    cal = calibrated()
    answers = []  # (prompt, answer) for the judge
    for source in recipe.sources:
        if source.backend in ("openai", "dataset"):
            continue
        chosen = [p for d in sorted({p.domain for p in prompts}) if source.samples_for(d)
                  for p in spread([q for q in prompts if q.domain == d], per_domain) for _ in range(source.samples_for(d))]
        requests = [Request([{"role": "user", "content": p.prompt}], i) for i, p in enumerate(chosen)]
        say(f"calibrating {source.name}: {len(requests)} answers")
        backend = open_backend(source)
        try:
            started = time.time()
            out = backend.generate(requests, source.sampling)
            seconds = time.time() - started
        finally:
            backend.close()
        tokens = sum(g.completion_tokens for g in out)
        cal[calibration_key("generate", source.model, source.backend, source.batch_size)] = {
            "tokens_per_s": round(tokens / seconds, 1), "measured": time.strftime("%Y-%m-%d")}
        lengths: dict[str, list[tuple[int, int, bool]]] = {}
        for g, p in zip(out, chosen):
            lengths.setdefault(p.domain, []).append((g.completion_tokens, g.prompt_tokens, g.finish_reason == "stop"))
            if p.domain in recipe.score.reward.domains and g.finish_reason == "stop":
                answers.append((p.prompt, g.text))
        for domain, values in lengths.items():
            cal[calibration_key("length", source.model, domain, source.sampling.max_new_tokens)] = {
                "tokens": sum(c for c, _, _ in values) / len(values), "prompt_tokens": sum(p for _, p, _ in values) / len(values),
                "finished": sum(f for _, _, f in values) / len(values)}
        calibration_file().write_text(json.dumps(cal, indent=1))
    reward = recipe.score.reward
    if reward.kind == "judge" and recipe.prompts:
        from fusechat.score.judge import open_judge

        sample = spread(answers, 6) or [(p.prompt, "A short answer of a few sentences. " * 8) for p in prompts[:6]]
        say(f"calibrating the judge {reward.model}: {len(sample)} judgments of the answers above")
        started = time.time()
        judge = open_judge(reward.model, reward.backend)
        try:
            judge.grade("Warm up.", "Yes.")
            load = time.time() - started
            started = time.time()
            judge.score(sample)
            per = (time.time() - started) / len(sample)
        finally:
            judge.close()
        cal[calibration_key("judge", reward.model, reward.backend, 1)] = {"seconds_per_item": round(per, 2),
                                                                          "load_s": round(load, 1)}
        calibration_file().write_text(json.dumps(cal, indent=1))
    if recipe.target:
        calibrate_target(recipe, cal, say)
        calibration_file().write_text(json.dumps(cal, indent=1))


def calibrate_target(recipe: Recipe, cal: dict, say) -> None:
    """The target's training speed (SFT steps; DPO at the same rate: its reference pass is precomputed and
    only completions get logits, so on the default run it trained at 142 tokens/s to SFT's 123) and its
    greedy evaluation speed and answer lengths."""
    import torch
    from transformers import AutoTokenizer

    from fusechat.evaluate import generate_answers
    from fusechat.train.common import load_model, target_path, use_bf16

    path = target_path(recipe)
    cfg = recipe.sft
    say(f"calibrating the target {recipe.target.model}: 3 training steps, 16 evaluation answers a benchmark")
    model = load_model(path, cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    length = min(cfg.max_length, 384)
    ids = torch.randint(0, model.config.vocab_size, (cfg.batch_size, length))
    times = []
    for _ in range(3):
        started = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg) and not torch.cuda.is_available()):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.time() - started)
    rate = cfg.batch_size * length / min(times[1:])  # the first step warms up
    del model, optimizer
    cal[calibration_key("sft", recipe.target.model, "train", cfg.batch_size)] = {"tokens_per_s": round(rate, 1)}
    cal[calibration_key("dpo", recipe.target.model, "train", cfg.batch_size)] = {"tokens_per_s": round(rate, 1)}

    ev = recipe.eval
    problems = {b: spread(items, 16) for b, items in benchmarks_without_run(recipe).items()}
    started = time.time()
    answers = generate_answers(path, problems, recipe)  # as the stage does it: benchmarks of one length cap together
    seconds = time.time() - started
    tokenizer = AutoTokenizer.from_pretrained(path)
    lengths = {b: sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in texts) / max(len(texts), 1)
               for b, texts in answers.items()}
    tokens = sum(lengths[b] * len(problems[b]) for b in problems)
    # 16 answers a benchmark fill smaller batches than the evaluation's: a conservative speed
    cal[calibration_key("eval", recipe.target.model, "transformers", ev.batch_size)] = {
        "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "lengths": lengths}


def benchmarks_without_run(recipe: Recipe) -> dict[str, list[dict]]:
    """The evaluation's items, as the eval stage builds them, without a run folder."""
    from fusechat.evaluate import benchmarks

    class NoRun:  # the only parts of a StageRun that `benchmarks` reads
        def __init__(self, recipe):
            self.recipe = recipe

        def manifest(self, stage):
            return None

    return benchmarks(NoRun(recipe))

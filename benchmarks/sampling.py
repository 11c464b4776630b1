"""Sampling throughput: the same model, prompts and sampling parameters through every backend, in one run.

    python benchmarks/sampling.py                      # SmolLM2-135M and Qwen2.5-Coder-0.5B (about 25 min on 2 cores)
    python benchmarks/sampling.py --models smollm2-135m-instruct --sequences 32   # a quick look

Configurations: transformers one sequence at a time in the model's own dtype (what a naive script
does), transformers batched (8/32/64, fp32 and bf16), llama.cpp with 1 and N parallel slots, and the
OpenAI-compatible HTTP backend against llama.cpp's own server on loopback; plus fusechat's default
(what a source gets when the recipe names no backend). Prints a Markdown table of tokens/s, the
ratio to the one-at-a-time loop and to the fastest, and the fraction of the machine's measured
matrix-multiply FLOP/s that decoding reaches (2 x parameters x tokens/s). Slow baselines run on the
first 16 sequences only: a rate does not need the whole set.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

import torch

from fusechat import models
from fusechat.packs import code_function_prompts, reasoning_gym_prompts, sharegpt_prompts
from fusechat.recipe import Sampling, Source
from fusechat.backends.factory import open_backend
from fusechat.backends.base import Request


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Measured FLOP/s of one large square matrix product on all cores."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def workload(n_sequences: int, samples: int) -> list[Request]:
    """Math, code and instruction prompts (mixed answer lengths, as in a real run), `samples` each."""
    n_prompts = max(1, n_sequences // samples)
    prompts = (reasoning_gym_prompts("basic_arithmetic", n_prompts // 2, 0, {"min_terms": 2, "max_terms": 3})
               + code_function_prompts(n_prompts // 4, 0)
               + sharegpt_prompts("instruction", n_prompts - n_prompts // 2 - n_prompts // 4, 0, {}))
    return [Request([{"role": "user", "content": p["prompt"]}], seed=1000 * i + k)
            for i, p in enumerate(prompts) for k in range(samples)][:n_sequences]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(label: str, make, requests: list[Request], sampling: Sampling) -> dict:
    with make() as backend:
        backend.generate(requests[:2], Sampling(temperature=0, max_new_tokens=4))  # warm-up: caches, threads
        start = time.perf_counter()
        out = backend.generate(requests, sampling)
        seconds = time.perf_counter() - start
    tokens = sum(g.completion_tokens for g in out)
    errors = sum(g.finish_reason == "error" for g in out)
    print(f"  {label}: {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.1f} tok/s"
          + (f" ({errors} errors)" if errors else ""), file=sys.stderr, flush=True)
    return {"config": label, "sequences": len(requests), "tokens": tokens, "seconds": round(seconds, 2),
            "tok_s": tokens / seconds}


def bench_model(name: str, requests: list[Request], sampling: Sampling, slots: int, peaks: dict,
                only: list[str]) -> list[dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    ref = models.resolve(name)
    hf = ref.hf_path()
    with torch.device("meta"):
        params = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(hf)).num_parameters()
    few = requests[:16]
    hf_source = lambda dtype, batch: Source(name="b", model=name, backend="transformers", dtype=dtype, batch_size=batch)  # noqa: E731
    configs = [("transformers, one at a time, fp32 (naive loop)", hf_source("float32", 1), few, "fp32")]
    for dtype, batches in (("float32", (8, 32)), ("bfloat16", (8, 32, 64))):
        configs += [(f"transformers, batch {b}, {dtype}", hf_source(dtype, b), requests,
                     {"float32": "fp32", "bfloat16": "bf16"}[dtype]) for b in batches]
    configs += [("llama.cpp, 1 slot", Source(name="b", model=name, backend="llamacpp", batch_size=1), few, "fp32"),
                (f"llama.cpp, {slots} slots", Source(name="b", model=name, backend="llamacpp", batch_size=slots), requests, "fp32")]
    default = Source(name="b", model=name)
    configs.append((f"fusechat default ({default.backend}, batch {default.batch_size})", default, requests, "fp32"))
    if only:  # a subset (the one-at-a-time baseline always runs: every ratio is against it)
        configs = [c for c in configs if "one at a time" in c[0] or any(o in c[0] for o in only)]
    rows = []
    for label, source, reqs, precision in configs:
        row = run_config(label, lambda s=source: open_backend(s, ctx_per_slot=sampling.max_new_tokens + 1024), reqs, sampling)
        rows.append(row | {"precision": precision})
    if not only or any(o in "HTTP backend" for o in only):
        rows.append(run_config(f"HTTP backend -> llama.cpp server, {slots} slots", lambda: http_backend(ref.gguf_path(), slots),
                               requests, sampling) | {"precision": "fp32"})
    for row in rows:
        peak = peaks["bf16" if row["precision"] == "bf16" else "fp32"]
        row["flops_fraction"] = 2 * params * row["tok_s"] / peak
        row["model"], row["parameters"] = name, params
    return rows


class HTTPPair:
    """llama.cpp's HTTP server plus our OpenAI-compatible client, closed together."""

    def __init__(self, gguf, slots: int):
        import xllamacpp

        from fusechat.backends.openai_api import OpenAIBackend

        port = free_port()
        params = xllamacpp.CommonParams()
        params.model.path, params.port = str(gguf), port
        params.n_parallel, params.n_ctx = slots, slots * 2048
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = os.cpu_count()
        params.use_jinja, params.warmup, params.verbosity = True, False, -1
        self.server = xllamacpp.Server(params)
        self.client = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "bench", concurrency=slots)

    def generate(self, requests, sampling):
        return self.client.generate(requests, sampling)

    def close(self):
        del self.server


def http_backend(gguf, slots):
    return HTTPPair(gguf, slots)


def table(rows: list[dict]) -> str:
    lines = ["| model | configuration | tok/s | × one-at-a-time | × fastest | FLOP/s fraction |", "|---|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        naive = next(r["tok_s"] for r in mine if "one at a time" in r["config"])
        fastest = max(r["tok_s"] for r in mine)
        for r in mine:
            lines.append(f"| {model} | {r['config']} | {r['tok_s']:.1f} | {r['tok_s'] / naive:.1f} | "
                         f"{r['tok_s'] / fastest:.2f} | {r['flops_fraction']:.2%} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--slots", type=int, default=8, help="llama.cpp parallel slots for the N-slot runs")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--only", nargs="*", default=[], help="run only configurations whose label contains one of these")
    args = parser.parse_args()

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"measured matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s, "
          f"{os.cpu_count()} cores", flush=True)
    sampling = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=args.max_new_tokens)
    requests = workload(args.sequences, args.samples)
    rows = []
    for name in args.models:
        print(f"{name}:", file=sys.stderr, flush=True)
        rows += bench_model(name, requests, sampling, args.slots, peaks, args.only)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peaks": peaks, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()

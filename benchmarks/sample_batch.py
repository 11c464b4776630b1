"""Sampling speed of the transformers backend: its decoder that drops finished answers against `generate`.

    python benchmarks/sample_batch.py                                      # SmolLM2-135M, 32 prompts x 3, batch 96
    python benchmarks/sample_batch.py --model qwen2.5-coder-0.5b-instruct --samples 1 --batch-size 64 --prompts 64

The workload is the study's: writing tasks with an IFEval constraint (training topics), sampled with the
recipe's settings for that source (SmolLM2: temperature 0.8, top-p 0.95; Qwen: 0.7, 0.8, repetition
penalty 1.05) and capped at 256 tokens, so answer lengths vary as in a run. For each decoder: seconds,
completion tokens, tokens/s and how many answers ran to the cap. Sampled answers differ between decoders
(different random draws), so compare rates, not texts.
"""

from __future__ import annotations

import argparse
import time

from fusechat import constraints, models
from fusechat.recipe import Sampling
from fusechat.backends.base import Request
from fusechat.backends.hf import TransformersBackend

SETTINGS = {"smollm2-135m-instruct": Sampling(temperature=0.8, top_p=0.95, max_new_tokens=256),
            "qwen2.5-coder-0.5b-instruct": Sampling(temperature=0.7, top_p=0.8, repetition_penalty=1.05,
                                                    max_new_tokens=256)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", choices=sorted(SETTINGS))
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=3, help="answers per prompt")
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--decoders", nargs="+", choices=["pruned", "generate"], default=["pruned", "generate"])
    args = parser.parse_args()
    prompts = constraints.make_prompts(args.prompts, seed=0, split="train")
    requests = [Request([{"role": "user", "content": p["prompt"]}], seed=1000 + i)
                for p in prompts for i in range(args.samples)]
    backend = TransformersBackend(models.resolve(args.model).hf_path(), batch_size=args.batch_size)
    print("| model | decoder | batch | answers | seconds | tokens | tok/s | ran to the cap |")
    print("|---|---|---|---|---|---|---|---|")
    for decoder in args.decoders:
        backend.prune_finished = decoder == "pruned"
        start = time.perf_counter()
        out = backend.generate(requests, SETTINGS[args.model])
        seconds = time.perf_counter() - start
        tokens = sum(g.completion_tokens for g in out)
        capped = sum(g.finish_reason == "length" for g in out)
        print(f"| {args.model} | {decoder} | {args.batch_size} | {len(out)} | {seconds:.1f} | {tokens} | "
              f"{tokens / seconds:.1f} | {capped} |")


if __name__ == "__main__":
    main()

"""Evaluation speed against `eval.batch_size`: the study's benchmarks, one model, greedy, as the eval stage runs them.

    python benchmarks/eval_batch.py                                   # SmolLM2-135M-Instruct, batch 32 and 128
    python benchmarks/eval_batch.py --model runs/study-cpu/fused/dpo/model --batch-sizes 32 64 128
    python benchmarks/eval_batch.py --model runs/study-cpu/only-qwen-coder-0.5b/dpo/model --batch-sizes 128 --decoders pruned generate
    python benchmarks/eval_batch.py --batch-sizes 64 16 --dtype float32 --items 64 --benchmarks constraints   # batch invariance

For each batch size: seconds to generate each benchmark's answers (the held-out math problems capped at
160 tokens and the constraint prompts at 256, as many as recipes/study-cpu.yaml evaluates) and the score,
so a speed setting that changed the answers would show; `changed` counts the answers that differ, text
for text, from the first configuration's. `--decoders`: the backend's greedy decoder that
drops finished rows from the batch (`pruned`, the default) against transformers' `generate`. Greedy
decoding in bf16 over padded batches is not bit-identical across batch sizes: a point or so of
difference in a score is that, not a bug.
"""

from __future__ import annotations

import argparse
import time

from fusechat import constraints, models
from fusechat.evaluate import generate_answers, score_answers
from fusechat.benchmarks.math import held_out_problems
from fusechat.recipe import builtin_recipe
from fusechat.backends.hf import TransformersBackend
from fusechat.scorers.math import MathChecker
from fusechat.study import load_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="an HF folder (default: the study's target)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--decoders", nargs="+", choices=["pruned", "generate"], default=["pruned"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="eval.dtype")
    parser.add_argument("--items", type=int, default=None, help="only the first N items of each benchmark")
    parser.add_argument("--benchmarks", nargs="+", choices=["math", "constraints"], default=["math", "constraints"])
    args = parser.parse_args()
    _, variants = load_study(builtin_recipe("study-cpu"))
    recipe = variants["fused"].recipe
    recipe.eval.dtype = args.dtype
    path = args.model or models.resolve(recipe.target.model).hf_path()
    problems = {"math": held_out_problems(recipe, set()),
                "constraints": [{"id": f"c{i}", "prompt": r["prompt"], "constraints": r["constraints"]}
                                for i, r in enumerate(constraints.make_prompts(recipe.eval.constraints, seed=0, split="eval"))]}
    problems = {b: items[: args.items] for b, items in problems.items() if b in args.benchmarks}
    first: dict[str, list[str]] = {}  # the first configuration's answers, per benchmark
    print("| decoder | batch | benchmark | items | seconds | score | changed |\n|---|---|---|---|---|---|---|")
    checker = MathChecker(10)
    try:
        for decoder, batch in [(d, b) for d in args.decoders for b in args.batch_sizes]:
            TransformersBackend.prune_finished = decoder == "pruned"
            recipe.eval.batch_size = batch
            for bench, items in problems.items():
                started = time.perf_counter()
                answers = generate_answers(path, {bench: items}, recipe)[bench]
                seconds = time.perf_counter() - started
                scores = score_answers(bench, items, answers, recipe, checker)
                changed = sum(a != b for a, b in zip(answers, first.setdefault(bench, answers)))
                print(f"| {decoder} | {batch} | {bench} | {len(items)} | {seconds:.0f} | {sum(scores) / len(scores):.3f} "
                      f"| {changed} |", flush=True)
    finally:
        checker.close()


if __name__ == "__main__":
    main()

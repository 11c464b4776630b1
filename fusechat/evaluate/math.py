"""Held-out math: reasoning-gym problems from a seed never used for training, greedy, exact answers."""

from __future__ import annotations

from fusechat import FusechatError
from fusechat.packs import reasoning_gym_prompts
from fusechat.recipe import Recipe, math_eval_problem_set


def held_out_problems(recipe: Recipe, training_prompts: set[str]) -> list[dict]:
    cfg = recipe.eval.math
    task, options = math_eval_problem_set(recipe)
    if task is None:
        raise FusechatError("eval.math: give `task` (the recipe has no reasoning-gym prompt set to copy it from)")
    # Small problem spaces repeat across seeds: draw extra and drop any problem seen in training.
    candidates = reasoning_gym_prompts(task, cfg.n * 3, cfg.seed, options)
    unseen, seen_texts = [], set()
    for c in candidates:
        if c["prompt"] not in training_prompts and c["prompt"] not in seen_texts:
            seen_texts.add(c["prompt"])
            unseen.append(c)
    return [{"id": f"math-{i}", "prompt": c["prompt"], "answer": c["answer"]} for i, c in enumerate(unseen[: cfg.n])]

"""Held-out math: reasoning-gym problems from a seed never used for training, greedy, exact answers
(checked by the score stage's math-verify checker)."""

from __future__ import annotations

from fusechat import FusechatError
from fusechat.packs import reasoning_gym_prompts
from fusechat.recipe import Recipe, math_eval_problem_set
from fusechat.scorers.math import MathChecker

NAME = "math"
LABEL = "held-out math accuracy"
SHORT = "held-out math"
WIN_RATE = False


def count(recipe: Recipe) -> int:
    return recipe.eval.math.n if recipe.eval.math else 0


def max_new_tokens(recipe: Recipe) -> int:
    """Math answers are short: eval.math.max_new_tokens when set."""
    return (recipe.eval.math.max_new_tokens if recipe.eval.math else None) or recipe.eval.max_new_tokens


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    return held_out_problems(recipe, seen)


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


def score(problems: list[dict], answers: list[str], recipe: Recipe, math: MathChecker | None = None) -> list[float]:
    """1.0 / 0.0 per answer by math-verify. `math`: a checker to reuse (its worker process pays sympy's
    import once for every model)."""
    checker = math or MathChecker(recipe.score.math_timeout_s)
    try:
        return [float(bool(checker.check(a, p["answer"]).correct)) for a, p in zip(answers, problems)]
    finally:
        if math is None:
            checker.close()

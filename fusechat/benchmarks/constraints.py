"""Verifiable-constraint accuracy: writing tasks with one IFEval constraint each, on topics no training
prompt uses (fusechat.constraints), checked by if-verifiable (IFEval's prompt-level strict accuracy)."""

from __future__ import annotations

from fusechat import constraints as verifiable
from fusechat.recipe import Recipe

NAME = "constraints"
LABEL = "verifiable-constraint accuracy"
SHORT = "constraint accuracy"
WIN_RATE = False


def count(recipe: Recipe) -> int:
    return recipe.eval.constraints or 0


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    # Built from topics no training pack uses: no base prompt is shared with training.
    rows = verifiable.make_prompts(count(recipe), seed=0, split="eval")
    return [{"id": f"constraint-{i}", "prompt": r["prompt"], "constraints": r["constraints"]} for i, r in enumerate(rows)]


def score(problems: list[dict], answers: list[str], recipe: Recipe, math=None) -> list[float]:
    return [float(verifiable.check(a, p["constraints"], p["prompt"])) for a, p in zip(answers, problems)]

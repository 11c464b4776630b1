"""AlpacaEval 2 questions: every model's answers in the official tool's files, judged against the run's
baseline by an OpenAI-compatible endpoint when `eval.pairwise_judge` is set (fusechat.benchmarks.judged)."""

from __future__ import annotations

from fusechat.benchmarks import judged
from fusechat.recipe import Recipe

NAME = "alpaca_eval"
LABEL = "AlpacaEval 2 questions: win rate vs the run's baseline (judge: {judge}, both orders)"
SHORT = "AlpacaEval 2 win rate"
WIN_RATE = True
SIZE = 805  # questions in the whole set


def spec(recipe: Recipe):
    return next((s for s in recipe.eval.judged if s.format == NAME), None)


def count(recipe: Recipe) -> int:
    chosen = spec(recipe)
    return 0 if chosen is None else min(chosen.n or SIZE, SIZE)


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    return judged.questions(spec(recipe))


def score(items, answers, recipe, math=None) -> None:
    """Judged after every model has answered, against the baseline's answers (fusechat.benchmarks.judged)."""
    return None

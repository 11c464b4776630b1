"""The evaluation's benchmarks, one module each, in the spirit of lm-evaluation-harness's task files.

Each module declares everything about its benchmark (judged.py declares AlpacaEval 2 and Arena-Hard,
which differ only in name and size): `NAME`, `LABEL` (the run report's, with `{judge}`
for judged ones), `SHORT` (the study's column), `WIN_RATE` (a score in [0, 1] against a baseline, 0.5 a
tie, rather than pass/fail), `count(recipe)` (the items a recipe asks for), `max_new_tokens(recipe)`,
`items(recipe, seen)` (the problems, none of them among the training prompts `seen`) and
`score(items, answers, recipe, math)` (1.0 / 0.0 per answer, or None when a judge decides later). The
eval stage, the run and study reports, the model cards and the plan read those facts from here.
`BENCHMARKS` is a plain dict of the modules, in the order the eval stage runs them. lm-eval's tasks
(`eval.harness`, harness.py) declare their own facts and are not in it.
"""

from __future__ import annotations

from fusechat.benchmarks import (alignbench, alpaca_lc, constraints, humaneval, livebench, livecodebench, math, mtbench,
                                 mtbench_graded)
from fusechat.benchmarks.evalplus import HUMANEVAL_PLUS, MBPP_PLUS
from fusechat.benchmarks.judged import ALPACA_EVAL, ARENA_HARD

BENCHMARKS = {b.NAME: b for b in (math, humaneval, HUMANEVAL_PLUS, MBPP_PLUS, livecodebench, mtbench, mtbench_graded,
                                  alignbench, livebench, constraints, ALPACA_EVAL, ARENA_HARD, alpaca_lc)}
JUDGED_SETS = (ALPACA_EVAL, ARENA_HARD)  # eval.judged: answers for the official tools, judged by an endpoint


def chosen(recipe) -> list:
    """The benchmark modules `recipe` evaluates, in the stage's order (the judged sets in the recipe's)."""
    own = [b for b in BENCHMARKS.values() if b not in JUDGED_SETS and b.count(recipe)]
    return own + [BENCHMARKS[s.format] for s in recipe.eval.judged]


def problems(recipe, seen: set[str] = frozenset()) -> dict[str, list[dict]]:
    """Every chosen benchmark's items, none of them among the training prompts `seen`."""
    return {b.NAME: b.items(recipe, seen) for b in chosen(recipe)}


def label(bench: str, judge: str = "") -> str:
    return BENCHMARKS[bench].LABEL.format(judge=judge) if bench in BENCHMARKS else bench


def short_label(bench: str) -> str:
    return BENCHMARKS[bench].SHORT if bench in BENCHMARKS else bench


def is_win_rate(bench: str) -> bool:
    return bench in BENCHMARKS and BENCHMARKS[bench].WIN_RATE


def item_weights(bench: str, groups: dict[str, str]) -> dict[str, float] | None:
    """Item id -> weight where the benchmark's score is not the plain mean of its items (AlignBench's halves,
    LiveBench's categories of tasks), from each item's `group`; None where every item weighs alike."""
    module = BENCHMARKS.get(bench)
    return module.weights(groups) if hasattr(module, "weights") and groups else None

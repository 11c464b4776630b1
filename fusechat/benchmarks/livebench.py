"""LiveBench as of a release (the paper's: 2024-08-31), scored with LiveBench's own ground-truth scorers.

The questions are the hub sets `livebench/<category>` (split `test`), as LiveBench's runner reads them: a
question belongs to a release when it was released on or before it and not removed by then. Each
question's first turn is the whole prompt (it says how to write the answer); answers are greedy with
`eval.max_new_tokens`, a <think> block is dropped before scoring, as LiveBench drops it. The score is
LiveBench's: each task's mean, each category the mean of its tasks, the overall the mean of the
categories, with a bootstrap interval that resamples questions within each task.

fusechat scores 9 of the release's 18 tasks (fusechat.benchmarks.livebench_scorers: math_comp, spatial,
web_of_lies_v2, zebra_puzzle, connections, plot_unscrambling, typos, cta, tablejoin). The other nine are
not asked yet and the label says so: AMPS_Hard and olympiad (sympy answer equivalence, proof-step
rearrangement), tablereformat, the four instruction-following tasks (IFEval's checkers on news
articles) and the two coding tasks (LiveCodeBench-style cases, which would run in fusechat's sandbox).
A score over 9 tasks is not the paper's LiveBench number, so the report puts no paper column beside it.
"""

from __future__ import annotations

import random
from collections import Counter

from fusechat import FusechatError
from fusechat.benchmarks import livebench_scorers
from fusechat.readers import dataset_rows
from fusechat.recipe import Recipe

NAME = "livebench"
SHORT = "LiveBench (9 of 18 tasks)"
WIN_RATE = False
CATEGORIES = ("math", "reasoning", "coding", "language", "data_analysis", "instruction_following")
# the releases fusechat's scorers follow (later ones changed the answer format of connections and zebra_puzzle)
RELEASES = ("2024-06-24", "2024-07-26", "2024-08-31")
TASKS = {"math": ("math_comp",), "reasoning": ("spatial", "web_of_lies_v2", "zebra_puzzle"), "coding": (),
         "language": ("connections", "plot_unscrambling", "typos"), "data_analysis": ("cta", "tablejoin"),
         "instruction_following": ()}  # the tasks fusechat scores, by category
SCORED = tuple(t for tasks in TASKS.values() for t in tasks)
# `{judge}` is the release here (benchmarks.label fills that one slot): LiveBench has no judge
LABEL = "LiveBench {judge}, ground truth, 9 of 18 tasks (" + ", ".join(SCORED) + ")"
PLANNED = 50  # questions a task, for the plan when the rows are not read yet


def count(recipe: Recipe) -> int:
    cfg = recipe.eval.livebench
    return 0 if cfg is None else (cfg.n or PLANNED) * len(SCORED)


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def _date(value) -> str:
    return "" if value is None else str(value)[:10]


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    cfg = recipe.eval.livebench
    releases = {r for r in RELEASES if r <= cfg.release}
    out = []
    for category in [c for c in cfg.categories if TASKS[c]]:  # a category without a scored task is not read
        source = (cfg.data or {}).get(category, f"livebench/{category}")
        per_task: dict[str, int] = {}
        for where, row in dataset_rows(source, split="test"):
            try:
                task, removed = row["task"], _date(row.get("livebench_removal_date"))
                if (_date(row["livebench_release_date"]) not in releases or (removed and removed <= cfg.release)
                        or task not in SCORED or per_task.get(task, 0) == (cfg.n or -1)):
                    continue
                item = {"id": f"livebench-{row['question_id']}", "prompt": row["turns"][0], "answer": str(row["ground_truth"]),
                        "task": row.get("subtask") or task, "group": f"{category}/{task}"}
            except (KeyError, TypeError, IndexError) as e:
                raise FusechatError(f"{where}: not a LiveBench question ({e})") from None
            per_task[task] = per_task.get(task, 0) + 1
            out.append(item)
    if not out:
        raise FusechatError(f"eval.livebench: no question of a scored task in release {cfg.release}")
    return out


def score(items: list[dict], answers: list[str], recipe: Recipe, math=None) -> list[float]:
    out = []
    for item, answer in zip(items, answers):
        try:
            out.append(livebench_scorers.score(item["task"], item["answer"], answer, item["prompt"]))
        except (ValueError, SyntaxError) as e:  # a malformed ground truth, not the model's fault
            raise FusechatError(f"LiveBench {item['id']}: cannot score against its ground truth ({e})") from None
    return out


def weights(groups: dict[str, str]) -> dict[str, float]:
    """Item id -> its weight in LiveBench's score, from each item's "category/task" (`groups`): categories
    weigh alike, tasks alike within their category, questions alike within their task. The weights sum to 1,
    so the weighted mean of the scores is LiveBench's overall score."""
    sizes = Counter(groups.values())
    tasks = Counter(g.split("/")[0] for g in sizes)  # tasks present in each category
    return {i: 1 / (len(tasks) * tasks[g.split("/")[0]] * sizes[g]) for i, g in groups.items()}


def overall(rows: list[dict]) -> float:
    """LiveBench's score of scored rows ({"group": "category/task", "score"}): tasks' means, categories' means
    of those, the mean of the categories."""
    w = weights({str(i): r["group"] for i, r in enumerate(rows)})
    return sum(w[str(i)] * r["score"] for i, r in enumerate(rows)) if rows else float("nan")


def summary(rows: list[dict], resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(overall, 95% interval low, high): a percentile bootstrap resampling questions within each task."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    rng = random.Random(seed)
    draws = sorted(overall([rng.choice(group) for group in by.values() for _ in group]) for _ in range(resamples))
    return overall(rows), draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]

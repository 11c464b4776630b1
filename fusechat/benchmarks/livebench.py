"""LiveBench as of a release (the paper's: 2024-08-31), scored with LiveBench's own ground-truth scorers.

The questions are the hub sets `livebench/<category>` (split `test`), as LiveBench's runner reads them: a
question belongs to a release when it was released on or before it and not removed by then. Each
question's first turn is the whole prompt (it says how to write the answer); answers are greedy with
`eval.max_new_tokens`, a <think> block is dropped before scoring, as LiveBench drops it. The score is
LiveBench's: each task's mean, each category the mean of its tasks, the overall the mean of the
categories, with a bootstrap interval that resamples questions within each task.

All 18 tasks of the releases up to 2024-08-31 are scored (fusechat.benchmarks.livebench_scorers): the
text tasks by LiveBench's own scorers, ported; instruction following by IFEval's checkers
(if-verifiable), AMPS_Hard by math-verify, and the two coding tasks (LiveCodeBench problems, the
completion task with the start of a solution given) by running every public and private test case in
fusechat's sandbox, as fusechat.benchmarks.livecodebench runs them.
"""

from __future__ import annotations

import json
import pickle
import re
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fusechat import FusechatError
from fusechat.benchmarks import livebench_scorers
from fusechat.benchmarks.livecodebench import passes, private_cases
from fusechat.readers import dataset_rows
from fusechat.recipe import Recipe
from fusechat.scorers.code import extract_code
from fusechat.scorers.math import MathChecker
from fusechat.stats import grouped_bootstrap

NAME = "livebench"
SHORT = "LiveBench"
WIN_RATE = False
# the releases fusechat's scorers follow (later ones changed the answer format of connections and zebra_puzzle)
RELEASES = ("2024-06-24", "2024-07-26", "2024-08-31")
TASKS = {"math": ("AMPS_Hard", "math_comp", "olympiad"), "reasoning": ("spatial", "web_of_lies_v2", "zebra_puzzle"),
         "coding": ("LCB_generation", "coding_completion"), "language": ("connections", "plot_unscrambling", "typos"),
         "data_analysis": ("cta", "tablejoin", "tablereformat"),
         "instruction_following": ("paraphrase", "simplify", "story_generation", "summarize")}  # by category
SCORED = tuple(t for tasks in TASKS.values() for t in tasks)
# `{judge}` is the release here (benchmarks.label fills that one slot): LiveBench has no judge
LABEL = "LiveBench {judge}, ground-truth scorers, 18 tasks"
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
                item = {"id": f"livebench-{row['question_id']}", "prompt": row["turns"][0],
                        "answer": str(row.get("ground_truth") or ""), "task": row.get("subtask") or task,
                        "group": f"{category}/{task}"}
                if category == "instruction_following":
                    item |= {"instructions": list(row["instruction_id_list"]), "kwargs": list(row["kwargs"])}
                elif category == "coding":
                    metadata = json.loads((row.get("original_json") or {}).get("metadata") or "{}")
                    name = metadata.get("func_name")
                    if name is not None and not str(name).isidentifier():
                        raise ValueError(f"func_name {name!r:.40} is not a name")  # it goes into the test code
                    item |= {"cases": json.loads(row["public_test_cases"]) + private_cases(row.get("private_test_cases") or ""),
                             "func_name": name, "partial_solution": row.get("partial_solution") or ""}
            except (KeyError, TypeError, IndexError, ValueError, zlib.error, pickle.UnpicklingError) as e:
                raise FusechatError(f"{where}: not a LiveBench question ({e})") from None
            per_task[task] = per_task.get(task, 0) + 1
            out.append(item)
    if not out:
        raise FusechatError(f"eval.livebench: no question of a scored task in release {cfg.release}")
    return out


def score(items: list[dict], answers: list[str], recipe: Recipe, math=None) -> list[float]:
    answers = [re.sub(r"<think>.*?</think>", "", a, flags=re.DOTALL) for a in answers]
    checker = math or MathChecker(recipe.score.math_timeout_s)
    try:
        with ThreadPoolExecutor(recipe.score.workers) as pool:  # the coding tasks' test cases, in sandboxes
            coded = {i: pool.submit(_coding, item, answer, recipe) for i, (item, answer) in enumerate(zip(items, answers))
                     if item["group"].startswith("coding/")}
            return [coded[i].result() if i in coded else _one(item, answer, checker)
                    for i, (item, answer) in enumerate(zip(items, answers))]
    finally:
        if math is None:
            checker.close()


def _coding(item: dict, answer: str, recipe: Recipe) -> float:
    """Every public and private case in the sandbox (its own failures are errors, not a 0); the completion
    task gives the start of the solution, which the answer continues."""
    code = extract_code(answer)
    if item["partial_solution"] and not code.startswith(item["partial_solution"]):
        code = item["partial_solution"] + "\n" + code
    return float(passes(code, item, recipe.score.code))


def _one(item: dict, answer: str, math: MathChecker) -> float | None:
    task = item["group"].split("/")[1]
    try:
        if item["group"].startswith("instruction_following/"):
            return livebench_scorers.instruction_following(item["instructions"], item["kwargs"], item["prompt"], answer)
        if task == "AMPS_Hard":  # an integral's "+ C" is no part of the answer, as LiveBench strips it
            for c in ("+C", "+ C", "+ c", "+c"):
                answer = answer.replace(c, "")
            return float(math.check(answer, item["answer"]).correct is True)
        return livebench_scorers.score(item["task"], item["answer"], answer, item["prompt"])
    except Exception:  # noqa: BLE001 -- LiveBench scores an answer its scorer cannot read as 0, and so do we
        return 0.0


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


def summary(rows: list[dict]) -> tuple[float, float, float]:
    """(overall, 95% interval low, high): a percentile bootstrap resampling questions within each task."""
    return grouped_bootstrap(rows, overall)

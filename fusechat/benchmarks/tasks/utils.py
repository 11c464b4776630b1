"""Prompts and scoring of fusechat's lm-eval tasks, the paper's protocol (FuseEval, method.md §6): 0-shot
chain of thought, greedy, up to 2048 new tokens, the final answer in \\boxed{} (math) or "The answer is (X)"
(multiple choice). lm-eval imports this file by path (`!function utils.NAME` in the task files here).

lm-eval's stock tasks use other protocols (GSM8K 5-shot with "####" matching, MATH as Minerva's 4-shot,
MMLU-Pro 5-shot), so their numbers are not comparable with the paper's rows; these tasks are. Math answers
are judged by math-verify in fusechat's worker process (a hard timeout per check, fusechat.scorers.math),
the equivalence test the Qwen2.5-Math harness approximates with its own normaliser.
"""

import re

from fusechat.scorers.math import MathChecker

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
MC_INSTRUCTION = ('Answer the question step by step, then finish with "The answer is (X)", where X is the letter '
                  "of the correct option.")
LETTERS = "ABCDEFGHIJ"
_checker = None


def math_prompt(doc: dict) -> str:
    return f"{doc.get('question') or doc['problem']}\n{MATH_INSTRUCTION}"


def math_gold(doc: dict) -> str:
    """GSM8K's number after '####', MATH's solution (math-verify reads its last \\boxed{}), AMC23's answer."""
    if doc.get("solution") and not doc.get("answer"):
        return doc["solution"]
    answer = str(doc["answer"])
    return answer.split("####")[-1].strip().replace(",", "") if "####" in answer else answer


def math_results(doc: dict, results: list[str]) -> dict:
    global _checker
    if _checker is None:  # one worker process for the whole task
        _checker = MathChecker(10)
    return {"exact_match": float(_checker.check(results[0], math_gold(doc)).correct is True)}


def mc_prompt(doc: dict) -> str:
    """MMLU-Pro's `options` or MMLU-redux's `choices`, lettered, and the instruction."""
    options = "\n".join(f"({LETTERS[i]}) {option}" for i, option in enumerate(doc.get("options") or doc["choices"]))
    return f"{doc['question']}\n\nOptions:\n{options}\n\n{MC_INSTRUCTION}"


def mc_letter(text: str) -> str | None:
    """The chosen letter, as MMLU-Pro's own evaluation reads it: "answer is (X)", else "Answer: X", else none."""
    found = re.findall(r"answer is \(?([A-J])\)?", text) or re.findall(r"[aA]nswer:\s*\(?([A-J])\)?", text)
    return found[-1] if found else None


def mc_gold(doc: dict) -> str:
    """The right letter: MMLU-Pro stores it, MMLU-redux stores the option's index."""
    answer = doc["answer"]
    return LETTERS[answer] if isinstance(answer, int) else str(answer)


def mc_results(doc: dict, results: list[str]) -> dict:
    return {"exact_match": float(mc_letter(results[0]) == mc_gold(doc))}

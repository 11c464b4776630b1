"""LiveCodeBench: rows in code_generation_lite's layout (private cases compressed as the set stores them),
the paper's date window, every case run in the sandbox; a right answer passes, a wrong one fails."""

import base64
import json
import pickle
import zlib

import pytest

from fusechat import FusechatError
from fusechat.benchmarks import livecodebench
from fusechat.recipe import recipe_from_dict


def packed(cases: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def row(qid, date, content, public, private, starter="", metadata=None):
    return {"question_title": qid, "question_content": content, "platform": "atcoder" if not starter else "leetcode",
            "question_id": qid, "contest_id": "c1", "contest_date": date, "starter_code": starter, "difficulty": "easy",
            "public_test_cases": json.dumps(public), "private_test_cases": packed(private),
            "metadata": json.dumps(metadata or {})}


ROWS = [
    row("abc001_a", "2024-08-03T00:00:00", "Read N and then N integers; print their sum.",
        [{"input": "3\n1 2 3\n", "output": "6\n", "testtype": "stdin"}],
        [{"input": "2\n10 -4\n", "output": "6\n", "testtype": "stdin"}, {"input": "1\n7\n", "output": "7", "testtype": "stdin"}]),
    row("two-sum", "2024-09-15T00:00:00", "Return the indices of the two numbers that add up to target.",
        [{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}],
        [{"input": "[3,2,4]\n6", "output": "[1, 2]", "testtype": "functional"}],
        starter="class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
        metadata={"func_name": "twoSum"}),
    row("old", "2023-05-01T00:00:00", "Out of the window.", [{"input": "", "output": "", "testtype": "stdin"}], []),
]


@pytest.fixture
def recipe(tmp_path):
    (tmp_path / "test5.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return recipe_from_dict({
        "name": "lcb", "run_dir": str(tmp_path / "run"), "target": {"model": "m"},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": "m"}],
        "eval": {"livecodebench": {"data": [str(tmp_path / "test5.jsonl")]}}})


def test_the_window_and_the_cases_come_from_the_rows(recipe):
    items = livecodebench.items(recipe, set())
    assert [i["id"] for i in items] == ["abc001_a", "two-sum"]  # 2023's problem is outside 2024-07..2024-11
    assert len(items[0]["cases"]) == 3 and items[1]["func_name"] == "twoSum"
    assert "Read the inputs from stdin" in items[0]["prompt"] and "class Solution" in items[1]["prompt"]


def test_a_right_program_passes_every_case_and_a_wrong_one_fails(recipe):
    stdin_item, functional_item = livecodebench.items(recipe, set())
    right = "```python\nn = int(input())\nprint(sum(map(int, input().split())))\n```"
    first_line_only = "```python\nprint(sum(map(int, input().split())))\n```"  # prints N: wrong on every case
    misses_one = "```python\nn = int(input())\nxs = list(map(int, input().split()))\nprint(sum(x for x in xs if x > 0))\n```"
    assert livecodebench.score([stdin_item] * 3, [right, first_line_only, misses_one], recipe) == [1.0, 0.0, 0.0]
    right = ("```python\nclass Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
             "        for i, x in enumerate(nums):\n            if target - x in seen:\n                return [seen[target - x], i]\n"
             "            seen[x] = i\n```")
    wrong = "```python\nclass Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n```"  # right on the public case only
    assert livecodebench.score([functional_item] * 2, [right, wrong], recipe) == [1.0, 0.0]


def test_outputs_compare_as_lcb_runner_compares_them():
    assert livecodebench.same_output("6\n", "6") and livecodebench.same_output(" 1 2 \n3\n\n", "1 2\n3")
    assert livecodebench.same_output("0.3333333", "0.33333333") and not livecodebench.same_output("0.34", "0.33")
    assert not livecodebench.same_output("1\n2", "1") and not livecodebench.same_output("yes", "no")


def test_a_private_case_that_would_run_code_when_unpickled_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()
    (tmp_path / "evil.jsonl").write_text(json.dumps(ROWS[0] | {"private_test_cases": evil}) + "\n")
    recipe = recipe_from_dict({
        "name": "lcb", "run_dir": str(tmp_path / "run"), "target": {"model": "m"},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": "m"}], "eval": {"livecodebench": {"data": [str(tmp_path / "evil.jsonl")]}}})
    with pytest.raises(FusechatError, match="not a LiveCodeBench code_generation_lite row .*refused"):
        livecodebench.items(recipe, set())
    assert not (tmp_path / "pwned").exists()

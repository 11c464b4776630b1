"""`fusechat convert-code`: LeetCode and self-oss-instruct rows (in their real columns) become prompts whose
tests pass the reference and fail a wrong answer, in the sandbox."""

import json

from fusechat.convert_code import convert, leetcode_row, self_oss_row
from fusechat.recipe import SandboxConfig
from fusechat.scorers.code import check_many

TWO_SUM = {  # greengerong/leetcode's columns: content in Markdown with escaped brackets, a solution per language
    "id": 1, "slug": "two-sum", "title": "Two Sum", "difficulty": "Easy",
    "content": "Given an array of integers `nums` and an integer `target`, return _indices of the two numbers such that "
               "they add up to `target`_.\n\n**Example 1:**\n\n**Input:** nums = \\[2,7,11,15\\], target = 9\n"
               "**Output:** \\[0,1\\]\n**Explanation:** Because nums\\[0\\] + nums\\[1\\] == 9, we return \\[0, 1\\].\n\n"
               "**Example 2:**\n\n**Input:** nums = \\[3,2,4\\], target = 6\n**Output:** \\[1,2\\]\n\n**Constraints:**\n\n"
               "*   `2 <= nums.length <= 104`",
    "java": "```java\nclass Solution {}\n```", "c++": "```cpp\n```", "javascript": "```javascript\n```",
    "python": "```python\ndef twoSum(nums, target):\n    seen = {}\n    for i, num in enumerate(nums):\n"
              "        if target - num in seen:\n            return [seen[target - num], i]\n        seen[num] = i\n"
              "    return []\n```\n    \n    The algorithm keeps a hash map of the numbers seen so far.",
}
PALINDROME = dict(TWO_SUM, id=9, slug="palindrome-number",
                  content="Given an integer `x`, return `true` _if_ `x` _is a_ _**palindrome**__, and_ `false` _otherwise_.\n\n"
                          "**Example 1:**\n\n**Input:** x = 121\n**Output:** true\n\n**Example 2:**\n\n**Input:** x = -121\n"
                          "**Output:** false\n",
                  python="```python\ndef is_palindrome(x: int) -> bool:\n    return str(x) == str(x)[::-1]\n```\n")
LIST = dict(TWO_SUM, id=2, content="You are given two linked lists...\n\n**Input:** l1 = \\[2,4,3\\], l2 = \\[5,6,4\\]\n"
            "**Output:** \\[7,0,8\\]\n", python="```python\nclass ListNode:\n    pass\ndef addTwoNumbers(l1, l2):\n    pass\n```")
WRONG_REFERENCE = dict(TWO_SUM, id=3, python="```python\ndef twoSum(nums, target):\n    return [0, 0]\n```")
SELF_OSS = {  # bigcode/self-oss-instruct-sc2-exec-filter-50k's columns
    "fingerprint": None, "sha1": "abc", "seed": "def f(): pass", "concepts": ["string manipulation"], "id": 7,
    "prompt": "Provide the best response to a given instruction...",
    "instruction": "Write a Python function `count_vowels(s)` that returns the number of vowels in `s`.",
    "response": "## Reasoning\n\nCount them.\n\n## Implementation\n\n```python\ndef count_vowels(s):\n"
                "    return sum(c in 'aeiou' for c in s.lower())\n```\n\n## Tests\n\n```python\n"
                "assert count_vowels('hello') == 2\nassert count_vowels('') == 0\n```\n",
}


def test_leetcode_examples_become_asserts_and_classes_are_skipped():
    row, _ = leetcode_row(TWO_SUM)
    assert row["entry_point"] == "twoSum"
    assert row["tests"] == "assert twoSum(nums=[2, 7, 11, 15], target=9) == [0, 1]\nassert twoSum(nums=[3, 2, 4], target=6) == [1, 2]\n"
    assert "`twoSum(nums, target)`" in row["prompt"] and "nums[0] + nums[1]" in row["prompt"]  # escapes removed
    palindrome, _ = leetcode_row(PALINDROME)
    assert palindrome["tests"] == "assert is_palindrome(x=121) == True\nassert is_palindrome(x=-121) == False\n"
    assert leetcode_row(LIST) == (None, "needs a class (linked list, tree, ...)")


def test_self_oss_keeps_its_test_block():
    row, _ = self_oss_row(SELF_OSS)
    assert row["entry_point"] == "count_vowels" and row["tests"].startswith("assert count_vowels('hello') == 2")
    assert row["prompt"] == SELF_OSS["instruction"]


def test_the_converted_file_verifies_in_the_sandbox_and_judges_answers(tmp_path):
    data = tmp_path / "leetcode.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in (TWO_SUM, PALINDROME, LIST, WRONG_REFERENCE)))
    out = tmp_path / "leetcode-tests.jsonl"
    counts = convert("leetcode", str(data), out)
    assert counts == {"kept": 2, "skipped: needs a class (linked list, tree, ...)": 1,
                      "skipped: the reference fails its tests": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    right = ("def twoSum(nums, target):\n    for i in range(len(nums)):\n        for j in range(i + 1, len(nums)):\n"
             "            if nums[i] + nums[j] == target:\n                return [i, j]\n")
    wrong = "def twoSum(nums, target):\n    return [1, 0]\n"
    verdicts = check_many([(right, rows[0]["tests"]), (wrong, rows[0]["tests"])], SandboxConfig(), extract=False)
    assert [ok for ok, _ in verdicts] == [True, False]
    oss = tmp_path / "oss.jsonl"
    oss.write_text(json.dumps(SELF_OSS) + "\n")
    assert convert("self-oss", str(oss), tmp_path / "oss-tests.jsonl")["kept"] == 1
    # the file is a prompt file the prompts stage reads as is
    from fusechat.prompts import load_prompt_file
    assert [p["entry_point"] for p in load_prompt_file(out, "code")] == ["twoSum", "is_palindrome"]


def test_the_cli_names_an_unknown_kind_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from fusechat.cli import app

    result = CliRunner().invoke(app, ["convert-code", "codeforces", str(tmp_path / "x.jsonl"), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "unknown set kind 'codeforces'" in result.output

"""`fusechat convert-code`: code prompts with runnable tests, from the sets the paper used.

The paper kept only code prompts that have tests; neither of its code sets ships a test column the
sandbox can run, so this makes {prompt, tests, entry_point} rows (a `domain: code` prompt file):

- **LeetCode** (`greengerong/leetcode`: `content` in Markdown, a reference solution per language): the
  statement's examples become asserts on the Python reference's function (`**Input:** nums = \\[2,7\\],
  target = 9` / `**Output:** \\[0,1\\]` -> `assert twoSum(nums=[2, 7], target=9) == [0, 1]`). Problems on
  linked lists, trees or other classes, with answers "in any order", or with no example whose values
  parse, are skipped and counted.
- **self-oss-instruct-sc2-exec-filter** (`bigcode/self-oss-instruct-sc2-exec-filter-50k`): `instruction` is
  the prompt; its `response` holds the implementation and the test block that passed when the set was
  made (the exec filter); the test block becomes the tests.

With `verify` (the default) each row's reference runs against its tests in the sandbox, and only rows
that pass are written: a test the reference fails would mark every correct answer wrong. No library
converts these sets (evalplus and LiveCodeBench ship their own tests for other problems), hence ours.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

from fusechat import FusechatError
from fusechat.readers import dataset_rows
from fusechat.recipe import SandboxConfig
from fusechat.runfolder import write_atomic

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S)
_EXAMPLE = re.compile(r"\*\*Input:?\*\*:?\s*(.+?)\n+\s*\*\*Output:?\*\*:?\s*(.+?)(?:\n|$)")
_CLASSES = re.compile(r"\b(ListNode|TreeNode|Node|NestedInteger|Employee|Interval|Master|Robot)\b")


def convert(kind: str, dataset: str, out: Path, split: str = "train", limit: int | None = None, verify: bool = True,
            limits: SandboxConfig | None = None) -> Counter:
    """Write the converted rows of `dataset` to `out` (JSONL); the counts of what was kept and skipped."""
    convert_row = {"leetcode": leetcode_row, "self-oss": self_oss_row}.get(kind)
    if convert_row is None:
        raise FusechatError(f"convert-code: unknown set kind {kind!r} (leetcode or self-oss)")
    counts: Counter = Counter()
    rows, references = [], []
    for where, row in dataset_rows(dataset, split=split, limit=limit):
        converted, why = convert_row(row)
        if converted is None:
            counts[f"skipped: {why}"] += 1
            continue
        reference = converted.pop("reference")
        rows.append(converted)
        references.append(reference)
    if verify and rows:
        from fusechat.scorers.code import check_many

        verdicts = check_many([(ref, r["tests"]) for ref, r in zip(references, rows)], limits or SandboxConfig(), extract=False)
        kept = [r for r, (ok, _) in zip(rows, verdicts) if ok]
        counts["skipped: the reference fails its tests"] += len(rows) - len(kept)
        rows = kept
    counts["kept"] = len(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return counts


def leetcode_row(row: dict) -> tuple[dict | None, str]:
    """One greengerong/leetcode row as a prompt with asserts (and its reference), or None and why not."""
    content, python = str(row.get("content") or ""), str(row.get("python") or "")
    blocks = _FENCE.findall(python)
    reference = blocks[0].strip() if blocks else ""
    found = re.search(r"^def (\w+)\((.*?)\)", reference, re.M)
    if not found:
        return None, "no Python reference function"
    if _CLASSES.search(reference) or _CLASSES.search(content.split("**Example")[0]):
        return None, "needs a class (linked list, tree, ...)"
    if re.search(r"any order", content, re.I):
        return None, "answers in any order"
    name = found[1]
    tests = []
    for given, expected in _EXAMPLE.findall(content):
        args, want = _assignments(_unescape(given)), _literal(_unescape(expected))
        if args is None or want is _NOT:
            continue
        call = ", ".join(f"{k}={v!r}" for k, v in args)
        tests.append(f"assert {name}({call}) == {want!r}")
    if not tests:
        return None, "no example whose values parse"
    statement = _unescape(content).strip()
    prompt = (f"{statement}\n\nWrite a Python function `{name}({found[2]})` that solves this. "
              "Return only the function in a ```python code block.")
    return {"prompt": prompt, "tests": "\n".join(tests) + "\n", "entry_point": name, "id": f"leetcode-{row.get('id')}",
            "reference": reference}, ""


def self_oss_row(row: dict) -> tuple[dict | None, str]:
    """One self-oss-instruct-sc2-exec-filter row: its instruction, the test block of its response."""
    instruction, response = str(row.get("instruction") or ""), str(row.get("response") or "")
    if not instruction.strip():
        return None, "no instruction"
    tests_part = re.split(r"^#+\s*Tests?\b.*$", response, flags=re.M | re.I)
    blocks = _FENCE.findall(tests_part[0])
    test_blocks = _FENCE.findall(tests_part[1]) if len(tests_part) > 1 else []
    tests = "\n".join(b.strip() for b in test_blocks if "assert" in b)
    implementation = next((b for b in reversed(blocks) if "def " in b), "")
    found = re.search(r"^def (\w+)\(", implementation, re.M)
    if not tests or not found:
        return None, "no implementation and test block"
    return {"prompt": instruction.strip(), "tests": tests + "\n", "entry_point": found[1],
            "id": f"self-oss-{row.get('id', row.get('sha1', ''))}", "reference": implementation.strip()}, ""


_NOT = object()


def _unescape(text: str) -> str:
    return re.sub(r"\\([\[\]*_`#])", r"\1", text).strip()


def _literal(text: str):
    text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", text.strip())))
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NOT


def _assignments(text: str) -> list[tuple[str, object]] | None:
    """`nums = [2,7], target = 9` -> [("nums", [2, 7]), ("target", 9)], or None if a value does not parse."""
    names = list(re.finditer(r"(?:^|,\s*)([A-Za-z_]\w*)\s*=\s*", text))
    if not names:
        return None
    out = []
    for i, m in enumerate(names):
        end = names[i + 1].start() if i + 1 < len(names) else len(text)
        value = _literal(text[m.end():end])
        if value is _NOT:
            return None
        out.append((m[1], value))
    return out

"""HumanEval+ and MBPP+ (EvalPlus): rows in the hub sets' layout, every answer run in the sandbox against
EvalPlus's test program; a known-right answer passes and a known-wrong one fails."""

import json

import pytest
import yaml

from fusechat.benchmarks.evalplus import HUMANEVAL_PLUS, MBPP_PLUS
from fusechat.recipe import load_recipe, recipe_from_dict

# EvalPlus's test programs: inputs, the reference outputs, and its `assertion` helper (numpy for floats).
ASSERTION = '''
import numpy as np

def is_floats(x) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return all(isinstance(i, float) for i in x)
    return False

def assertion(out, exp, atol):
    exact_match = out == exp
    if atol == 0 and is_floats(exp):
        atol = 1e-6
    if not exact_match and atol != 0:
        assert np.allclose(out, exp, rtol=1e-07, atol=atol)
    else:
        assert exact_match
'''
HUMANEVAL_ROW = {
    "task_id": "HumanEval/53", "entry_point": "add",
    "prompt": 'def add(x: int, y: int):\n    """Add two numbers x and y\n    >>> add(2, 3)\n    5\n    """\n',
    "canonical_solution": "    return x + y\n",
    "test": ASSERTION + "\n\ndef check(candidate):\n    inputs = [[0, 1], [1, 0], [2, 3], [5, 7], [-4, 4], [0.5, 0.25]]\n"
            "    results = [1, 1, 5, 12, 0, 0.75]\n    for i, (inp, exp) in enumerate(zip(inputs, results)):\n"
            "        assertion(candidate(*inp), exp, 0)\n"}
MBPP_ROW = {
    "task_id": 2, "prompt": "Write a function to find the shared elements from the given two lists.",
    "code": "def similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))\n",
    "source_file": "Benchmark Questions Verification V2.ipynb", "test_imports": [],
    "test_list": ["assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
                  "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))"],
    "test": ASSERTION + "\n\ninputs = [[(3, 4, 5, 6), (5, 7, 4, 10)], [(11, 12, 14, 13), (17, 15, 14, 13)], [(1, 2), (3, 4)]]\n"
            "results = [(4, 5), (13, 14), ()]\nfor i, (inp, exp) in enumerate(zip(inputs, results)):\n"
            "    assertion(tuple(sorted(similar_elements(*inp))), exp, 0)\n"}


@pytest.fixture
def recipe(tmp_path):
    (tmp_path / "he.jsonl").write_text(json.dumps(HUMANEVAL_ROW) + "\n")
    (tmp_path / "mbpp.jsonl").write_text(json.dumps(MBPP_ROW) + "\n")
    return recipe_from_dict({
        "name": "ep", "run_dir": str(tmp_path / "run"), "target": {"model": "m"},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": "m"}],
        "eval": {"humaneval_plus": 1, "mbpp_plus": 1,
                 "evalplus_data": {"humaneval_plus": str(tmp_path / "he.jsonl"), "mbpp_plus": str(tmp_path / "mbpp.jsonl")}}})


def test_a_right_answer_passes_evalplus_tests_and_a_wrong_one_fails(recipe):
    [he] = HUMANEVAL_PLUS.items(recipe, set())
    [mbpp] = MBPP_PLUS.items(recipe, set())
    assert "self-contained Python script" in he["prompt"] and "def add(x: int, y: int)" in he["prompt"]
    assert "assert set(similar_elements((3, 4, 5, 6)" in mbpp["prompt"] and mbpp["id"] == "Mbpp/2"
    right = "```python\ndef add(x: int, y: int):\n    return x + y\n```"
    only_ints = "```python\ndef add(x, y):\n    return int(x) + int(y)\n```"  # passes HumanEval's own ints, not 0.5 + 0.25
    assert HUMANEVAL_PLUS.score([he, he], [right, only_ints], recipe) == [1.0, 0.0]
    right = "```python\ndef similar_elements(a, b):\n    return tuple(set(a) & set(b))\n```"
    wrong = "```python\ndef similar_elements(a, b):\n    return tuple(set(a) | set(b))\n```"
    # the original asserts pass but EvalPlus's disjoint input does not: the answer must not return the first list
    first_only = "```python\ndef similar_elements(a, b):\n    return tuple(x for x in a if x in b) or a\n```"
    assert MBPP_PLUS.score([mbpp] * 3, [right, wrong, first_only], recipe) == [1.0, 0.0, 0.0]


def test_a_row_in_another_layout_is_named(tmp_path):
    from fusechat import FusechatError

    (tmp_path / "bad.jsonl").write_text(json.dumps({"task_id": 1, "question": "?"}) + "\n")
    recipe = recipe_from_dict({
        "name": "ep", "run_dir": str(tmp_path / "run"), "target": {"model": "m"},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": "m"}],
        "eval": {"mbpp_plus": 1, "evalplus_data": {"humaneval_plus": "x", "mbpp_plus": str(tmp_path / "bad.jsonl")}}})
    with pytest.raises(FusechatError, match=r"bad.jsonl.*not an EvalPlus MBPP\+ pass@1 row"):
        MBPP_PLUS.items(recipe, set())


def test_evalplus_through_the_eval_stage(tmp_path, tiny_model_dir, recipe):
    from fusechat.pipeline import run_stage
    from fusechat.runfolder import RunFolder

    data = {"name": "ep", "run_dir": str(tmp_path / "run2"), "target": {"model": str(tiny_model_dir)},
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
            "sources": [{"name": "s", "model": str(tiny_model_dir)}],
            "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                     "max_new_tokens": 8, "humaneval_plus": 1, "mbpp_plus": 1,
                     "evalplus_data": recipe.eval.evalplus_data}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    run = load_recipe(tmp_path / "r.yaml")
    run_stage("eval", run)
    results = {r["benchmark"]: r for r in RunFolder(run.run_path).records("eval", "results")}
    assert set(results) == {"humaneval_plus", "mbpp_plus"} and all(r["n"] == 1 and r["score"] == 0.0 for r in results.values())

"""eval.harness: lm-evaluation-harness through the eval stage, on a local task whose score a hand count gives."""

from __future__ import annotations

import json

import pytest
import yaml

from fusechat import FusechatError
from fusechat.pipeline import run_stage
from fusechat.recipe import load_recipe, recipe_from_dict
from fusechat.runfolder import RunFolder

# Each question has a one-word choice and two long ones. A random tiny model gives every token about the
# same log-probability, so the summed log-likelihood (lm-eval's `acc`) always prefers the one-word choice:
# by hand, the accuracy is the share of items whose gold answer is the short one (3 of 5).
LONG = "a very long answer that goes on and on for many more words than the other one does"
DOCS = [{"question": f"Question {i}: which one?", "choices": ["yes", LONG, LONG + " again"], "answer": gold}
        for i, gold in enumerate([0, 1, 0, 2, 0])]


def local_task(folder):
    (folder / "data.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "tiny_mc.yaml").write_text(yaml.safe_dump({
        "task": "fusechat_tiny_mc", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / "data.jsonl")}}, "test_split": "test",
        "output_type": "multiple_choice", "doc_to_text": "question", "doc_to_choice": "choices", "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}))


def test_lm_eval_on_a_local_task_gives_the_hand_count(tmp_path, tiny_model_dir):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    local_task(tasks)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": str(tiny_model_dir)}],
        "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                 "harness": ["fusechat_tiny_mc"], "harness_include": str(tasks)}}))
    recipe = load_recipe(path)
    run_stage("eval", recipe)
    folder = RunFolder(recipe.run_path)
    [result] = folder.records("eval", "results")
    assert result["benchmark"] == "harness:fusechat_tiny_mc" and result["n"] == 5
    assert result["score"] == pytest.approx(3 / 5) and result["ci_low"] < 0.6 < result["ci_high"]
    items = sorted(folder.records("eval", "items"), key=lambda r: r["id"])
    assert [r["score"] for r in items] == [1.0 if d["answer"] == 0 else 0.0 for d in DOCS]
    assert run_stage("eval", recipe)["skipped"]

    # an edit to the task's files is an input change: the evaluation reruns
    (tasks / "data.jsonl").write_text("".join(json.dumps(d | {"answer": 0}) + "\n" for d in DOCS))
    recipe = load_recipe(path)
    assert not run_stage("eval", recipe).get("skipped")
    [result] = RunFolder(recipe.run_path).records("eval", "results")
    assert result["score"] == pytest.approx(1.0)


def test_code_running_harness_tasks_are_refused_before_any_work():
    with pytest.raises(FusechatError, match="outside the sandbox"):
        recipe_from_dict({"prompts": {"sets": [{"domain": "instruction", "pack": "sharegpt", "n": 1}]},
                          "sources": [{"name": "s", "model": "m"}], "eval": {"harness": ["gsm8k", "humaneval"]}})

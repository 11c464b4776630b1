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


def test_a_group_task_keeps_every_subtasks_items_and_a_study_pairs_them(tmp_path, tiny_model_dir):
    """lm-eval logs samples per subtask only (minerva_math, mmlu_pro are groups): the items come back under
    the group's name, one per subtask document, and the study's paired comparison counts them all."""
    from fusechat.benchmarks.harness import run_harness
    from fusechat.recipe import EvalConfig
    from fusechat.study_report import compare

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    local_task(tasks)
    second = yaml.safe_load((tasks / "tiny_mc.yaml").read_text()) | {"task": "fusechat_tiny_mc2"}
    (tasks / "tiny_mc2.yaml").write_text(yaml.safe_dump(second))
    (tasks / "group.yaml").write_text(yaml.safe_dump({
        "group": "fusechat_tiny_group", "task": ["fusechat_tiny_mc", "fusechat_tiny_mc2"],
        "aggregate_metric_list": [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}]}))
    cfg = EvalConfig(harness=["fusechat_tiny_group"], harness_include=str(tasks), dtype="float32", batch_size=4)
    summary, rows = run_harness(str(tiny_model_dir), cfg)
    [group] = [r for r in summary if r["metric"] == "acc"]
    assert group["benchmark"] == "harness:fusechat_tiny_group" and group["n"] == 10 and group["score"] == pytest.approx(0.6)
    assert len(rows) == 10 and {r["benchmark"] for r in rows} == {"harness:fusechat_tiny_group"}
    assert len({r["id"] for r in rows}) == 10  # the subtask is in the id: the two copies stay apart
    expected = [1.0 if d["answer"] == 0 else 0.0 for d in DOCS]
    assert [r["score"] for r in sorted(rows, key=lambda r: r["id"])] == expected * 2
    scores = {(r["benchmark"], r["id"]): r["score"] for r in rows}
    flipped = {k: 1.0 - v for k, v in scores.items()}
    row = compare({0: scores}, {0: flipped}, "harness:fusechat_tiny_group", resamples=200)
    assert row["n"] == 10 and row["diff"] == pytest.approx(0.6 - 0.4)

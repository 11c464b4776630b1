"""fusechat's lm-eval tasks under the paper's protocol: each scorer gives a known-right answer full marks and a
known-wrong one none, on documents laid out as their hub data sets are; a task runs end to end through lm-eval
on a local copy of that layout."""

import importlib.util
import json

import pytest
import yaml

from fusechat.benchmarks.harness import TASKS_DIR, run_harness
from fusechat.recipe import EvalConfig


@pytest.fixture(scope="module")
def utils():
    spec = importlib.util.spec_from_file_location("fusechat_task_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One document per benchmark, in its hub set's columns.
GSM8K = {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
         "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"}
MATH = {"problem": "What is $\\frac{1}{2} + \\frac{1}{3}$?", "level": "Level 1", "type": "Prealgebra",
        "solution": "The sum is $\\frac{3}{6} + \\frac{2}{6} = \\boxed{\\frac{5}{6}}$."}
AMC23 = {"id": 0, "question": "What is the sum of the first 10 positive integers?", "answer": 55.0}
MMLU_PRO = {"question_id": 70, "question": "Which gas makes up most of Earth's atmosphere?",
            "options": ["Oxygen", "Nitrogen", "Argon", "Carbon dioxide"], "answer": "B", "answer_index": 1,
            "cot_content": "", "category": "chemistry", "src": "ori_mmlu-high_school_chemistry"}


@pytest.mark.parametrize("doc, right, wrong", [
    (GSM8K, "3 + 4 = 7, so he has \\boxed{7} apples.", "3 + 4 = 8, so \\boxed{8}."),
    (MATH, "Common denominator 6: \\boxed{\\dfrac{5}{6}}", "\\boxed{\\frac{2}{5}}"),
    (AMC23, "10 * 11 / 2 = 55. The answer is \\boxed{55}.", "\\boxed{45}"),
])
def test_math_tasks_score_a_right_answer_1_and_a_wrong_one_0(utils, doc, right, wrong):
    assert utils.math_results(doc, [right]) == {"exact_match": 1.0}
    assert utils.math_results(doc, [wrong]) == {"exact_match": 0.0}
    prompt = utils.math_prompt(doc)
    assert prompt.startswith(doc.get("question") or doc["problem"]) and prompt.endswith(utils.MATH_INSTRUCTION)


def test_multiple_choice_reads_the_letter_after_the_answer_is(utils):
    right = "Nitrogen is about 78% of the air. The answer is (B)."
    assert utils.mc_results(MMLU_PRO, [right]) == {"exact_match": 1.0}
    assert utils.mc_results(MMLU_PRO, ["Oxygen, we breathe it. The answer is (A)."]) == {"exact_match": 0.0}
    assert utils.mc_results(MMLU_PRO, ["I am not sure."]) == {"exact_match": 0.0}  # no letter: wrong, never a guess
    assert "(D) Carbon dioxide" in utils.mc_prompt(MMLU_PRO)
    # MMLU-redux's layout: `choices`, and the right one's index
    redux = {"question": "Which gas is most of the air?", "choices": ["Oxygen", "Nitrogen", "Argon", "Helium"], "answer": 1}
    assert utils.mc_results(redux, [right]) == {"exact_match": 1.0}
    assert utils.mc_results(redux, ["The answer is (A)."]) == {"exact_match": 0.0}
    assert "(B) Nitrogen" in utils.mc_prompt(redux) and utils.MC_INSTRUCTION in utils.mc_prompt(redux)


def test_a_paper_protocol_task_runs_through_lm_eval_on_a_local_copy(tmp_path, tiny_model_dir):
    """fusechat_gsm8k as shipped, its data swapped for a local file in GSM8K's layout: 0-shot, per-item rows."""
    (tmp_path / "gsm8k.jsonl").write_text("".join(json.dumps(d) + "\n" for d in [GSM8K, GSM8K | {"question": "1 + 1?"}]))
    (tmp_path / "local.yaml").write_text(yaml.safe_dump({
        "include": str(TASKS_DIR / "fusechat_gsm8k.yaml"), "task": "local_gsm8k", "dataset_path": "json",
        "dataset_name": None, "dataset_kwargs": {"data_files": {"test": str(tmp_path / "gsm8k.jsonl")}},
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": 4}}))
    cfg = EvalConfig(harness=["local_gsm8k"], harness_include=str(tmp_path), dtype="float32", batch_size=2)
    summary, rows = run_harness(str(tiny_model_dir), cfg)
    [score] = summary
    assert score["benchmark"] == "harness:local_gsm8k" and score["n"] == 2 and score["metric"] == "exact_match"
    assert len(rows) == 2 and all(r["score"] == 0.0 for r in rows)  # a random tiny model never says 7


def test_lm_evals_stock_index_is_built_only_when_a_stock_task_is_asked_for():
    """fusechat's own task files hold fusechat_gsm8k: indexing lm-eval's thousands of stock files (seconds) is
    skipped; the rehearsal's local copies of stock tasks ride on this too."""
    from fusechat.benchmarks.harness import task_manager

    own = task_manager(None, ("fusechat_gsm8k", "fusechat_math", "fusechat_mmlu_redux"))
    assert {"fusechat_gsm8k", "fusechat_math", "fusechat_math_algebra", "fusechat_mmlu_redux"} <= set(own.all_tasks)
    assert sum(t.startswith("fusechat_mmlu_redux_") for t in own.all_tasks) == 57  # MMLU's subjects
    assert "gsm8k" not in own.all_tasks

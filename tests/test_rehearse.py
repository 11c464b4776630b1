"""`fusechat rehearse`: every shipped non-CPU recipe, exactly as shipped, on tiny stand-ins, from an empty
folder through every stage; the stand-ins keep each part the recipe names (prompt-set structure, sources,
reward model class, build rules, training settings) and say what they replaced."""

import json
from pathlib import Path

import pytest

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
    if real.eval.mbpp_plus:  # EvalPlus's benchmarks from fixtures in the hub sets' layout, through the sandbox
        assert {"base/humaneval_plus", "sft+dpo/mbpp_plus"} <= set(r.manifests["eval"]["counts"])
    if real.eval.livecodebench:  # code_generation_lite rows in the paper's window, every case in the sandbox
        assert "sft+dpo/livecodebench" in r.manifests["eval"]["counts"]
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
    real = load_recipe(builtin_recipe("paper-qwen2.5-7b"))
    assert [s.n for s in r.recipe.prompts.sets] == [-(-s.n // 1000) for s in real.prompts.sets]
    assert r.recipe.eval.humaneval == 1 and r.recipe.eval.mtbench == 1
    families = {s.name: json.loads((Path(s.model) / "config.json").read_text())["model_type"]
                for s in r.recipe.sources if s.backend != "dataset"}
    assert families == {"gemma-2-27b": "gemma2", "mistral-large": "mistral", "qwen-2.5-72b": "qwen2",
                        "llama-3.1-70b": "llama", "qwen-2.5-math-72b": "qwen2"}
    target = json.loads((Path(r.recipe.target.model) / "config.json").read_text())
    assert target["model_type"] == "qwen2"

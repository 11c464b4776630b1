"""A recipe that starts at build from SFT/DPO sets in FuseChat-3.0's released layout (a small local
sample here: `train.json` files of conversations) trains and evaluates like any run."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from fusechat import FusechatError
from fusechat.cli import app
from fusechat.import_data import dpo_pair, sft_example
from fusechat.pipeline import run_all, run_stage
from fusechat.recipe import load_recipe, recipe_from_dict
from fusechat.runfolder import RunFolder


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# The released sets' layout: a JSON list; SFT rows are conversations, DPO rows carry the whole
# conversation in `chosen` and `rejected` (the prompt is their shared start) with the prompt text too.
SFT = [{"messages": [user(f"Add {i} and {i}."), assistant(f"{i} + {i} = {2 * i}")], "category": "math"} for i in range(6)] + \
      [{"messages": [user("Write a haiku about rain."), assistant("Rain taps on the roof\nsoft drums in the grey morning\npuddles hold the sky")],
        "category": "general"}]
DPO = [{"prompt": f"Double {i}.", "chosen": [user(f"Double {i}."), assistant(f"{2 * i}")],
        "rejected": [user(f"Double {i}."), assistant(f"{2 * i + 1}")], "category": "math"} for i in range(4)]


@pytest.fixture
def data_recipe(tmp_path, tiny_model_dir):
    (tmp_path / "sft").mkdir()
    (tmp_path / "dpo").mkdir()
    (tmp_path / "sft" / "train.json").write_text(json.dumps(SFT))
    (tmp_path / "dpo" / "train.json").write_text(json.dumps(DPO))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "from-data", "run_dir": str(tmp_path / "run"),
        "data": {"sft": str(tmp_path / "sft"), "dpo": str(tmp_path / "dpo" / "train.json"), "domain_column": "category",
                 "domains": {"general": "instruction"}},
        "target": {"model": str(tiny_model_dir)},
        "sft": {"epochs": 1, "learning_rate": 1e-3, "batch_size": 2, "grad_accum": 1, "precision": "fp32", "max_length": 64},
        "dpo": {"epochs": 1, "learning_rate": 1e-3, "batch_size": 2, "grad_accum": 1, "precision": "fp32", "max_length": 64},
        "eval": {"math": {"n": 4, "task": "basic_arithmetic", "max_new_tokens": 8}, "humaneval": 0, "mtbench": 0,
                 "constraints": 2, "max_new_tokens": 8, "dtype": "float32"}}))
    return path


def test_a_run_started_from_released_data_trains_and_evaluates(data_recipe):
    recipe = load_recipe(data_recipe)
    manifests = run_all(recipe)
    assert list(manifests) == ["build", "sft", "dpo", "eval", "report"]  # no prompts, sampling or scoring
    folder = RunFolder(recipe.run_path)
    sft, dpo = folder.records("build", "sft"), folder.records("build", "dpo")
    assert [r["messages"] for r in sft] == [r["messages"] for r in SFT]
    assert [r["domain"] for r in sft] == ["math"] * 6 + ["instruction"]
    assert dpo[1]["prompt"] == [user("Double 1.")] and dpo[1]["chosen"] == [assistant("2")] and dpo[1]["rejected"] == [assistant("3")]
    assert manifests["build"]["counts"]["sft"] == {"math": 6, "instruction": 1}
    assert (recipe.run_path / "dpo" / "model" / "config.json").is_file()
    models = {r["model"] for r in folder.records("eval", "results")}
    assert models == {"base", "sft", "sft+dpo"}
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(recipe.run_path / "build" / "README.md")
    assert "imported from" in card.text and "| math | 6 | 4 |" in card.text
    assert all(m.get("skipped") for m in run_all(recipe).values())

    # a changed data setting, or an edited data file, is an input change: the build reruns
    assert not run_stage("build", load_recipe(data_recipe, ["data.limit=5"])).get("skipped")
    assert len(folder.records("build", "sft")) == 5
    (data_recipe.parent / "dpo" / "train.json").write_text(json.dumps(DPO[:3]))
    assert not run_stage("build", load_recipe(data_recipe)).get("skipped")
    assert len(folder.records("build", "dpo")) == 3


def test_rows_in_the_formats_trainers_use():
    conversation = [user("Hi"), assistant("Hello")]
    assert sft_example({"messages": conversation}, "w") == conversation
    assert sft_example({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}, "w") == conversation
    assert sft_example({"prompt": "Hi", "completion": "Hello"}, "w") == conversation
    assert sft_example({"instruction": "Hi", "input": "", "output": "Hello"}, "w") == conversation
    # TRL's explicit-prompt format, and whole conversations with a prompt key as well
    assert dpo_pair({"prompt": [user("Hi")], "chosen": [assistant("a")], "rejected": [assistant("b")]}, "w") == \
        ([user("Hi")], [assistant("a")], [assistant("b")])
    assert dpo_pair({"prompt": "Hi", "chosen": "a", "rejected": "b"}, "w") == ([user("Hi")], [assistant("a")], [assistant("b")])
    with pytest.raises(FusechatError, match="w: an SFT row needs"):
        sft_example({"text": "x"}, "w")
    with pytest.raises(FusechatError, match="w: an SFT conversation must"):
        sft_example({"messages": [user("Hi")]}, "w")


def test_a_bad_row_is_one_line_naming_the_file_and_row(tmp_path, data_recipe):
    (tmp_path / "dpo" / "train.json").write_text(json.dumps(DPO[:2] + [{"prompt": "x", "chosen": "a"}]))
    result = CliRunner().invoke(app, ["build", str(data_recipe)])
    assert result.exit_code == 2
    assert "train.json" in result.output and "row 2" in result.output and "needs `chosen` and `rejected`" in result.output
    assert "Traceback" not in result.output


def test_a_pair_whose_chosen_is_its_rejected_is_refused(tmp_path, data_recipe):
    same = {"prompt": "Say hi.", "chosen": "Hi.", "rejected": "Hi."}
    (tmp_path / "dpo" / "train.json").write_text(json.dumps(DPO[:2] + [same]))
    result = CliRunner().invoke(app, ["build", str(data_recipe)])
    assert result.exit_code == 2 and "row 2" in result.output and "the same answer" in result.output
    assert "Traceback" not in result.output


def test_data_excludes_prompts_and_sources_and_has_no_sampling_stage(data_recipe):
    with pytest.raises(FusechatError, match="starts at build"):
        recipe_from_dict({"data": {"sft": "x"}, "sources": [{"name": "s", "model": "m"}]})
    with pytest.raises(FusechatError, match="prompts: required"):
        recipe_from_dict({"sources": [{"name": "s", "model": "m"}]})
    result = CliRunner().invoke(app, ["sample", str(data_recipe)])
    assert result.exit_code == 2 and "has no sample stage" in result.output


def test_run_until_and_from_a_stage(data_recipe):
    """`fusechat run --until build` makes the data only; `--from dpo` redoes dpo and what follows, nothing before."""
    result = CliRunner().invoke(app, ["run", str(data_recipe), "--until", "build", "--set", "eval.constraints=0"])
    assert result.exit_code == 0, result.output
    folder = RunFolder(load_recipe(data_recipe).run_path)
    assert folder.manifest("build") and folder.manifest("sft") is None
    run_all(load_recipe(data_recipe, ["eval.constraints=0"]))
    before = {s: folder.manifest(s)["finished_at"] for s in ("build", "sft", "dpo")}
    result = CliRunner().invoke(app, ["run", str(data_recipe), "--from", "dpo", "--set", "eval.constraints=0"])
    assert result.exit_code == 0, result.output
    after = {s: folder.manifest(s)["finished_at"] for s in ("build", "sft", "dpo")}
    assert after["build"] == before["build"] and after["sft"] == before["sft"] and after["dpo"] != before["dpo"]
    bad = CliRunner().invoke(app, ["run", str(data_recipe), "--from", "sample"])
    assert bad.exit_code == 2 and "no stage 'sample'" in bad.output
    # a run folder stands for the recipe it ran with (its recipe.yaml, overrides included)
    again = CliRunner().invoke(app, ["report", str(folder.path), "--force"])
    assert again.exit_code == 0, again.output
    assert load_recipe(folder.path / "recipe.yaml").eval.constraints == 0

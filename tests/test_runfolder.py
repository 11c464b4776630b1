"""The run folder's bookkeeping: what is current, what a failed or killed rerun leaves behind."""

import json

import pytest
import yaml

from fusechat import FusechatError
from fusechat.pipeline import run_stage
from fusechat.recipe import load_recipe
from fusechat.runfolder import Outputs, RunFolder


def prompts_recipe(tmp_path, prompt_file):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"),
                                    "prompts": {"sets": [{"domain": "math", "path": str(prompt_file)}]},
                                    "sources": [{"name": "s", "model": "smollm2-135m-instruct"}]}))
    return load_recipe(path)


def write_prompts(path, n):
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(n)))


def test_a_finished_stage_survives_an_upgrade_that_adds_an_option_or_stops_hashing_one(tmp_path):
    folder = RunFolder(tmp_path)
    old = {"sources": [{"name": "a", "temperature": 0.7, "threads": None}], "seed": 0}
    folder.write("sample", Outputs({"samples": [{"x": 1}]}), old, "input")
    upgraded = {"sources": [{"name": "a", "temperature": 0.7, "endpoint": None}], "seed": 0}  # threads: speed-only now
    assert folder.is_current("sample", upgraded, "input")
    # a new option that is set, or any changed value, reruns the stage
    assert not folder.is_current("sample", {"sources": [{"name": "a", "temperature": 0.7, "endpoint": "http://x"}], "seed": 0}, "input")
    assert not folder.is_current("sample", {"sources": [{"name": "a", "temperature": 0.8, "endpoint": None}], "seed": 0}, "input")
    # a key no longer hashed (a field since marked speed-only, like `threads`) keeps the stage current
    assert folder.is_current("sample", {"sources": [{"name": "a"}], "seed": 0}, "input")
    assert not folder.is_current("sample", upgraded, "other input")


def test_a_rerun_that_fails_on_bad_input_leaves_the_finished_stage_finished(tmp_path):
    prompt_file = tmp_path / "p.jsonl"
    write_prompts(prompt_file, 3)
    recipe = prompts_recipe(tmp_path, prompt_file)
    first = run_stage("prompts", recipe)
    prompt_file.write_text(prompt_file.read_text() + "{not json\n")
    with pytest.raises(FusechatError, match=r"p\.jsonl:4: malformed JSON"):
        run_stage("prompts", recipe)
    folder = RunFolder(recipe.run_path)
    assert folder.manifest("prompts")["output_fingerprint"] == first["output_fingerprint"]
    assert len(folder.records("prompts", "prompts")) == 3
    write_prompts(prompt_file, 3)  # the file repaired as it was: the finished stage is current again
    assert run_stage("prompts", recipe)["skipped"]


@pytest.mark.parametrize("damage", ["delete", "truncate", "delete-dataset"])
def test_a_damaged_output_is_not_current(tmp_path, damage):
    prompt_file = tmp_path / "p.jsonl"
    write_prompts(prompt_file, 3)
    recipe = prompts_recipe(tmp_path, prompt_file)
    first = run_stage("prompts", recipe)
    out = recipe.run_path / "prompts" / "prompts.jsonl"
    if damage == "delete":
        out.unlink()
    elif damage == "truncate":
        out.write_text(out.read_text().splitlines(keepends=True)[0])
    else:
        import shutil

        shutil.rmtree(recipe.run_path / "prompts" / "prompts")
    again = run_stage("prompts", recipe)
    assert not again.get("skipped") and again["output_fingerprint"] == first["output_fingerprint"]
    assert len(RunFolder(recipe.run_path).records("prompts", "prompts")) == 3


def test_a_stage_whose_input_has_not_finished_says_which_to_run(tmp_path):
    prompt_file = tmp_path / "p.jsonl"
    write_prompts(prompt_file, 1)
    with pytest.raises(FusechatError, match=r"stage 'prompts' has not finished; run `fusechat prompts` first"):
        run_stage("sample", prompts_recipe(tmp_path, prompt_file))


def test_eval_shard_keys_keep_similar_model_names_apart():
    from fusechat.evaluate import shard_key

    names = ["a.b", "a_b", "a-b", "a b"]
    assert len({shard_key("answers", n) for n in names}) == len(names)
    assert all(shard_key("answers", n).replace("-", "").replace("_", "").isalnum() for n in names)


def test_a_stage_may_read_only_the_stages_it_declares(tmp_path):
    """What a stage reads is what its input fingerprint covers: an undeclared read is refused."""
    from fusechat.runfolder import StageDef

    folder = RunFolder(tmp_path)
    folder.write("prompts", Outputs({"prompts": [{"id": "p"}]}))
    folder.write("sample", Outputs({"samples": [{"x": 1}]}))
    sneaky = StageDef("peek", lambda run: Outputs(counts={"n": len(run.read("sample", "samples"))}),
                      lambda recipe: {}, reads=("prompts",))
    with pytest.raises(RuntimeError, match="reads 'sample' without declaring it"):
        folder.run(sneaky, recipe=None)
    honest = StageDef("peek", sneaky.work, sneaky.settings, reads=("prompts", "sample"))
    assert folder.run(honest, recipe=None)["counts"] == {"n": 1}


def test_sft_depends_on_the_sft_set_only_and_dpo_on_the_pairs_only(tmp_path):
    from fusechat.pipeline import STAGES as stages

    folder = RunFolder(tmp_path)
    folder.write("build", Outputs({"sft": [{"a": 1}], "dpo": [{"p": 1}]}))
    sft = folder.input_fingerprint(stages["sft"], None)
    folder.write("build", Outputs({"sft": [{"a": 1}], "dpo": [{"p": 2}]}))  # new pairs, same SFT set
    assert folder.input_fingerprint(stages["sft"], None) == sft
    folder.write("build", Outputs({"sft": [{"a": 2}], "dpo": [{"p": 2}]}))  # a new SFT set
    assert folder.input_fingerprint(stages["sft"], None) != sft
    # DPO reads the pairs (and the SFT model): new pairs change its input, a new SFT set alone does not
    folder.write("sft", Outputs({"log": [{"x": 1}]}))
    dpo = folder.input_fingerprint(stages["dpo"], None)
    folder.write("build", Outputs({"sft": [{"a": 3}], "dpo": [{"p": 2}]}))
    assert folder.input_fingerprint(stages["dpo"], None) == dpo
    folder.write("build", Outputs({"sft": [{"a": 3}], "dpo": [{"p": 3}]}))
    assert folder.input_fingerprint(stages["dpo"], None) != dpo


@pytest.mark.parametrize("damage", ["last record cut at a line boundary", "a record edited", "footer gone", "empty"])
def test_a_damaged_resume_shard_is_refused_in_one_line(tmp_path, damage):
    from fusechat.runfolder import StageRun

    run = StageRun(folder=RunFolder(tmp_path / "run"), name="sample", recipe=None, settings={}, input_fingerprint="x")
    run.prepare_work_dir()
    records = [{"prompt_id": f"p{i}", "text": f"answer {i}"} for i in range(33)]
    run.write_shard("a-00000", records)
    run.write_shard("b-00000", [])
    assert run.read_shard("a-00000") == records and run.read_shard("b-00000") == []
    path = run.shard_path("a-00000")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text({"last record cut at a line boundary": "".join(lines[:-2] + lines[-1:]),
                     "a record edited": "".join(lines).replace("answer 7", "answer 8"),
                     "footer gone": "".join(lines[:-1]), "empty": ""}[damage])
    with pytest.raises(FusechatError, match=r"a-00000\.jsonl: a damaged resume shard .*delete it"):
        run.read_shard("a-00000")

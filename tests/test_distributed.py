"""Two CPU processes (gloo) through SFT and DPO under `accelerate launch`: started by fusechat from the
recipe (the shipped fsdp.yaml) and by hand (the README's ddp.yaml command)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fusechat.runfolder import Outputs, RunFolder

SFT = [{"messages": [{"role": "user", "content": f"Spell {i}."}, {"role": "assistant", "content": f"{i} is spelled {i}."}],
        "prompt_id": f"s{i}", "domain": "instruction", "source": "a", "reward": None} for i in range(8)]
DPO = [{"prompt": [{"role": "user", "content": f"Double {i}."}], "chosen": [{"role": "assistant", "content": f"{2 * i}"}],
        "rejected": [{"role": "assistant", "content": "No."}], "prompt_id": f"d{i}", "domain": "math", "source": "a",
        "chosen_reward": None, "rejected_reward": None} for i in range(8)]


def recipe_for(tmp_path, tiny_model_dir, launch: dict) -> Path:
    """A run whose build stage is written by hand; global batches of 4, so one process (2 x 2 accumulated)
    and two (2 each) take the same optimizer steps."""
    run = tmp_path / "run"
    train = {"epochs": 1, "batch_size": 2, "global_batch_size": 4, "learning_rate": 1e-3, "precision": "fp32",
             "warmup_ratio": 0.0}
    data = {"name": "dist", "run_dir": str(run),
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
            "sources": [{"name": "a", "model": str(tiny_model_dir)}], "target": {"model": str(tiny_model_dir)},
            "sft": train, "dpo": train | {"eval_fraction": 0.25, "save_steps": 1, "max_tokens_per_forward": 64},
            "launch": launch}
    tmp_path.mkdir(exist_ok=True)
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump(data))
    RunFolder(run).write("build", Outputs({"sft": SFT, "dpo": DPO}))
    return recipe_path


def fusechat(*args, env=None):
    result = subprocess.run([sys.executable, "-m", "fusechat", *map(str, args)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def weights(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def data_recipe(tmp_path, tiny_model_dir, launch: dict) -> Path:
    """A run that starts at build from SFT/DPO files (no sampling), so `fusechat run` goes straight to training."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "sft.jsonl").write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in SFT))
    (tmp_path / "dpo.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n"
                                                for r in DPO))
    train = {"epochs": 1, "batch_size": 2, "global_batch_size": 4, "learning_rate": 1e-3, "precision": "fp32",
             "warmup_ratio": 0.0}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "dist", "run_dir": str(tmp_path / "run"),
        "data": {"sft": str(tmp_path / "sft.jsonl"), "dpo": str(tmp_path / "dpo.jsonl")},
        "target": {"model": str(tiny_model_dir)},
        "sft": train, "dpo": train | {"eval_fraction": 0.25, "save_steps": 1, "max_tokens_per_forward": 64},
        "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 1, "max_new_tokens": 4, "dtype": "float32",
                 "models": ["sft+dpo"]},
        "launch": launch}))
    return path


def test_fusechat_run_launches_fsdp_itself_and_trains_the_weights_one_process_trains(tmp_path, tiny_model_dir):
    """The shipped fsdp.yaml, named in the recipe: `fusechat run` starts two processes for sft and for dpo by
    itself, and ends with the weights of the one-process run; each process computes half the reference."""
    from fusechat.pipeline import run_all, run_stage
    from fusechat.recipe import load_recipe

    single = load_recipe(data_recipe(tmp_path / "one", tiny_model_dir, {"accelerate_config": "none"}))
    run_all(single)

    sharded = data_recipe(tmp_path / "fsdp", tiny_model_dir, {"accelerate_config": "fsdp", "processes": 2})
    fusechat("run", sharded)
    run, base = tmp_path / "fsdp" / "run", weights(tiny_model_dir)
    for stage in ("sft", "dpo"):
        manifest = json.loads((run / stage / "manifest.json").read_text())
        assert manifest["counts"]["processes"] == 2 and manifest["counts"]["steps"] == 2  # 8 examples / 4 a step
        want, got = weights(single.run_path / stage / "model"), weights(run / stage / "model")
        assert want.keys() == got.keys() and all(not torch.equal(base[k], got[k]) for k in base)  # it trained
        for name in want:
            assert torch.allclose(want[name], got[name], atol=1e-4), (stage, name)
    counts = json.loads((run / "dpo" / "manifest.json").read_text())["counts"]
    assert counts["reference_pairs_per_process"] == [4, 4]  # 8 pairs: each process its half, none twice
    a, b = counts["forward_passes_per_process"]
    assert a == b > 0  # FSDP gathers weights in every forward: unequal counts would hang
    assert (run / "report" / "report.html").is_file()  # and the run went on to eval and the report

    # A current stage launches nothing: the rerun is skipped in this process.
    assert run_stage("dpo", load_recipe(sharded)).get("skipped")


def test_the_readme_command_ddp_yaml_under_accelerate_launch(tmp_path, tiny_model_dir):
    """`accelerate launch --config_file recipes/accelerate/ddp.yaml -m fusechat sft RECIPE` (then dpo), as the
    README gives it, on two CPU processes: the stages see they are launched and train in place."""
    from fusechat.recipe import builtin_recipe

    recipe = recipe_for(tmp_path, tiny_model_dir, {})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for stage in ("sft", "dpo"):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(builtin_recipe("accelerate/ddp")),
               "--num_processes", "2", "-m", "fusechat", stage, str(recipe)]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    base = weights(tiny_model_dir)
    for stage in ("sft", "dpo"):
        manifest = json.loads((tmp_path / "run" / stage / "manifest.json").read_text())
        assert manifest["counts"]["processes"] == 2
        trained = weights(tmp_path / "run" / stage / "model")
        assert all(not torch.equal(base[k], trained[k]) for k in base)



def test_sft_and_dpo_under_deepspeed_zero3(tmp_path, tiny_model_dir):
    """The shipped deepspeed-zero3.yaml with DeepSpeed's CPU accelerator (gloo), two processes started by
    fusechat: DPO has no dataloader for accelerate to read a micro-batch size from, so the loop gives it.
    Runs where deepspeed is installed (`pip install deepspeed`); CI does not install it."""
    pytest.importorskip("deepspeed")
    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe

    single = load_recipe(recipe_for(tmp_path / "one", tiny_model_dir, {"accelerate_config": "none"}))
    for stage in ("sft", "dpo"):
        run_stage(stage, single)
    zero3 = recipe_for(tmp_path / "zero3", tiny_model_dir, {"accelerate_config": "deepspeed-zero3", "processes": 2})
    # by `fusechat sft` and `fusechat dpo`: the stage commands start the launch as `fusechat run` does
    fusechat("sft", zero3)
    fusechat("dpo", zero3)
    for stage in ("sft", "dpo"):
        manifest = json.loads((tmp_path / "zero3" / "run" / stage / "manifest.json").read_text())
        assert manifest["counts"]["processes"] == 2
        want, got = weights(single.run_path / stage / "model"), weights(tmp_path / "zero3" / "run" / stage / "model")
        for name in want:
            assert torch.allclose(want[name], got[name].float(), atol=1e-4), (stage, name)

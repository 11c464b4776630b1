"""Two CPU processes (gloo) through a few SFT and DPO steps under `accelerate launch`."""

import json
import os
import subprocess
import sys

import torch
import yaml

from fusechat.runfolder import Outputs, RunFolder

SFT = [{"messages": [{"role": "user", "content": f"Spell {i}."}, {"role": "assistant", "content": f"{i} is spelled {i}."}],
        "prompt_id": f"s{i}", "domain": "instruction", "source": "a", "reward": None} for i in range(8)]
DPO = [{"prompt": [{"role": "user", "content": f"Double {i}."}], "chosen": [{"role": "assistant", "content": f"{2 * i}"}],
        "rejected": [{"role": "assistant", "content": "No."}], "prompt_id": f"d{i}", "domain": "math", "source": "a",
        "chosen_reward": None, "rejected_reward": None} for i in range(8)]


# --multi_gpu is the DDP launcher; with no GPU our stages ask accelerate for CPU processes on gloo.
DDP = ["--multi_gpu"]
# FSDP2 shards every decoder layer; the saved model must be the gathered full weights, not a shard.
FSDP = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
        "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_reshard_after_forward", "true"]


# Both stages in one launch (what `fusechat sft` and `fusechat dpo` each call): saves a launch's start-up.
BOTH = "from sys import argv; from fusechat.pipeline import run_stage; from fusechat.recipe import load_recipe; " \
       "[run_stage(s, load_recipe(argv[1])) for s in ('sft', 'dpo')]"


def launch(stage, recipe_path, mode=DDP):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    program = ["-m", "fusechat", stage, str(recipe_path)]
    if stage == "sft+dpo":
        script = recipe_path.with_name("both.py")
        script.write_text(BOTH.replace("; ", "\n"))
        program = [str(script), str(recipe_path)]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", *program]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def run_both_stages(tmp_path, tiny_model_dir, mode):
    run = tmp_path / "run"
    data = {"name": "ddp", "run_dir": str(run),
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
            "sources": [{"name": "a", "model": str(tiny_model_dir)}], "target": {"model": str(tiny_model_dir)},
            "sft": {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "precision": "fp32"},
            "dpo": {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "precision": "fp32",
                    "eval_fraction": 0.0, "save_steps": 1}}
    tmp_path.mkdir(exist_ok=True)
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump(data))
    RunFolder(run).write("build", Outputs({"sft": SFT, "dpo": DPO}))
    if mode is DDP:  # the commands the README gives
        launch("sft", recipe_path, mode)
        launch("dpo", recipe_path, mode)
    else:
        launch("sft+dpo", recipe_path, mode)
    return run


def test_sft_and_dpo_under_accelerate_launch_ddp_and_fsdp(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    run = run_both_stages(tmp_path / "ddp", tiny_model_dir, DDP)
    sft = json.loads((run / "sft" / "manifest.json").read_text())
    assert sft["counts"]["processes"] == 2 and sft["counts"]["steps"] == 2  # 8 examples / (2 per process x 2)
    dpo = json.loads((run / "dpo" / "manifest.json").read_text())
    assert dpo["counts"]["processes"] == 2 and dpo["counts"]["steps"] == 2
    log = [json.loads(line) for line in open(run / "dpo" / "log.jsonl")]
    assert all(e["loss"] == e["loss"] for e in log)  # finite, not NaN

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for stage_name in ("sft", "dpo"):
        trained = AutoModelForCausalLM.from_pretrained(run / stage_name / "model")
        assert all(not torch.equal(a, b) for a, b in zip(base.parameters(), trained.parameters()))

    # The same training sharded with FSDP2 must save the same full model (gathered, not one shard).
    sharded = run_both_stages(tmp_path / "fsdp", tiny_model_dir, FSDP)
    for stage_name in ("sft", "dpo"):
        want = AutoModelForCausalLM.from_pretrained(run / stage_name / "model").state_dict()
        got = AutoModelForCausalLM.from_pretrained(sharded / stage_name / "model").state_dict()
        assert want.keys() == got.keys()
        for name in want:
            assert torch.allclose(want[name], got[name], atol=1e-4), (stage_name, name)

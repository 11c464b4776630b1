"""SFT through TRL: assistant-only loss, every parameter moves, LoRA, resume, a loadable folder."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from fusechat.recipe import load_recipe
from fusechat.pipeline import run_stage
from fusechat.runfolder import Outputs, RunFolder
from fusechat import FusechatError
from fusechat.train.common import load_tokenizer
from fusechat.train.sft import tokenize_examples

ROWS = [{"messages": [{"role": "user", "content": f"Count to {i}."},
                      {"role": "assistant", "content": " ".join(str(k) for k in range(1, i + 2))}],
         "prompt_id": f"p{i}", "domain": "instruction", "source": "a", "reward": None} for i in range(8)]


def sft_recipe(tmp_path, model_dir, **sft):
    data = {"name": "t", "run_dir": str(tmp_path / "run"),
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
            "sources": [{"name": "s", "model": str(model_dir)}],
            "target": {"model": str(model_dir)},
            "sft": {"epochs": 1, "learning_rate": 1e-2, "batch_size": 2, "grad_accum": 1, "warmup_ratio": 0.0,
                    "precision": "fp32", "max_length": 128, **sft}}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    RunFolder(recipe.run_path).write("build", Outputs({"sft": ROWS, "dpo": []}))
    return recipe


def test_tokenize_masks_the_answer_and_cuts_its_end(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    example = tokenize_examples(ROWS[7:8], tokenizer, max_length=10_000)[0]
    mask, ids = example["completion_mask"], example["input_ids"]
    n_prompt = mask.index(1)
    assert set(mask[n_prompt:]) == {1}  # prompt first, then the answer to the end
    assert tokenizer.decode(ids[:n_prompt]).rstrip().endswith("assistant")
    assert tokenizer.decode(ids[n_prompt:]).startswith(ROWS[7]["messages"][1]["content"] + "<|im_end|>")
    cut = tokenize_examples(ROWS[7:8], tokenizer, max_length=n_prompt + 3)[0]
    assert cut["input_ids"] == ids[: n_prompt + 3] and sum(cut["completion_mask"]) == 3  # the prompt is kept whole
    with pytest.raises(FusechatError, match="p0"):
        tokenize_examples([{"messages": ROWS[0]["messages"][:1], "prompt_id": "p0"}], tokenizer, 100)


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}])
def test_sft_moves_every_trainable_parameter_and_saves_a_loadable_folder(tmp_path, tiny_model_dir, lora):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = sft_recipe(tmp_path, tiny_model_dir, lora=lora)
    manifest = run_stage("sft", recipe)
    assert manifest["counts"]["steps"] == 4 and math.isfinite(manifest["counts"]["train_loss"])
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    after = AutoModelForCausalLM.from_pretrained(manifest["model"])
    changed = {n for (n, a), b in zip(before.named_parameters(), after.parameters()) if not torch.equal(a, b)}
    if lora is None:
        assert changed == {n for n, _ in before.named_parameters()}
    else:  # LoRA is merged into the saved weights: the adapted projections moved, embeddings did not
        assert changed and all("proj" in n for n in changed)
    tokenizer = AutoTokenizer.from_pretrained(manifest["model"])
    assert tokenizer.chat_template and "im_start" in tokenizer.chat_template
    log = [json.loads(line) for line in open(recipe.run_path / "sft" / "log.jsonl")]
    assert len([e for e in log if "loss" in e]) == 4
    from huggingface_hub import ModelCard

    card = ModelCard.load(Path(manifest["model"]) / "README.md")
    assert card.data.base_model is None and "sft" in card.data.tags  # a local folder: no hub id to name
    assert "| learning rate | 0.01 |" in card.text


def test_sft_resumes_from_its_checkpoint(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import Trainer

    whole = run_stage("sft", sft_recipe(tmp_path / "whole", tiny_model_dir, save_steps=2))  # never interrupted
    recipe = sft_recipe(tmp_path, tiny_model_dir, save_steps=2)
    real_save = Trainer._save_checkpoint
    def save_then_die(self, *a, **k):
        real_save(self, *a, **k)
        if self.state.global_step == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_stage("sft", recipe)
    shards = recipe.run_path / "sft" / "shards"
    assert (shards / "checkpoint-2").exists()
    # A kill during the next save leaves a torn checkpoint (weights, no trainer_state.json: it is written last).
    torn = shards / "checkpoint-3"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 100)
    monkeypatch.setattr(Trainer, "_save_checkpoint", real_save)
    manifest = run_stage("sft", recipe)
    log = [json.loads(line) for line in open(recipe.run_path / "sft" / "log.jsonl")]
    assert manifest["counts"]["steps"] == 4
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]  # steps 1-2 from before the kill, 3-4 after
    # The loss of the whole run, as the uninterrupted run reports it, and the same weights.
    assert manifest["counts"]["train_loss"] == whole["counts"]["train_loss"]
    assert manifest["output_fingerprint"] == whole["output_fingerprint"]


def test_a_prompt_longer_than_max_length_is_cut_from_its_start(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    long = [{"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "Short answer."}],
             "prompt_id": "long"}]
    example = tokenize_examples(long, tokenizer, max_length=64)[0]
    assert len(example["input_ids"]) == 64 and sum(example["completion_mask"]) >= 1
    assert tokenizer.decode(example["input_ids"]).endswith("<|im_start|>assistant\nShort")  # the header survives


def test_warmup_is_given_in_steps_and_sft_and_dpo_share_the_schedule(tmp_path, tiny_model_dir):
    """`warmup_steps=0.1` means no warmup in transformers 4.x: the stage hands transformers whole steps."""
    from fusechat.recipe import DPOTrainConfig, SFTTrainConfig
    from fusechat.train.common import load_model
    from fusechat.train.dpo_loop import train_dpo
    from fusechat.train.sft import sft_trainer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = SFTTrainConfig(learning_rate=1e-3, warmup_ratio=0.25, scheduler="linear", precision="fp32")
    trainer = sft_trainer(load_model(str(tiny_model_dir), cfg), tokenizer, ROWS, cfg, tmp_path / "sft")
    assert trainer.args.warmup_steps == 0  # nothing fractional for transformers to read its own way
    trainer.create_optimizer_and_scheduler(num_training_steps=8)
    lrs = []
    for _ in range(8):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert lrs[:3] == pytest.approx([0.0, 5e-4, 1e-3]) and lrs[-1] == pytest.approx(1e-3 / 6)  # 2 warmup steps of 8

    dpo_cfg = DPOTrainConfig(learning_rate=1e-3, warmup_ratio=0.25, scheduler="linear", precision="fp32", batch_size=1,
                             grad_accum=1, epochs=1, eval_fraction=0.0, save_steps=100)
    rows = [{"prompt": r["messages"][:1], "chosen": r["messages"][1:], "rejected": [{"role": "assistant", "content": "no"}]}
            for r in ROWS]
    _, log, _ = train_dpo(load_model(str(tiny_model_dir), dpo_cfg), tokenizer, rows, dpo_cfg, tmp_path / "dpo")
    assert [e["lr"] for e in log] == pytest.approx(lrs)  # 8 pairs, one a step: the same 8-step schedule


def test_an_sft_rerun_with_the_same_weights_keeps_its_fingerprint(tmp_path, tiny_model_dir):
    recipe = sft_recipe(tmp_path, tiny_model_dir)
    first = run_stage("sft", recipe)
    again = run_stage("sft", recipe, force=True)
    assert not again.get("skipped")
    assert again["output_fingerprint"] == first["output_fingerprint"]  # the log's wall times are not results
    assert set(again["outputs"]) >= {"log.jsonl", "model/model.safetensors"}


def test_report_to_tensorboard_writes_the_loss_curve_beside_the_stage(tmp_path, tiny_model_dir):
    from test_dpo import scalars

    recipe = sft_recipe(tmp_path, tiny_model_dir, report_to=["tensorboard"])
    run_stage("sft", recipe)
    written = scalars(recipe.run_path / "sft" / "tracking")
    log = [json.loads(line) for line in open(recipe.run_path / "sft" / "log.jsonl")]
    assert [v for _, v in written["train/loss"]] == pytest.approx([e["loss"] for e in log if "loss" in e], abs=1e-4)


@pytest.mark.parametrize("torn", ["weights cut short", "optimizer cut short", "trainer state cut short", "weights gone"])
def test_a_torn_checkpoint_is_never_loaded(tmp_path, torn):
    """A kill mid-save (or mid-rotation) leaves a checkpoint with some files whole and some not: the newest
    whole one is used and the torn one deleted."""
    import torch
    from safetensors.torch import save_file

    from fusechat.train.sft import last_checkpoint

    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        save_file({"w": torch.zeros(64, 64)}, folder / "model.safetensors")
        torch.save({"state": torch.ones(256)}, folder / "optimizer.pt")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    newest = tmp_path / "checkpoint-4"
    target = {"weights cut short": "model.safetensors", "optimizer cut short": "optimizer.pt",
              "trainer state cut short": "trainer_state.json", "weights gone": "model.safetensors"}[torn]
    if torn == "weights gone":
        (newest / target).unlink()
    else:
        data = (newest / target).read_bytes()
        (newest / target).write_bytes(data[: len(data) // 2])
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert not newest.exists()

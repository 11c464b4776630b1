"""Stage 5, sft: supervised fine-tuning of the target on the build stage's SFT set (TRL SFTTrainer).

Loss on the assistant tokens only: each example becomes a conversational prompt/completion
pair, for which TRL masks the prompt. Input: `run/build/sft`. Output: `run/sft/model` (a
save_pretrained folder with tokenizer and chat template) and `run/sft/log` (the loss curve).
A killed run resumes from its last checkpoint (every `save_steps` optimizer steps).
"""

from __future__ import annotations

import torch

from fusechat import FusechatError
from fusechat.recipe import Recipe
from fusechat.runfolder import Stage, load_output
from fusechat.train.common import load_model, load_tokenizer, lora_config, save_model, target_path, use_bf16


def to_prompt_completion(rows: list[dict]) -> list[dict]:
    """`messages` -> TRL's conversational prompt/completion (so only the completion is learned)."""
    out = []
    for r in rows:
        messages = r["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise FusechatError(f"SFT example {r.get('prompt_id')}: the last message must be the assistant's")
        out.append({"prompt": messages[:-1], "completion": messages[-1:]})
    return out


def no_checkpointing(config_class) -> dict:
    """Activation checkpointing off, under the argument's name in the installed transformers (renamed in 5.x)."""
    from dataclasses import fields

    names = {f.name for f in fields(config_class)}
    return {"activation_checkpointing": False} if "activation_checkpointing" in names else {"gradient_checkpointing": False}


def last_checkpoint(folder) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.exists() else None


def run_sft(recipe: Recipe, force: bool = False, progress=None) -> dict:
    import datasets
    from trl import SFTConfig, SFTTrainer

    rows, fingerprint = load_output(recipe.run_path, "build", "sft")
    cfg = recipe.sft
    stage = Stage(recipe.run_path, "sft", {"target": recipe.target and recipe.target.model_dump(), "sft": cfg.model_dump()}, fingerprint)
    if stage.is_done() and not force:
        return stage.manifest() | {"skipped": True}
    if not rows:
        raise FusechatError(f"{recipe.run_path / 'build'}: the SFT set is empty; nothing to train on")
    from accelerate import PartialState

    processes = PartialState(cpu=not torch.cuda.is_available())  # one process, or several under `accelerate launch`
    if processes.is_main_process:
        stage.begin()
    processes.wait_for_everyone()
    path = target_path(recipe)
    tokenizer = load_tokenizer(path)
    bf16 = use_bf16(cfg)
    args = SFTConfig(
        output_dir=str(stage.shard_dir),  # checkpoints live with the stage's other resume points
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of total steps (transformers 5)
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        bf16=bf16,
        **no_checkpointing(SFTConfig),  # TRL turns it on by default; at these sizes it only costs time
        completion_only_loss=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to=[],
        seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=progress is None,
    )
    trainer = SFTTrainer(
        model=load_model(path, cfg),
        args=args,
        train_dataset=datasets.Dataset.from_list(to_prompt_completion(rows)),
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
    )
    result = trainer.train(resume_from_checkpoint=last_checkpoint(stage.shard_dir))
    manifest = {}
    state_dict = trainer.accelerator.get_state_dict(trainer.model)  # every process joins the gather (FSDP/ZeRO-3)
    if processes.is_main_process:
        folder = save_model(trainer.accelerator.unwrap_model(trainer.model), tokenizer, stage.dir / "model", state_dict)
        log = [entry for entry in trainer.state.log_history if "loss" in entry or "train_loss" in entry]
        counts = {"examples": len(rows), "steps": trainer.state.global_step, "train_loss": round(result.training_loss, 4),
                  "bf16": bf16, "lora": cfg.lora is not None, "processes": processes.num_processes}
        manifest = stage.finish({"log": log}, counts, model=str(folder),
                                samples_per_s=round(result.metrics.get("train_samples_per_second", 0.0), 3))
    processes.wait_for_everyone()
    return manifest

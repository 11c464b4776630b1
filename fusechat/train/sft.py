"""Stage 5, sft: supervised fine-tuning of the target on the build stage's SFT set (TRL SFTTrainer).

Loss on the assistant tokens only: each example is tokenized with its chat template and a mask
of the answer's tokens; each batch is packed into one row without padding (`padding_free`).
Input: `run/build/sft`. Output: `run/sft/model` (a save_pretrained folder with tokenizer and chat
template) and `run/sft/log` (the loss curve).
A killed run resumes from its last checkpoint (every `save_steps` optimizer steps).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from fusechat import FusechatError
from fusechat.hardware import has_gpu
from fusechat.recipe import SFTTrainConfig
from fusechat.cards import model_card
from fusechat.models import target_path
from fusechat.runfolder import Outputs, StageRun, write_atomic
from fusechat.sequences import chat_prompt_ids, completion_ids, fit_to_length
from fusechat.train.common import (LengthGroupedSampler, load_model, load_tokenizer, lora_config, make_scheduler,
                                   save_model, use_bf16)


def tokenize_examples(rows: list[dict], tokenizer, max_length: int) -> list[dict]:
    """`messages` -> token ids and a mask of the assistant's answer (the only tokens learned).

    Done here rather than by TRL so that the completion's end, not the prompt, is cut to `max_length`
    before batches are packed without padding (TRL does not truncate padding-free batches).
    """
    out = []
    for r in rows:
        messages = r["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise FusechatError(f"SFT example {r.get('prompt_id')}: the last message must be the assistant's")
        full_prompt = chat_prompt_ids(tokenizer, messages[:-1])
        prompt_ids, (answer,) = fit_to_length(full_prompt, [completion_ids(tokenizer, messages[:-1], messages[-1:], full_prompt)],
                                              max_length)
        out.append({"input_ids": prompt_ids + answer, "completion_mask": [0] * len(prompt_ids) + [1] * len(answer)})
    return out


def checkpointing(config_class, on: bool) -> dict:
    """Activation checkpointing on or off, under the argument's name in the installed transformers (renamed in 5.x)."""
    from dataclasses import fields

    names = {f.name for f in fields(config_class)}
    return {"activation_checkpointing": on} if "activation_checkpointing" in names else {"gradient_checkpointing": on}


def last_checkpoint(folder) -> str | None:
    """The newest whole checkpoint in `folder`; a torn one is deleted and the one before used.
    transformers writes `trainer_state.json` last, but not atomically, and a kill while it rotates old
    checkpoints leaves half-deleted ones: so every file is checked, not only that one (see `_whole`)."""
    complete = []
    for path in Path(folder).glob("checkpoint-*"):
        try:
            step = int(path.name.split("-")[1])
            _whole(path)
        except (ValueError, IndexError, OSError):
            shutil.rmtree(path, ignore_errors=True)
            continue
        complete.append((step, path))
    return str(max(complete)[1]) if complete else None


def _whole(path: Path) -> None:
    """Raise ValueError/OSError unless the checkpoint is whole: its trainer state parses, its weights exist
    and every safetensors file holds all the bytes its header names, and every torch.save file (a zip)
    still has its central directory, which a file cut short loses first."""
    import struct
    import zipfile

    json.loads((path / "trainer_state.json").read_text())
    weights = list(path.glob("*.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.exists():
        named = set(json.loads(index.read_text())["weight_map"].values())
        if not named <= {w.name for w in weights}:
            raise ValueError(f"{path}: weight files missing")
    if not weights and not list(path.glob("pytorch_model*.bin")) and not list(path.glob("adapter_model.*")):
        raise ValueError(f"{path}: no weights")
    for file in weights:
        try:
            with open(file, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (struct.error, KeyError, TypeError, IndexError, AttributeError):
            raise ValueError(f"{file}: no safetensors header") from None
        if file.stat().st_size < 8 + n + end:
            raise ValueError(f"{file}: cut short")
    for file in [*path.glob("*.pt"), *path.glob("*.pth"), *path.glob("*.bin")]:
        try:
            zipfile.ZipFile(file).close()
        except zipfile.BadZipFile:
            raise ValueError(f"{file}: cut short") from None


def train_sft(model, tokenizer, rows: list[dict], cfg: SFTTrainConfig, output_dir: Path, progress=None):
    """Train in place with TRL's SFTTrainer; checkpoints go to `output_dir`, and a rerun resumes from the last."""
    trainer = sft_trainer(model, tokenizer, rows, cfg, output_dir, progress)
    return trainer, trainer.train(resume_from_checkpoint=last_checkpoint(output_dir))


def sft_trainer(model, tokenizer, rows: list[dict], cfg: SFTTrainConfig, output_dir: Path, progress=None):
    """TRL's SFTTrainer as the stage configures it (padding-free batches, activation checkpointing only if asked)."""
    import datasets
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        # `accelerate launch` sets WORLD_SIZE; the trainer's accelerator does not exist yet
        gradient_accumulation_steps=cfg.accumulation(int(os.environ.get("WORLD_SIZE", "1")), "sft"),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,  # the schedule itself is make_scheduler's (Trainer.create_scheduler below)
        weight_decay=cfg.weight_decay,
        max_length=None,  # cut by tokenize_examples
        padding_free=cfg.padding_free is not False,  # one row per batch, no padding (BENCHMARKS.md)
        bf16=use_bf16(cfg),
        # TRL turns it on by default; it costs time (BENCHMARKS.md), so it is on only when asked for
        **checkpointing(SFTConfig, cfg.activation_checkpointing is True),
        completion_only_loss=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to=list(cfg.report_to),
        run_name=output_dir.parent.name + "-sft",  # wandb/trackio: the stage's run folder name
        seed=cfg.seed,
        use_cpu=not has_gpu(),
        disable_tqdm=True,  # the stage's own progress (below): a bar in a terminal, timestamped lines in a log
        torch_compile=cfg.torch_compile is True,
    )

    class NoFinalCheckpoint(TrainerCallback):
        # transformers always checkpoints the last step; the stage saves the model itself right after,
        # so that write (weights and optimizer, ~12 bytes per parameter) would only cost time.
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps and state.global_step % args.save_steps:
                control.should_save = False

    class StepProgress(TrainerCallback):
        """Optimizer steps on the stage's progress (fusechat's bar or log lines), like every other stage's."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.task = progress.add_task("sft", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            progress.update(self.task, completed=state.global_step)

    class Trainer(SFTTrainer):
        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:  # the same schedule as DPO's
                self.lr_scheduler = make_scheduler(optimizer or self.optimizer, cfg, num_training_steps)
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _get_train_sampler(self, *args, **kwargs):
            # Padded batches: group by length; transformers' own grouping does nothing on data this
            # small (its mega-batches need 4x50 batches). Under DDP each process takes whole batches.
            if self.padding_free or cfg.length_grouping is False:
                return super()._get_train_sampler(*args, **kwargs)
            lengths = [len(ids) for ids in self.train_dataset["input_ids"]]
            return LengthGroupedSampler(lengths, self.args.per_device_train_batch_size, self.args.seed)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(tokenize_examples(rows, tokenizer, cfg.max_length)),
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=[NoFinalCheckpoint()] + ([StepProgress()] if progress is not None else []),
    )
    # With tqdm off, transformers prints every step's metrics as a dict on stdout: 21 lines of noise in a
    # redirected log. The numbers stay in the trainer's log history (the stage's log.jsonl) and trackers.
    trainer.remove_callback(PrinterCallback)
    return trainer


def whole_run_loss(log_history: list[dict]) -> float:
    """Mean training loss over every step of the run. transformers' `training_loss` covers only the steps
    since a resume; the log (one entry per step, restored from the checkpoint) covers them all."""
    losses = {e["step"]: e["loss"] for e in log_history if "loss" in e and "step" in e}
    return round(sum(losses.values()) / len(losses), 4) if losses else float("nan")


@contextlib.contextmanager
def tracking_dir(folder: Path):
    """transformers' TensorBoard callback reads its folder from the environment (5.x), not its arguments."""
    before = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
        else:
            os.environ["TENSORBOARD_LOGGING_DIR"] = before


def sft(run: StageRun) -> Outputs:
    rows = run.read("build", "sft")
    cfg = run.recipe.sft
    if not rows:
        raise FusechatError(f"{run.folder.stage_dir('build')}: the SFT set is empty; nothing to train on")
    path = target_path(run.recipe)
    tokenizer = load_tokenizer(path)
    with tracking_dir(run.dir / "tracking"):
        trainer, result = train_sft(load_model(path, cfg), tokenizer, rows, cfg, run.work_dir,
                                    run.progress if run.watched else None)
    # every process joins the gather (FSDP/ZeRO-3); DeepSpeed answers only through its engine, the wrapped model
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not run.is_main:
        return Outputs()
    folder = save_model(trainer.accelerator.unwrap_model(trainer.model), tokenizer, run.work_dir / "model", state_dict)
    write_atomic(folder / "README.md", model_card(run.recipe, "sft", run.recipe.target.model))
    log = [entry for entry in trainer.state.log_history if "loss" in entry or "train_loss" in entry]
    counts = {"examples": len(rows), "steps": trainer.state.global_step, "train_loss": whole_run_loss(trainer.state.log_history),
              "bf16": trainer.args.bf16, "lora": cfg.lora is not None, "processes": trainer.accelerator.num_processes}
    # tokens trained on (no padding) a second, as DPO reports it: `fusechat plan` reads it
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * cfg.epochs
    return Outputs(counts=counts, logs={"log": log}, files={"model": folder},
                   extra={"model": str(run.dir / "model"),
                          "samples_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 3),
                          "tokens_per_s": round(tokens / max(result.metrics.get("train_runtime", 0.0), 1e-9), 1)})

"""What SFT and DPO share: the target model, precision, LoRA, the LR schedule, tokenizing a
conversation's prompt and completion, and saving a loadable folder."""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path

import torch

from fusechat import FusechatError
from fusechat.recipe import TrainConfig


def use_bf16(cfg: TrainConfig) -> bool:
    return cfg.bf16()


def make_scheduler(optimizer, cfg: TrainConfig, total_steps: int):
    """transformers' schedule named in the recipe, with warmup over `warmup_ratio` of the steps (rounded up).

    The warmup is given in steps, not as a ratio: `warmup_steps=0.1` is a ratio only in transformers >= 5
    (older versions read it as 0 steps), and SFT and DPO must warm up alike.
    """
    from transformers import get_scheduler

    return get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=math.ceil(total_steps * cfg.warmup_ratio),
                         num_training_steps=total_steps)


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise FusechatError(f"{path}: the tokenizer has no chat template; set one before training a chat target")
    return tokenizer


def load_model(path: str, cfg: TrainConfig):
    from transformers import AutoModelForCausalLM

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        # fp32 master weights; bf16 comes from autocast, which keeps the optimizer exact.
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except Exception as e:
        raise FusechatError(f"target '{path}' will not load ({str(e).splitlines()[0][:200]})") from None


def lora_config(cfg: TrainConfig):
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def save_model(model, tokenizer, folder: Path, state_dict: dict | None = None) -> Path:
    """Write a plain save_pretrained folder (LoRA merged) that transformers, TRL and vLLM load unchanged.

    `state_dict` is the full one gathered by `accelerator.get_state_dict` when the weights are sharded
    (FSDP, DeepSpeed ZeRO-3): the unwrapped module then holds only this process's shard.
    """
    if hasattr(model, "merge_and_unload"):
        model, state_dict = model.merge_and_unload(), None
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of examples of similar length, in random order: a batch pads to its longest member, so
    grouping cuts padding (about half of every token on the build stage's data) at no cost in exactness.

    Examples are shuffled, cut into mega-batches of 64 batches, sorted by length inside each, split into
    batches, and the batches are shuffled. Same lengths and seed, same batches.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = 64 * batch_size
    batches = []
    for start in range(0, len(order), mega):
        group = sorted(order[start : start + mega], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def shuffled_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    """The plain alternative to length grouping: shuffle the examples, cut them into batches."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


class LengthGroupedSampler(torch.utils.data.Sampler):
    """`length_grouped_batches` for a transformers Trainer, reshuffled each epoch (`set_epoch`, so resumable)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        batches = length_grouped_batches(self.lengths, self.batch_size, self.seed + self.epoch)
        return iter([i for batch in batches for i in batch])

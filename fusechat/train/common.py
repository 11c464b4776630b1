"""What SFT and DPO share: the target model, precision, LoRA, and saving a loadable folder."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import torch

from fusechat import FusechatError, models
from fusechat.recipe import Recipe, TrainConfig
from fusechat.sample.backend import cpu_has_bf16


def use_bf16(cfg: TrainConfig) -> bool:
    if cfg.precision == "bf16":
        return True
    if cfg.precision == "fp32":
        return False
    return torch.cuda.is_bf16_supported() if torch.cuda.is_available() else cpu_has_bf16()


def target_path(recipe: Recipe) -> str:
    if recipe.target is None:
        raise FusechatError("the recipe has no `target:` (the model to train), e.g. target: {model: smollm2-135m-instruct}")
    return models.resolve(recipe.target.model).hf_path()


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


def chat_prompt_ids(tokenizer, prompt: list[dict]) -> list[int]:
    return tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)


def completion_ids(tokenizer, prompt: list[dict], completion: list[dict], prompt_ids: list[int]) -> list[int]:
    """The tokens the completion adds to the rendered prompt (the assistant turn and its end markers)."""
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False)
    if full[: len(prompt_ids)] != prompt_ids:
        raise FusechatError("the chat template renders the prompt differently inside the conversation; cannot split it")
    return full[len(prompt_ids) :]


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

"""Stage 6, dpo: preference optimisation of the SFT model on same-source pairs (DPO or LN-DPO).

The SFT model is both the policy's start and the frozen reference. Reference log-probabilities
are computed once, before training, with the policy itself: no second model stays in memory.

    DPO:    L = -log σ(β·[(log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l))])
    LN-DPO: L = -log σ(β·[(log π(y_w) - log π_ref(y_w))/|y_w| - (log π(y_l) - log π_ref(y_l))/|y_l|])

(TRL's `sigmoid` and `sigmoid_norm`.) Both the summed and the length-normalised margins are
logged. A held-out slice of the pairs measures preference accuracy (by the loss's own score) at
every checkpoint; the better of the last two checkpoints is kept (method.md §5).

Speed and memory (BENCHMARKS.md): batches grouped by length, each split into forward passes of at
most `max_tokens_per_forward` tokens (the loss is a mean over pairs, so the gradients are the same),
logits only for completion positions, bf16 autocast over fp32 weights.

Input: `run/build/dpo`, `run/sft/model`. Output: `run/dpo/model`, `run/dpo/log`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fusechat import FusechatError
from fusechat.recipe import DPOTrainConfig, Recipe
from fusechat.runfolder import Stage, load_output
from fusechat.train.common import (chat_prompt_ids, completion_ids, length_grouped_batches, load_model, load_tokenizer,
                                   lora_config, save_model, use_bf16)


@dataclass
class Pair:
    prompt_ids: list[int]
    chosen_ids: list[int]  # completion tokens only
    rejected_ids: list[int]
    ref_chosen: float = 0.0  # summed reference log-probs, filled once before training
    ref_rejected: float = 0.0


def tokenize_pairs(rows: list[dict], tokenizer, max_length: int) -> list[Pair]:
    pairs = []
    for r in rows:
        prompt_ids = chat_prompt_ids(tokenizer, r["prompt"])
        room = max(1, max_length - len(prompt_ids))  # keep the prompt, cut the completions' ends
        pairs.append(Pair(prompt_ids,
                          completion_ids(tokenizer, r["prompt"], r["chosen"], prompt_ids)[:room],
                          completion_ids(tokenizer, r["prompt"], r["rejected"], prompt_ids)[:room]))
    return pairs


def collate(pairs: list[Pair], pad_id: int) -> dict:
    """[chosen..., rejected...] right-padded; `mask` marks the completion tokens being scored."""
    seqs = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    starts = [len(p.prompt_ids) for p in pairs] * 2
    width = max(map(len, seqs))
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        attention[i, : len(seq)] = 1
        mask[i, start : len(seq)] = True
    ref = torch.tensor([p.ref_chosen for p in pairs] + [p.ref_rejected for p in pairs], dtype=torch.float32)
    return {"input_ids": input_ids, "attention_mask": attention, "mask": mask, "ref": ref}


def sequence_logps(model, batch: dict, bf16: bool, completion_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each sequence's completion tokens, and their count.

    Logits are computed only from the batch's first completion position on (`logits_to_keep`): the
    prompts' [rows, length, vocabulary] logits are pure waste. `completion_only=False` computes them
    all (the plain path, kept for the equivalence test and the benchmark).
    """
    device = next(model.parameters()).device
    input_ids, attention = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    mask = batch["mask"].to(device)
    first = int(mask.float().argmax(dim=1).min()) if completion_only else 1  # earliest completion token
    keep = input_ids.shape[1] - first + 1  # logits at positions first-1 .. end predict tokens first .. end
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=input_ids, attention_mask=attention, logits_to_keep=keep).logits[:, :-1]
    targets, mask = input_ids[:, first:], mask[:, first:]
    logits = logits.float()
    token_logps = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def pair_length(p) -> int:
    return len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids))


def micro_batches(pairs: list, max_tokens: int) -> list[list]:
    """Consecutive runs of pairs whose padded [chosen..., rejected...] batch holds at most `max_tokens`
    tokens (always at least one pair). The DPO loss is a mean over pairs, so a batch's gradient is the
    sum of its micro-batches' gradients: memory is bounded and the result is the same."""
    out, current, width = [], [], 0
    for p in pairs:
        if current and 2 * (len(current) + 1) * max(width, pair_length(p)) > max_tokens:
            out.append(current)
            current, width = [], 0
        current.append(p)
        width = max(width, pair_length(p))
    return out + [current] if current else out


def dpo_loss(logps: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, beta: float, loss: str) -> dict:
    """The loss and its diagnostics for a [chosen..., rejected...] batch."""
    ratios = logps - ref
    normalised = ratios / lengths.clamp(min=1)
    n = len(logps) // 2
    summed_margin = ratios[:n] - ratios[n:]
    norm_margin = normalised[:n] - normalised[n:]
    margin = summed_margin if loss == "dpo" else norm_margin
    return {
        "loss": -F.logsigmoid(beta * margin).mean(),
        "margin": margin.detach(),
        "margin_summed": summed_margin.detach(),
        "margin_normalised": norm_margin.detach(),
        "accuracy": (margin > 0).float().detach(),
    }


@torch.no_grad()
def fill_reference(model, pairs: list[Pair], max_tokens: int, pad_id: int, bf16: bool) -> None:
    model.eval()
    for chunk in micro_batches(sorted(pairs, key=pair_length), max_tokens):
        logps, _ = sequence_logps(model, collate(chunk, pad_id), bf16)
        for p, c, r in zip(chunk, logps[: len(chunk)].tolist(), logps[len(chunk) :].tolist()):
            p.ref_chosen, p.ref_rejected = c, r
    model.train()


@torch.no_grad()
def preference_accuracy(model, pairs: list[Pair], cfg: DPOTrainConfig, pad_id: int, bf16: bool) -> float:
    if not pairs:
        return float("nan")
    model.eval()
    hits = 0.0
    for chunk in micro_batches(sorted(pairs, key=pair_length), forward_tokens(cfg)):
        batch = collate(chunk, pad_id)
        logps, lengths = sequence_logps(model, batch, bf16)
        hits += dpo_loss(logps, batch["ref"].to(logps.device), lengths, cfg.beta, cfg.loss)["accuracy"].sum().item()
    model.train()
    return hits / len(pairs)


@contextlib.contextmanager
def accumulating(accelerator, model, last: bool):
    """Backward of a micro-batch that is not the step's last: no all-reduce (DDP, FSDP) and no
    DeepSpeed step (accelerate's DeepSpeed backward steps whenever gradients are in sync)."""
    if last:
        yield
        return
    accelerator.gradient_state._set_sync_gradients(False)  # what `accelerator.accumulate` does
    try:
        with accelerator.no_sync(model):
            yield
    finally:
        accelerator.gradient_state._set_sync_gradients(True)


def forward_tokens(cfg: DPOTrainConfig) -> int:
    """Tokens per forward pass: the recipe's `max_tokens_per_forward`, else a size that keeps a CPU's
    memory low (measured in BENCHMARKS.md) or fills a GPU."""
    return cfg.max_tokens_per_forward or (8192 if torch.cuda.is_available() else 1024)


def lr_at(step: int, total: int, cfg: DPOTrainConfig) -> float:
    warmup = max(1, math.ceil(total * cfg.warmup_ratio))
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    if cfg.scheduler == "constant_with_warmup":
        return cfg.learning_rate
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.learning_rate * (0.5 * (1 + math.cos(math.pi * progress)) if cfg.scheduler == "cosine" else 1 - progress)


def train_dpo(model, tokenizer, rows: list[dict], cfg: DPOTrainConfig, workdir: Path, progress=None,
              save_to: Path | None = None) -> tuple[object, list[dict], dict]:
    """Train in place under `accelerate` (one process, or DDP/FSDP/DeepSpeed under `accelerate launch`).

    Checkpoints are `accelerator.save_state` folders in `workdir` plus `state.json` (step, log, the
    reference log-probs); a rerun with the same `workdir` resumes from the last one. With `save_to`,
    the main process writes the final model there from the full (gathered) weights.
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(cfg.seed)
    bf16 = use_bf16(cfg)
    pad_id = tokenizer.pad_token_id
    pairs = tokenize_pairs(rows, tokenizer, cfg.max_length)
    order = list(range(len(pairs)))
    random.Random(cfg.seed).shuffle(order)
    n_eval = round(len(pairs) * cfg.eval_fraction) if len(pairs) > 1 else 0
    held_out = [pairs[i] for i in order[:n_eval]]
    train = [pairs[i] for i in order[n_eval:]]

    if cfg.activation_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})  # non-reentrant: correct with frozen inputs (LoRA) and under FSDP
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]

    # One fixed stream of global batches (grouped by length, reshuffled per epoch): a resumed run sees
    # the same batches, and each process takes its own slice of every batch.
    global_batch = cfg.batch_size * world
    lengths = [pair_length(p) for p in train]
    stream = []
    for epoch in range(math.ceil(cfg.epochs)):  # similar lengths: far less padding (BENCHMARKS.md)
        stream += length_grouped_batches(lengths, global_batch, cfg.seed + epoch)
    stream = stream[: max(1, round(len(stream) * cfg.epochs / math.ceil(cfg.epochs)))]
    total = math.ceil(len(stream) / cfg.grad_accum)

    state_file = workdir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else None
    step, log, checkpoints = 0, [], []
    if state:  # resume: the reference log-probs were saved with the first checkpoint
        for p, (c, r) in zip(pairs, state["reference"]):
            p.ref_chosen, p.ref_rejected = c, r
        accelerator.load_state(str(workdir / state["checkpoints"][-1]["folder"]))
        step, log, checkpoints = state["step"], state["log"], state["checkpoints"]
    else:
        fill_reference(model, pairs, forward_tokens(cfg), pad_id, bf16)

    task = progress.add_task("dpo", total=total, completed=step) if progress and accelerator.is_main_process else None
    started, tokens = time.time(), 0
    while step < total:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total, cfg)
        stats = torch.zeros(4)  # loss, summed margin, normalised margin, accuracy
        accumulated = stream[step * cfg.grad_accum : (step + 1) * cfg.grad_accum]
        forwards = []  # (pairs, weight of their mean loss in the step's loss)
        for indices in accumulated:
            mine = [train[i] for i in indices[rank * cfg.batch_size : (rank + 1) * cfg.batch_size] or indices[:1]]
            forwards += [(chunk, len(chunk) / len(mine) / len(accumulated))
                         for chunk in micro_batches(mine, forward_tokens(cfg))]
        for k, (chunk, weight) in enumerate(forwards):
            batch = collate(chunk, pad_id)
            with accumulating(accelerator, model, last=k == len(forwards) - 1):
                logps, lengths = sequence_logps(model, batch, bf16)
                out = dpo_loss(logps, batch["ref"].to(logps.device), lengths, cfg.beta, cfg.loss)
                accelerator.backward(out["loss"] * weight)
            tokens += int(batch["attention_mask"].sum())
            stats += weight * torch.tensor([out["loss"].item(), out["margin_summed"].mean().item(),
                                            out["margin_normalised"].mean().item(), out["accuracy"].mean().item()])
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        stats = accelerator.reduce(stats.to(accelerator.device), reduction="mean").tolist()
        log.append({"step": step, "lr": optimizer.param_groups[0]["lr"],
                    **{k: round(v, 5) for k, v in zip(("loss", "margin_summed", "margin_normalised", "accuracy"), stats)}})
        if task is not None:
            progress.update(task, advance=1)
        if step % cfg.save_steps == 0 or step == total:
            accuracy = preference_accuracy(model, held_out, cfg, pad_id, bf16)
            log[-1]["eval_accuracy"] = accuracy
            checkpoints = keep_checkpoint(accelerator, step, accuracy, checkpoints, workdir)
            if accelerator.is_main_process:
                state_file.write_text(json.dumps({"step": step, "log": log, "checkpoints": checkpoints,
                                                  "reference": [(p.ref_chosen, p.ref_rejected) for p in pairs]}))
            accelerator.wait_for_everyone()
    # The better of the last two checkpoints by held-out preference accuracy (ties: the later).
    best = max(checkpoints[-2:], key=lambda c: (c["accuracy"] if not math.isnan(c["accuracy"]) else -1, c["step"]))
    if best["step"] != step:
        accelerator.load_state(str(workdir / best["folder"]))
    seconds = time.time() - started
    summary = {"steps": step, "pairs": len(train), "held_out": len(held_out), "kept_step": best["step"],
               "held_out_accuracy": best["accuracy"], "bf16": bf16, "processes": world,
               "tokens_per_s": round(tokens * world / max(seconds, 1e-9), 1)}
    unwrapped = accelerator.unwrap_model(model)
    if save_to is not None:
        state_dict = accelerator.get_state_dict(model)  # every process joins the gather (FSDP/ZeRO-3)
        if accelerator.is_main_process:
            save_model(unwrapped, tokenizer, save_to, state_dict)
        accelerator.wait_for_everyone()
    return unwrapped, log, summary


def keep_checkpoint(accelerator, step: int, accuracy: float, checkpoints: list[dict], workdir: Path) -> list[dict]:
    """Save this step's state; keep only the last two checkpoints (the candidates for the final model)."""
    import shutil

    folder = f"step-{step}"
    accelerator.save_state(str(workdir / folder))
    checkpoints = checkpoints + [{"step": step, "accuracy": accuracy, "folder": folder}]
    if accelerator.is_main_process:
        for old in checkpoints[:-2]:
            shutil.rmtree(workdir / old["folder"], ignore_errors=True)
    return checkpoints[-2:]


def run_dpo(recipe: Recipe, force: bool = False, progress=None) -> dict:
    rows, fingerprint = load_output(recipe.run_path, "build", "dpo")
    sft_manifest = Stage(recipe.run_path, "sft", {}, "").manifest()
    if sft_manifest is None:
        raise FusechatError(f"{recipe.run_path / 'sft'}: run `fusechat sft` first (DPO starts from the SFT model)")
    cfg = recipe.dpo
    stage = Stage(recipe.run_path, "dpo", {"dpo": cfg.model_dump()}, f"{fingerprint}:{sft_manifest['output_fingerprint']}")
    if stage.is_done() and not force:
        return stage.manifest() | {"skipped": True}
    if not rows:
        raise FusechatError(f"{recipe.run_path / 'build'}: the DPO set is empty; nothing to train on")
    from accelerate import PartialState

    processes = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU under `accelerate launch`
    if processes.is_main_process:
        stage.begin()
    processes.wait_for_everyone()
    path = sft_manifest["model"]
    tokenizer = load_tokenizer(path)
    model = load_model(path, cfg)
    lora = lora_config(cfg)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    folder = stage.dir / "model"
    model, log, summary = train_dpo(model, tokenizer, rows, cfg, stage.shard_dir, progress, save_to=folder)
    manifest = {}
    if processes.is_main_process:
        manifest = stage.finish({"log": log}, summary | {"loss": cfg.loss, "beta": cfg.beta}, model=str(folder))
    processes.wait_for_everyone()
    return manifest

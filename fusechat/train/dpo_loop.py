"""The DPO training loop (fusechat's own; the maths are in `dpo_loss`, the stage glue in `dpo`).

The SFT model is both the policy's start and the frozen reference. Reference log-probabilities
are computed once, before training, with the policy itself: no second model stays in memory. Under
`accelerate launch` each process computes its share and all gather the lot, every process runs as many
forward passes as the others (FSDP and ZeRO-3 gather weights in each), and an optimizer step holds the
same pairs for one process or eight (tests/test_distributed.py compares the weights).
A held-out slice of the pairs measures preference accuracy (by the loss's own score) at every
checkpoint; the better of the last two checkpoints is kept (method.md §5). Each step logs its
metrics by name (`dpo_loss.METRICS`): the loss, the summed and length-normalised margins, accuracy.

Speed and memory (BENCHMARKS.md), each a recipe option: batches grouped by length
(`length_grouping`), each split into forward passes of at most `max_tokens_per_forward` tokens (the
loss is a mean over pairs, so the gradients are the same), logits only for completion positions
(`completion_only_logits`), bf16 autocast over fp32 weights (`precision`). The LR schedule is
transformers' (`common.make_scheduler`), the same as SFT's.

Why not TRL's DPOTrainer: it keeps a second model (or recomputes the reference every step) and pads
every batch to its longest pair; this loop does neither and ran an epoch in a third of the time in
under 0.6x the memory (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
import warnings
from pathlib import Path

import torch

from fusechat.hardware import has_gpu
from fusechat.recipe import DPOTrainConfig
from fusechat.runfolder import NullProgress, write_atomic
from fusechat.train.common import length_grouped_batches, make_scheduler, save_model, shuffled_batches, use_bf16
from fusechat.sequences import Pair, collate, sequence_logps, tokenize_pairs
from fusechat.train.dpo_loss import METRICS, dpo_loss, micro_batches, pair_length, step_share


def shared_passes(pairs: list[Pair], max_tokens: int, rank: int, world: int) -> list[tuple[list[int], bool]]:
    """This process's share of a pass over `pairs` (no gradients): micro-batches of pair indices, every
    `world`-th pair by length, padded with repeats (marked False, results unused) to the count of the
    process with the most. FSDP and ZeRO-3 gather the weights in every forward, so a process that ran
    fewer forwards than the others would leave them waiting for ever."""
    order = sorted(range(len(pairs)), key=lambda i: pair_length(pairs[i]))
    plans = []
    for r in range(world):
        share = order[r::world]
        plans.append(micro_batches(share, max_tokens, key=lambda i: pair_length(pairs[i])) if share else [])
    most = max(len(p) for p in plans)
    mine = [(chunk, True) for chunk in plans[rank]]
    filler = plans[rank][0] if plans[rank] else order[:1]
    return mine + [(filler, False)] * (most - len(mine))


@torch.no_grad()
def fill_reference(accelerator, model, pairs: list[Pair], max_tokens: int, pad_id: int, bf16: bool) -> int:
    """The reference log-probs of every pair, each process computing its share and all of them gathering
    the lot. Returns how many pairs this process computed."""
    from accelerate.utils import gather_object

    model.eval()
    found = []
    for chunk, real in shared_passes(pairs, max_tokens, accelerator.process_index, accelerator.num_processes):
        logps, _ = sequence_logps(model, collate([pairs[i] for i in chunk], pad_id), bf16)  # all logits or not: the same numbers
        count_forward()
        if real:
            found += zip(chunk, logps[: len(chunk)].tolist(), logps[len(chunk) :].tolist())
    for i, c, r in gather_object(found) if accelerator.num_processes > 1 else found:
        pairs[i].ref_chosen, pairs[i].ref_rejected = c, r
    model.train()
    return len(found)


@torch.no_grad()
def preference_accuracy(accelerator, model, pairs: list[Pair], cfg: DPOTrainConfig, pad_id: int, bf16: bool) -> float:
    """Held-out preference accuracy by the loss's own score, each process scoring its share."""
    if not pairs:
        return float("nan")
    model.eval()
    hits = 0.0
    for chunk, real in shared_passes(pairs, forward_tokens(cfg), accelerator.process_index, accelerator.num_processes):
        batch = collate([pairs[i] for i in chunk], pad_id)
        logps, lengths = sequence_logps(model, batch, bf16, cfg.completion_only_logits is not False)
        count_forward()
        if real:
            hits += dpo_loss(logps, batch["ref"].to(logps.device), lengths, cfg.beta, cfg.loss)["accuracy"].sum().item()
    model.train()
    return accelerator.reduce(torch.tensor(hits, device=accelerator.device), reduction="sum").item() / len(pairs)


FORWARDS = [0]  # forward passes this process ran (counted so a test can check every process ran as many)


def count_forward() -> None:
    FORWARDS[0] += 1


@contextlib.contextmanager
def accumulating(accelerator, model, last: bool):
    """Backward of a micro-batch that is not the step's last: no all-reduce (DDP, FSDP) and no
    DeepSpeed step (accelerate's DeepSpeed backward steps whenever gradients are in sync)."""
    if last:
        yield
        return
    accelerator.sync_gradients = False  # what `accelerator.accumulate` does (a public setter)
    try:
        with accelerator.no_sync(model):
            yield
    finally:
        accelerator.sync_gradients = True


def forward_tokens(cfg: DPOTrainConfig) -> int:
    """Tokens per forward pass: the recipe's `max_tokens_per_forward`, else a size that keeps a CPU's
    memory low (measured in BENCHMARKS.md) or fills a GPU."""
    return cfg.max_tokens_per_forward or (8192 if has_gpu() else 1024)


def batch_stream(train: list[Pair], cfg: DPOTrainConfig, step_batch: int) -> list[list[int]]:
    """One fixed stream of optimizer steps' batches (reshuffled per epoch): a resumed run sees the same
    batches, and one process or eight see the same pairs in each step (each its slice). Grouped by
    length unless the recipe says not."""
    lengths = [pair_length(p) for p in train]
    stream = []
    for epoch in range(math.ceil(cfg.epochs)):  # similar lengths: far less padding (BENCHMARKS.md)
        if cfg.length_grouping is False:
            stream += shuffled_batches(len(train), step_batch, cfg.seed + epoch)
        else:
            stream += length_grouped_batches(lengths, step_batch, cfg.seed + epoch)
    return stream[: max(1, round(len(stream) * cfg.epochs / math.ceil(cfg.epochs)))]


def step_forwards(train: list[Pair], step: list[int], cfg: DPOTrainConfig, grad_accum: int, rank: int,
                  world: int) -> list[tuple[list[Pair], float]]:
    """This process's forward passes of one optimizer step: (pairs, weight of their mean loss in the step's
    loss). The step's pairs are cut into `grad_accum` slices of batch_size x world, each process takes its
    part of every slice and splits it by the token budget; the list is padded with weight-0 passes to the
    count of the process with the most, so that every process runs as many forwards and backwards (FSDP
    and ZeRO-3 gather and reduce in each)."""
    width = cfg.batch_size * world
    slices = [step[i : i + width] for i in range(0, len(step), width)][:grad_accum]
    plans = []
    for r in range(world):
        forwards = []
        for indices in slices:
            mine, share = step_share(indices, r, world, cfg.batch_size)
            forwards += [(chunk, share * len(chunk) / len(mine) / len(slices))
                         for chunk in micro_batches([train[i] for i in mine], forward_tokens(cfg))]
        plans.append(forwards)
    most = max(len(p) for p in plans)
    return plans[rank] + [(plans[rank][0][0], 0.0)] * (most - len(plans[rank]))


def train_dpo(model, tokenizer, rows: list[dict], cfg: DPOTrainConfig, workdir: Path, progress=None,
              save_to: Path | None = None, tracking: Path | None = None) -> tuple[object, list[dict], dict]:
    """Train in place under `accelerate` (one process, or DDP/FSDP/DeepSpeed under `accelerate launch`).

    Checkpoints are `accelerator.save_state` folders in `workdir` plus `state.json` (step, log, the
    reference log-probs); a rerun with the same `workdir` resumes from the last one. With `save_to`,
    the main process writes the final model there from the full (gathered) weights. `cfg.report_to`'s
    trackers (accelerate's, under the names transformers uses) get every step's log; TensorBoard's files
    go to `tracking`.
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not has_gpu(), log_with=list(cfg.report_to) or None,
                              project_dir=str(tracking) if tracking else None)
    if cfg.report_to:
        accelerator.init_trackers(f"{workdir.parent.name}-dpo", config={
            "loss": cfg.loss, "beta": cfg.beta, "learning_rate": cfg.learning_rate, "epochs": cfg.epochs})
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
    grad_accum = cfg.accumulation(world, "dpo")
    stream = batch_stream(train, cfg, cfg.batch_size * world * grad_accum)
    total = len(stream)
    scheduler = make_scheduler(optimizer, cfg, total)  # stepped by hand: accelerate's wrapper would step it per process
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:  # no dataloader for accelerate to read them from (older versions raise at prepare):
        # the loop's micro-batch, and its own accumulation (accelerate marks each step's last backward)
        plugin.deepspeed_config.update(train_micro_batch_size_per_gpu=cfg.batch_size, gradient_accumulation_steps=1,
                                       train_batch_size=cfg.batch_size * world)
    model, optimizer = accelerator.prepare(model, optimizer)
    params = [p for p in model.parameters() if p.requires_grad]
    completion_only = cfg.completion_only_logits is not False

    state_file = workdir / "state.json"
    state = read_state(state_file, workdir)
    step, log, checkpoints, referenced = 0, [], [], 0
    if state:  # resume: the reference log-probs were saved with the first checkpoint
        for p, (c, r) in zip(pairs, state["reference"]):
            p.ref_chosen, p.ref_rejected = c, r
        accelerator.load_state(str(workdir / state["checkpoints"][-1]["folder"]))
        step, log, checkpoints = state["step"], state["log"], state["checkpoints"]
        with warnings.catch_warnings():  # "scheduler stepped before the optimizer": it is catching up
            warnings.simplefilter("ignore")
            scheduler.last_epoch = step - 1
            scheduler.step()
    elif cfg.loss != "simpo":  # SimPO has no reference model: no reference pass
        referenced = fill_reference(accelerator, model, pairs, forward_tokens(cfg), pad_id, bf16)

    progress = progress if progress is not None and accelerator.is_main_process else NullProgress()
    task = progress.add_task("dpo", total=total, completed=step)
    started, tokens = time.time(), 0
    while step < total:
        stats = dict.fromkeys(METRICS, 0.0)
        forwards = step_forwards(train, stream[step], cfg, grad_accum, rank, world)
        for k, (chunk, weight) in enumerate(forwards):
            batch = collate(chunk, pad_id)
            with accumulating(accelerator, model, last=k == len(forwards) - 1):
                logps, lengths = sequence_logps(model, batch, bf16, completion_only)
                out = dpo_loss(logps, batch["ref"].to(logps.device), lengths, cfg.beta, cfg.loss,
                               cfg.sft_weight or 0.0, cfg.label_smoothing or 0.0,
                               0.5 if cfg.simpo_gamma is None else cfg.simpo_gamma)
                accelerator.backward(out["loss"] * weight)
            count_forward()
            tokens += int(batch["attention_mask"].sum()) if weight else 0
            for name in METRICS:
                stats[name] += weight * out[name].float().mean().item()
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        step += 1
        reduced = accelerator.reduce(torch.tensor([stats[n] for n in METRICS], device=accelerator.device), reduction="mean")
        log.append({"step": step, "lr": lr, **{n: round(v, 5) for n, v in zip(METRICS, reduced.tolist())}})
        accelerator.log({k: v for k, v in log[-1].items() if k != "step"}, step=step)
        progress.update(task, advance=1)
        if step % cfg.save_steps == 0 or step == total:
            accuracy = preference_accuracy(accelerator, model, held_out, cfg, pad_id, bf16)
            log[-1]["eval_accuracy"] = accuracy
            accelerator.log({"eval_accuracy": accuracy}, step=step)
            checkpoints = keep_checkpoint(accelerator, step, accuracy, checkpoints, workdir)
            if accelerator.is_main_process:
                write_atomic(state_file, json.dumps({"step": step, "log": log, "checkpoints": checkpoints,
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
    if world > 1:  # what each process did: its share of the reference pass, and as many forwards as the others
        from accelerate.utils import gather_object

        summary["reference_pairs_per_process"] = gather_object([referenced])
        summary["forward_passes_per_process"] = gather_object([FORWARDS[0]])
    for tracker in accelerator.trackers:  # not end_training(): it also tears down the process group
        tracker.finish()
    unwrapped = accelerator.unwrap_model(model)
    if save_to is not None:
        state_dict = accelerator.get_state_dict(model)  # every process joins the gather (FSDP/ZeRO-3)
        if accelerator.is_main_process:
            save_model(unwrapped, tokenizer, save_to, state_dict)
        accelerator.wait_for_everyone()
    return unwrapped, log, summary


def read_state(state_file: Path, workdir: Path) -> dict | None:
    """The resume point, if its checkpoint is whole. state.json is written atomically, after the
    checkpoint it names; one damaged from outside (or naming a missing folder) means starting over."""
    try:
        state = json.loads(state_file.read_text())
        if (workdir / state["checkpoints"][-1]["folder"]).is_dir():
            return state
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        pass
    return None


def keep_checkpoint(accelerator, step: int, accuracy: float, checkpoints: list[dict], workdir: Path) -> list[dict]:
    """Save this step's state; keep only the last two checkpoints (the candidates for the final model)."""
    folder = f"step-{step}"
    accelerator.save_state(str(workdir / folder))
    checkpoints = checkpoints + [{"step": step, "accuracy": accuracy, "folder": folder}]
    if accelerator.is_main_process:
        for old in checkpoints[:-2]:
            shutil.rmtree(workdir / old["folder"], ignore_errors=True)
    return checkpoints[-2:]

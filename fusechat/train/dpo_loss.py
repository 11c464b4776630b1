"""The DPO maths as pure functions: tokenized pairs, their collation, sequence log-probabilities,
micro-batches, each process's share of a step, and the loss (tested against hand computation).

    DPO:    L = -log σ(β·[(log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l))])
    LN-DPO: L = -log σ(β·[(log π(y_w) - log π_ref(y_w))/|y_w| - (log π(y_l) - log π_ref(y_l))/|y_l|])

(TRL's `sigmoid` and `sigmoid_norm` losses.) A batch is [chosen..., rejected...]: the first half
of every tensor belongs to the chosen responses, the second half to the rejected ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fusechat.train.common import chat_prompt_ids, completion_ids, fit_to_length

# What a training step logs, by name: ours, then TRL's DPOTrainer names with TRL's values. TRL (1.x) logs
# `rewards/*` as beta x the *summed* log-ratio for every loss type, LN-DPO (`sigmoid_norm`) included, so a
# run is comparable with a TRL run by name; the length-normalised rewards LN-DPO trains on are ours,
# under `normalised_rewards/*` (and `accuracy` is on the margin the loss uses).
METRICS = ("loss", "margin_summed", "margin_normalised", "accuracy", "rewards/chosen", "rewards/rejected",
           "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected",
           "normalised_rewards/chosen", "normalised_rewards/rejected", "normalised_rewards/margins")


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
        full_prompt = chat_prompt_ids(tokenizer, r["prompt"])
        prompt_ids, (chosen, rejected) = fit_to_length(
            full_prompt, [completion_ids(tokenizer, r["prompt"], r[side], full_prompt) for side in ("chosen", "rejected")],
            max_length)
        pairs.append(Pair(prompt_ids, chosen, rejected))
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


def micro_batches(pairs: list, max_tokens: int, key=pair_length) -> list[list]:
    """Consecutive runs of pairs whose padded [chosen..., rejected...] batch holds at most `max_tokens`
    tokens (always at least one pair). The DPO loss is a mean over pairs, so a batch's gradient is the
    sum of its micro-batches' gradients: memory is bounded and the result is the same. `key` gives an
    item's length when the items are not Pairs (their indices)."""
    out, current, width = [], [], 0
    for p in pairs:
        if current and 2 * (len(current) + 1) * max(width, key(p)) > max_tokens:
            out.append(current)
            current, width = [], 0
        current.append(p)
        width = max(width, key(p))
    return out + [current] if current else out


def dpo_loss(logps: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, beta: float, loss: str) -> dict:
    """The loss and its diagnostics for a [chosen..., rejected...] batch."""
    ratios = logps - ref
    normalised = ratios / lengths.clamp(min=1)
    n = len(logps) // 2
    summed_margin = ratios[:n] - ratios[n:]
    norm_margin = normalised[:n] - normalised[n:]
    margin = summed_margin if loss == "dpo" else norm_margin
    rewards = beta * ratios.detach()  # TRL's, whatever the loss
    normalised_rewards = beta * normalised.detach()
    return {
        "loss": -F.logsigmoid(beta * margin).mean(),
        "margin": margin.detach(),
        "margin_summed": summed_margin.detach(),
        "margin_normalised": norm_margin.detach(),
        "accuracy": (margin > 0).float().detach(),
        "rewards/chosen": rewards[:n],
        "rewards/rejected": rewards[n:],
        "rewards/margins": rewards[:n] - rewards[n:],
        "rewards/accuracies": (rewards[:n] > rewards[n:]).float(),
        "logps/chosen": logps[:n].detach(),
        "logps/rejected": logps[n:].detach(),
        "normalised_rewards/chosen": normalised_rewards[:n],
        "normalised_rewards/rejected": normalised_rewards[n:],
        "normalised_rewards/margins": normalised_rewards[:n] - normalised_rewards[n:],
    }


def step_share(batch: list[int], rank: int, world: int, per_process: int) -> tuple[list[int], float]:
    """This process's slice of one global batch, and the factor that makes its mean loss count as its
    pairs' share of the batch (DDP averages gradients over processes, hence the `world`).

    A process whose slice of a short last batch is empty gets the batch's first pair at weight 0: it
    must still run a backward pass to join the gradient all-reduce, but it adds nothing to the step.
    """
    mine = batch[rank * per_process : (rank + 1) * per_process]
    if not mine:
        return batch[:1], 0.0
    return mine, len(mine) * world / len(batch)

"""The DPO maths as pure functions: micro-batches, each process's share of a step, and the loss (tested
against hand computation). Tokenized pairs, their collation and sequence log-probabilities are in
fusechat.sequences.

    DPO:    L = -log σ(β·m),  m = (log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l))
    LN-DPO: L = -log σ(β·m̄),  m̄ = (log π(y_w) - log π_ref(y_w))/|y_w| - (log π(y_l) - log π_ref(y_l))/|y_l|
    IPO:    L = (m̄ - 1/(2β))²
    SimPO:  L = -log σ(β·[log π(y_w)/|y_w| - log π(y_l)/|y_l|] - γ)      (no reference model)

(TRL's `sigmoid`, `sigmoid_norm` and `ipo` losses, TRL CPO's `simpo`.) Label smoothing ε (cDPO) mixes in
the flipped pair for the sigmoid losses: L = -(1-ε)·log σ(z) - ε·log σ(-z). The SFT term (RPO,
arXiv 2404.19733) adds w · (-log π(y_w)/|y_w|), each chosen answer's NLL per token, averaged over pairs
like the rest of the loss (TRL's `sft` averages over the batch's tokens instead: the same when answers
are equally long; a mean over pairs splits over micro-batches and processes exactly). A batch is
[chosen..., rejected...]: the first half of every tensor belongs to the chosen responses, the second
half to the rejected ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# What a training step logs, by name: ours, then TRL's DPOTrainer names with TRL's values. TRL (1.x) logs
# `rewards/*` as beta x the *summed* log-ratio for every loss type, LN-DPO (`sigmoid_norm`) included, so a
# run is comparable with a TRL run by name; the length-normalised rewards LN-DPO trains on are ours,
# under `normalised_rewards/*` (and `accuracy` is on the margin the loss uses).
METRICS = ("loss", "nll_loss", "margin_summed", "margin_normalised", "accuracy", "rewards/chosen", "rewards/rejected",
           "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected",
           "normalised_rewards/chosen", "normalised_rewards/rejected", "normalised_rewards/margins")


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


def dpo_loss(logps: torch.Tensor, ref: torch.Tensor, lengths: torch.Tensor, beta: float, loss: str,
             sft_weight: float = 0.0, label_smoothing: float = 0.0, simpo_gamma: float = 0.5) -> dict:
    """The loss and its diagnostics for a [chosen..., rejected...] batch (`ref` is ignored by simpo)."""
    if loss == "simpo":
        ref = torch.zeros_like(ref)
    ratios = logps - ref
    normalised = ratios / lengths.clamp(min=1)
    n = len(logps) // 2
    summed_margin = ratios[:n] - ratios[n:]
    norm_margin = normalised[:n] - normalised[n:]
    margin = summed_margin if loss == "dpo" else norm_margin
    rewards = beta * ratios.detach()  # TRL's, whatever the loss
    normalised_rewards = beta * normalised.detach()
    if loss == "ipo":
        per_pair = (margin - 1 / (2 * beta)) ** 2
    else:
        z = beta * margin - (simpo_gamma if loss == "simpo" else 0.0)
        per_pair = -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    nll = -logps[:n] / lengths[:n].clamp(min=1)  # the chosen answer's NLL per token
    total = per_pair.mean() + sft_weight * nll.mean() if sft_weight else per_pair.mean()
    return {
        "loss": total,
        "nll_loss": nll.detach(),
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

"""Chat sequences as a causal LM reads them: a conversation's prompt and completion tokens (through the
model's own chat template), pairs of completions batched [chosen..., rejected...], and each completion's
summed log-probability. DPO trains on these (fusechat.train) and the build reads the sources' log-probs
of its pairs with them (fusechat.source_logps), so both see the same tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fusechat import FusechatError


def chat_prompt_ids(tokenizer, prompt: list[dict]) -> list[int]:
    return tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)


def fit_to_length(prompt_ids: list[int], completions: list[list[int]], max_length: int) -> tuple[list[int], list[list[int]]]:
    """Cut a prompt and its completions so that prompt + each completion holds at most `max_length` tokens.

    The completions' ends go first; a prompt that leaves no room for one completion token loses its
    beginning (the end of the user's turn and the assistant header are what the answer follows).
    """
    if len(prompt_ids) >= max_length:
        prompt_ids = prompt_ids[len(prompt_ids) - (max_length - 1):]
    room = max_length - len(prompt_ids)
    return prompt_ids, [c[:room] for c in completions]


def completion_ids(tokenizer, prompt: list[dict], completion: list[dict], prompt_ids: list[int]) -> list[int]:
    """The tokens the completion adds to the rendered prompt (the assistant turn and its end markers)."""
    full = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=False)
    if full[: len(prompt_ids)] == prompt_ids:
        return full[len(prompt_ids) :]
    # The answer's first characters merged with the end of the prompt into one token (BPE across the
    # boundary): split the rendered text instead, and tokenize the answer's part on its own.
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise FusechatError("the chat template renders the prompt differently inside the conversation; cannot split it")
    return tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]


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

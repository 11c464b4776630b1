"""transformers backend: batched decoding that drops each answer from the batch as it ends, bf16 where the
CPU or GPU has bf16 units.

Our own decoding loop rather than `generate`: a static batch in `generate` computes every row until the
longest ends, and its top-p sorts the whole vocabulary every step (0.2 s for 128 rows of a 49k vocabulary
on 2 cores); here a step costs only the rows still writing and the nucleus comes from a top-k. Measured on
the study's writing tasks: 245 tokens/s for SmolLM2-135M against `generate`'s 121 (BENCHMARKS.md)."""

from __future__ import annotations

import torch

from fusechat import FusechatError
from fusechat.recipe import Sampling
from fusechat.hardware import cpu_has_bf16, device, release_memory
from fusechat.backends.base import Backend, Generation, Request, over_context, read_template, render_chat


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "bfloat16" or (dtype == "auto" and (device == "cuda" or cpu_has_bf16())):
        return torch.bfloat16
    return torch.float32


def pick_tokens(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The next token of each row: argmax at temperature 0, else a draw from the top-p nucleus.

    The nucleus is found among the 1,024 most likely tokens (`topk`: a full sort of a 49k vocabulary
    for 128 rows costs 0.2 s a step on 2 cores, more than the model); a row whose nucleus is wider
    than that is sorted in full, so the draw is exact either way."""
    if sampling.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p >= 1.0:
        return torch.multinomial(probs, 1)[:, 0]
    top, order = probs.topk(min(1024, probs.shape[-1]), dim=-1)
    wide = top.sum(-1) < sampling.top_p
    if wide.any():
        top, order = probs.sort(dim=-1, descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
    top = top.masked_fill(top.cumsum(-1) - top >= sampling.top_p, 0.0)
    return order.gather(-1, torch.multinomial(top, 1))[:, 0]


class TransformersBackend(Backend):
    prune_finished = True  # rows leave the batch when they stop (`_decode`); False: plain `generate`

    def __init__(self, path: str, chat_template: str | None = None, dtype: str = "auto",
                 batch_size: int = 32, threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = path
        self.on_batch = None  # called with each finished batch's size (the eval stage's progress)
        template = read_template(chat_template)  # bad Jinja stops here, before the model loads
        if threads:
            torch.set_num_threads(threads)
        self.device = device()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, self.device))
        except Exception as e:
            raise FusechatError(f"model '{path}' will not load in transformers ({str(e).splitlines()[0][:200]})") from None
        self.model.to(self.device).eval()
        if template:
            self.tokenizer.chat_template = template
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.stop_ids.add(self.tokenizer.eos_token_id)
        self.batch_size = batch_size

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        texts = [render_chat(self.tokenizer, r.messages, self.path) for r in requests]
        results: list[Generation | None] = [None] * len(texts)
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context:  # a prompt the model cannot take is an error sample, the others go on
            lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
            for i, n in enumerate(lengths):
                if n >= context:
                    results[i] = over_context(n, context, requests[i].seed)
        # Sorting by length keeps padding small; results go back in request order.
        order = sorted((i for i in range(len(texts)) if results[i] is None), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            seed = requests[chunk[0]].seed
            for i, g in zip(chunk, self._generate_batch([texts[i] for i in chunk], sampling, seed)):
                results[i] = g
            if self.on_batch is not None:
                self.on_batch(len(chunk))
        return results

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], sampling: Sampling, seed: int) -> list[Generation]:
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(seed)
        greedy = sampling.temperature == 0
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
        if self.prune_finished:
            return self._generations(self._decode(enc, sampling), prompt_lengths, seed)
        out = self.model.generate(
            **enc,
            do_sample=not greedy,
            temperature=None if greedy else sampling.temperature,
            top_p=None if greedy else sampling.top_p,
            top_k=None,
            repetition_penalty=sampling.repetition_penalty,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        return self._generations(out[:, enc["input_ids"].shape[1] :].tolist(), prompt_lengths, seed)

    def _decode(self, enc, sampling: Sampling) -> list[list[int]]:
        """Batched decoding that drops a row from the batch once it has stopped.

        `generate` keeps computing every row until the longest one ends: in a batch of 128 math answers
        one that rambles to the cap makes the other 127 pay for all its steps. Here finished rows leave
        the batch and the KV cache (`DynamicCache.batch_select_indices`), so a step costs what the rows
        still writing cost. Greedy, it gives `generate(do_sample=False)`'s tokens up to floating-point
        ties (tests/test_hf_greedy.py); sampled, the same distribution (temperature, top-p, and HF's
        repetition penalty over the prompt and the answer so far)."""
        from transformers import DynamicCache

        mask = enc["attention_mask"]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        # logits_to_keep=1: the prompt's other logits would be batch x length x vocab (GBs for Qwen's 151k).
        logits = self.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions,
                            cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        alive = list(range(mask.shape[0]))  # batch row -> request row
        rows: list[list[int]] = [[] for _ in alive]
        last = positions[:, -1]
        penalty = sampling.repetition_penalty
        # Token ids each row has seen (its prompt; padding repeats a real token, harmless to the penalty).
        seen = torch.where(mask.bool(), enc["input_ids"], enc["input_ids"][:, -1:])
        max_new_tokens = sampling.max_new_tokens
        for step in range(max_new_tokens):
            if penalty != 1.0:
                scores = logits.gather(-1, seen)
                logits = logits.scatter(-1, seen, torch.where(scores < 0, scores * penalty, scores / penalty))
            tokens = pick_tokens(logits, sampling)
            keep = []
            for i, (row, token) in enumerate(zip(alive, tokens.tolist())):
                rows[row].append(token)
                if token not in self.stop_ids:
                    keep.append(i)
            if not keep or step == max_new_tokens - 1:
                break
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=mask.device)
                cache.batch_select_indices(index)
                alive, tokens, mask, last = [alive[i] for i in keep], tokens[index], mask[index], last[index]
                seen = seen[index]
            seen = torch.cat([seen, tokens[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
            last = last + 1
            logits = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=last[:, None],
                                cache=cache, use_cache=True).logits[:, -1]
        return rows

    def _generations(self, new_tokens: list[list[int]], prompt_lengths: list[int], seed: int) -> list[Generation]:
        generations = []
        for row, prompt_tokens in zip(new_tokens, prompt_lengths):
            stop = next((i for i, t in enumerate(row) if t in self.stop_ids), None)
            kept = row if stop is None else row[:stop]
            generations.append(Generation(
                text=self.tokenizer.decode(kept, skip_special_tokens=True),
                prompt_tokens=int(prompt_tokens),
                completion_tokens=len(kept),
                finish_reason="length" if stop is None else "stop",
                seed=seed,
            ))
        return generations

    @torch.inference_mode()
    def first_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]:
        text = render_chat(self.tokenizer, messages, self.path)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        logprobs = torch.log_softmax(self.model(**enc).logits[0, -1].float(), dim=-1)  # one sequence: no padding
        values, ids = logprobs.topk(top)
        return {self.tokenizer.decode([i]): v for i, v in zip(ids.tolist(), values.tolist())}

    def close(self) -> None:
        del self.model
        release_memory()

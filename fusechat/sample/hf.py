"""transformers backend: batched `generate`, bf16 where the CPU or GPU has bf16 units."""

from __future__ import annotations

import torch

from fusechat import FusechatError
from fusechat.recipe import Sampling
from fusechat.hardware import cpu_has_bf16, device
from fusechat.sample.backend import Backend, Generation, Request, read_template, render_chat


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "bfloat16" or (dtype == "auto" and (device == "cuda" or cpu_has_bf16())):
        return torch.bfloat16
    return torch.float32


class TransformersBackend(Backend):
    def __init__(self, path: str, chat_template: str | None = None, dtype: str = "auto",
                 batch_size: int = 32, threads: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = path
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
        # Sorting by length keeps padding small; results go back in request order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Generation | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            seed = requests[chunk[0]].seed
            for i, g in zip(chunk, self._generate_batch([texts[i] for i in chunk], sampling, seed)):
                results[i] = g
        return results

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str], sampling: Sampling, seed: int) -> list[Generation]:
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(seed)
        greedy = sampling.temperature == 0
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
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        prompt_lengths = enc["attention_mask"].sum(dim=1).tolist()
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

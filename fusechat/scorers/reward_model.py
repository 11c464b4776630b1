"""Reward model: any Hugging Face sequence classifier scores a [user, assistant] conversation.

ArmoRM-style models (remote code) return an output with a `score` field; plain classifiers
return logits with one label. Batches always pad on the right, so a response gets the same
score alone or in any batch.
"""

from __future__ import annotations

import torch

from fusechat import FusechatError


class RewardModel:
    def __init__(self, path: str, trust_remote_code: bool = False, batch_size: int = 8, max_length: int = 2048):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, trust_remote_code=trust_remote_code, dtype=torch.float32
            )
        except Exception as e:
            raise FusechatError(f"reward model '{path}' will not load ({str(e).splitlines()[0][:200]})") from None
        self.tokenizer.padding_side = "right"  # one fixed side: scores must not depend on the batch
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        self.batch_size, self.max_length = batch_size, max_length

    def _texts(self, pairs: list[tuple[str, str]]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
            )
            for p, r in pairs
        ]

    @torch.inference_mode()
    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        texts = self._texts(pairs)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths: less padding
        scores = [0.0] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            enc = self.tokenizer(
                [texts[i] for i in chunk], return_tensors="pt", padding=True, truncation=True,
                max_length=self.max_length, add_special_tokens=False,
            ).to(self.device)
            out = self.model(**enc)
            values = out.score if getattr(out, "score", None) is not None else out.logits[:, -1]
            for i, v in zip(chunk, values.float().reshape(len(chunk), -1)[:, 0].tolist()):
                scores[i] = v
        return scores

    def close(self) -> None:
        del self.model

"""LLM judge reward: P(Yes) that a local model gives to "is this response good?".

The CPU default for instruction prompts (no reward model ships offline). Scores lie in [0, 1]:
P(Yes) / (P(Yes) + P(No)) over the first answer token's log-probabilities.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

JUDGE_TEMPLATE = (
    "You are grading an assistant's reply to a user.\n\n"
    "[User]\n{prompt}\n\n[Assistant]\n{response}\n\n"
    "Is the assistant's reply correct, helpful and complete? Answer with one word: Yes or No."
)
MAX_CHARS = 6000  # keep judge prompts inside the context


def judge_messages(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": JUDGE_TEMPLATE.format(prompt=prompt[:MAX_CHARS], response=response[:MAX_CHARS])}]


def p_yes(token_logprobs: dict[str, float]) -> float:
    """P(Yes) among the yes/no readings of the first token (any case, any leading space)."""
    yes = sum(math.exp(lp) for tok, lp in token_logprobs.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in token_logprobs.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else 0.5


class LlamaCppJudge:
    def __init__(self, backend):
        self.backend = backend  # a sample.llamacpp.LlamaCppBackend

    def _one(self, pair: tuple[str, str]) -> float:
        body = {"messages": judge_messages(*pair), "max_tokens": 1, "temperature": 0.0,
                "logprobs": True, "top_logprobs": 20}
        result = self.backend.complete(body)
        content = result["choices"][0]["logprobs"]["content"]
        return p_yes({t["token"]: t["logprob"] for t in content[0]["top_logprobs"]}) if content else 0.5

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        with ThreadPoolExecutor(self.backend.slots) as pool:
            return list(pool.map(self._one, pairs))

    def close(self) -> None:
        self.backend.close()


class TransformersJudge:
    def __init__(self, backend):
        self.backend = backend  # a sample.hf.TransformersBackend
        tok = backend.tokenizer
        vocab = tok.get_vocab()
        self.token_ids = {t: i for t, i in vocab.items() if tok.convert_tokens_to_string([t]).strip().lower() in ("yes", "no")}

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        tok, model = self.backend.tokenizer, self.backend.model
        scores = []
        for pair in pairs:
            text = tok.apply_chat_template(judge_messages(*pair), tokenize=False, add_generation_prompt=True)
            enc = tok(text, return_tensors="pt", add_special_tokens=False).to(self.backend.device)
            with torch.inference_mode():
                logprobs = torch.log_softmax(model(**enc).logits[0, -1].float(), dim=-1)
            scores.append(p_yes({tok.convert_tokens_to_string([t]): logprobs[i].item() for t, i in self.token_ids.items()}))
        return scores

    def close(self) -> None:
        self.backend.close()

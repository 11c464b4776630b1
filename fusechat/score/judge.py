"""LLM judge reward: P(Yes) that a local model gives to "is this response good?".

The CPU default for instruction prompts (no reward model ships offline). Scores lie in [0, 1]:
P(Yes) / (P(Yes) + P(No)) over the first answer token's log-probabilities. The same
first-token read-out serves the pairwise MT-Bench judge in evaluation.
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


def first_token_logprobs(backend, messages: list[dict], top: int = 20) -> dict[str, float]:
    """The `top` most likely first tokens of the reply and their log-probabilities."""
    if hasattr(backend, "complete"):  # llama.cpp
        result = backend.complete({"messages": messages, "max_tokens": 1, "temperature": 0.0,
                                   "logprobs": True, "top_logprobs": top})
        content = result["choices"][0]["logprobs"]["content"]
        return {t["token"]: t["logprob"] for t in content[0]["top_logprobs"]} if content else {}
    import torch  # transformers

    tok = backend.tokenizer
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False).to(backend.device)
    with torch.inference_mode():
        logprobs = torch.log_softmax(backend.model(**enc).logits[0, -1].float(), dim=-1)
    values, ids = logprobs.topk(top)
    return {tok.decode([i]): v for i, v in zip(ids.tolist(), values.tolist())}


class Judge:
    """Scores (prompt, response) pairs with P(Yes); llama.cpp requests run in parallel slots."""

    def __init__(self, backend):
        self.backend = backend  # a LlamaCppBackend or TransformersBackend

    def probability(self, messages: list[dict], read) -> float:
        return read(first_token_logprobs(self.backend, messages))

    def map(self, fn, items: list) -> list:
        workers = getattr(self.backend, "slots", 1)
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        return self.map(lambda pair: self.probability(judge_messages(*pair), p_yes), pairs)

    def close(self) -> None:
        self.backend.close()

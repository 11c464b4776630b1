"""LLM judge reward: P(Yes) that a local model gives to "is this response good?".

The CPU default for instruction prompts (no reward model ships offline). Scores lie in [0, 1]:
P(Yes) / (P(Yes) + P(No)) over the first answer token's log-probabilities, read through the
backend interface (`Backend.first_token_logprobs`). The judge sends one conversation at a time to
a one-slot backend: a grade must not depend on what else is judged or on how often it is asked
(batched prompts shift the numbers a little, enough to move a pair across the gap window's edge).
The same grades serve the MT-Bench comparison in evaluation.
"""

from __future__ import annotations

import math

from fusechat.recipe import Sampling, Source
from fusechat.backends.base import Backend
from fusechat.backends.factory import open_backend

JUDGE_TEMPLATE = (
    "You are grading an assistant's reply to a user.\n\n"
    "[User]\n{prompt}\n\n[Assistant]\n{response}\n\n"
    "Is the assistant's reply correct, helpful and complete? Answer with one word: Yes or No."
)
MAX_CHARS = 6000  # keep judge prompts inside the context
DIGITS = 6  # grades are stored rounded: the last bits of a float are not a judgement


def judge_messages(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": JUDGE_TEMPLATE.format(prompt=prompt[:MAX_CHARS], response=response[:MAX_CHARS])}]


def p_yes(token_logprobs: dict[str, float]) -> float:
    """P(Yes) among the yes/no readings of the first token (any case, any leading space)."""
    yes = sum(math.exp(lp) for tok, lp in token_logprobs.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in token_logprobs.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else 0.5


class Judge:
    """Grades (prompt, response) pairs with P(Yes), one at a time."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def grade(self, prompt: str, response: str) -> float:
        return round(p_yes(self.backend.first_token_logprobs(judge_messages(prompt, response))), DIGITS)

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [self.grade(prompt, response) for prompt, response in pairs]

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_judge(model: str, backend: str) -> Judge:
    source = Source(name="judge", model=model, backend=backend, batch_size=1,
                    sampling=Sampling(temperature=0, max_new_tokens=1))
    return Judge(open_backend(source, ctx_per_slot=4096))

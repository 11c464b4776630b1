"""A reward model served over HTTP: vLLM's pooling API, so a cluster scores on the servers it already runs.

`vllm serve MODEL --runner pooling` serves any `*ForSequenceClassification` reward model (Skywork-Reward,
InternLM2-Reward and the like; ArmoRM's custom head is not one, it loads in-process: scorers/armorm.py).
Each conversation is one `POST /pooling` with the chat messages: the server renders the model's own chat
template, cuts over-long conversations from the left (`truncate_prompt_tokens`, like the in-process
scorer) and returns the head's raw output (`use_activation: false`: no sigmoid, the build's gap window
reads reward differences). Requests, retries and replicas are the `openai` backend's (one client, one
set of rules). A conversation the server refuses for good gets a NaN reward, which the build skips and
counts (`nan_reward`): no response stops the stage.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from fusechat import FusechatError
from fusechat.backends.openai_api import OpenAIBackend


def reward_from(result: dict) -> float:
    """The first label's raw score from a pooling answer; NaN for a refusal."""
    if "error" in result:
        return math.nan
    try:
        value = result["data"][0]["data"]
        while isinstance(value, list):  # one label: [x]; token-level shapes nest one more
            value = value[0]
        return float(value)
    except (KeyError, IndexError, TypeError, ValueError):
        raise FusechatError(f"the reward server's answer has no score ({str(result)[:200]})") from None


class RewardServer:
    """Scores [user, assistant] conversations on a served reward model (same interface as RewardModel)."""

    def __init__(self, endpoint: str | list[str], model: str, concurrency: int = 8, max_length: int = 2048,
                 api_key_env: str | None = None):
        urls = [endpoint] if isinstance(endpoint, str) else endpoint
        # the pooling route is at the server's root, beside /v1: a URL ending in /v1 means the same server
        roots = [u.rstrip("/").removesuffix("/v1") for u in urls]
        self.client = OpenAIBackend(roots, model, concurrency, api_key_env)
        self.model, self.max_length, self.concurrency = model, max_length, concurrency

    def _one(self, pair: tuple[str, str]) -> float:
        prompt, response = pair
        return reward_from(self.client.complete({
            "model": self.model, "use_activation": False, "truncate_prompt_tokens": self.max_length,
            "truncation_side": "left",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]}, "/pooling"))

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, pairs))

    def close(self) -> None:
        pass

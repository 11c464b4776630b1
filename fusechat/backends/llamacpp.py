"""llama.cpp backend through xllamacpp: quantised GGUF models, several sequences at once.

xllamacpp runs llama.cpp's server in-process; we call its chat-completions handler directly
from a thread pool, one thread per parallel slot, so the server batches the sequences.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fusechat import FusechatError
from fusechat.recipe import Sampling
from fusechat.hardware import usable_cores
from fusechat.backends.base import (Backend, Generation, Request, from_chat_completion, read_template,
                                     top_logprobs_from_chat_completion)


class LlamaCppBackend(Backend):
    def __init__(self, gguf: Path, chat_template: str | None = None, slots: int = 8,
                 threads: int | None = None, ctx_per_slot: int = 4096):
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_parallel = slots
        params.n_ctx = slots * ctx_per_slot
        params.cpuparams.n_threads = threads or usable_cores()
        params.cpuparams_batch.n_threads = threads or usable_cores()
        params.use_jinja = True
        params.warmup = False
        params.verbosity = -1
        # xllamacpp also serves HTTP on a loopback port. We call its handlers directly, so nobody needs
        # the port: a random key (never shown) shuts other local users out, and the slots view is off.
        params.api_keys = [secrets.token_urlsafe(32)]
        params.endpoint_slots = False
        template = read_template(chat_template)
        if template:
            params.chat_template = template
        try:
            self.server = xllamacpp.Server(params)
        except Exception as e:
            raise FusechatError(f"{gguf}: llama.cpp could not load this model ({str(e)[:200]})") from None
        self.slots = slots

    def complete(self, body: dict) -> dict:
        """One raw chat-completions call."""
        return self.server.handle_chat_completions(body)

    def first_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]:
        # Called one conversation at a time, without the prompt cache: a prompt decoded beside other
        # slots' prompts, or after a cached prefix, gets slightly different numbers (a judge rescore
        # once moved 3 of 8 rewards by up to 0.04).
        return top_logprobs_from_chat_completion(self.complete({
            "messages": messages, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": top,
            "cache_prompt": False}))

    def _one(self, request: Request, sampling: Sampling) -> Generation:
        body = {
            "messages": request.messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "repeat_penalty": sampling.repetition_penalty,
            "seed": request.seed,
            "cache_prompt": True,  # a prompt's N samples share its prefix in the KV cache
        }
        try:
            result = self.complete(body)
        except Exception as e:  # the server reports bad requests (e.g. prompt longer than the context) by raising
            return Generation("", 0, 0, "error", request.seed, error=str(e)[:300])
        return from_chat_completion(result, request.seed)

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        with ThreadPoolExecutor(self.slots) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def close(self) -> None:
        del self.server

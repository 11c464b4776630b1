"""OpenAI-compatible HTTP backend: any chat-completions server (vLLM, SGLang, TGI, llama.cpp server)
or a hosted API.

Requests run `concurrency` at a time. A 429, a 5xx, a timeout or a dropped connection is retried
with exponential backoff (the server's Retry-After wins); a request the server refuses for good
(another 4xx, e.g. a prompt too long) is kept as an `error` sample. When retries run out the stage
stops with the reason: finished shards are kept and a rerun continues, so no sample is lost or
drawn twice. Only the standard library is used (no client package to install).

`endpoint` may list several replicas of one model (`vllm serve` on N nodes): requests go round the
replicas; one that fails (refused, dropped, timed out, 5xx) is set aside for REVIVE_S seconds and its
request goes at once to another, so a replica that dies mid-stage costs no sample and no time beyond
its lost requests. Backoff waits only when every replica is failing.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from fusechat import FusechatError
from fusechat.recipe import Sampling
from fusechat.backends.base import Backend, Generation, Request, from_chat_completion, top_logprobs_from_chat_completion

RETRYABLE = {408, 409, 425, 429, 500, 502, 503, 504}
TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, socket.timeout)
REVIVE_S = 30.0  # a failed replica gets requests again after this long


class OpenAIBackend(Backend):
    def __init__(self, endpoint: str | list[str], model: str, concurrency: int = 8, api_key_env: str | None = None,
                 timeout_s: float = 300.0, max_retries: int = 8, backoff_s: float = 1.0, check: bool = True):
        self.urls = [u.rstrip("/") for u in ([endpoint] if isinstance(endpoint, str) else endpoint)]
        self.url = self.urls[0] if len(self.urls) == 1 else f"{len(self.urls)} replicas ({self.urls[0]}, ...)"
        self.failed: dict[str, float] = {}  # replica -> when it last failed
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.headers = {"Content-Type": "application/json"}
        if api_key_env:  # read only when named: a key is never sent to an endpoint the recipe did not pair it with
            key = os.environ.get(api_key_env)
            if not key:
                raise FusechatError(f"{self.url}: environment variable {api_key_env} (the API key) is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        if check:
            self._check()

    def _check(self) -> None:
        """Fail early, in one line, when no replica can be reached or one refuses the key; an unreachable
        replica among reachable ones is only set aside (it may still be starting)."""
        unreachable = []
        for url in self.urls:
            try:
                with urllib.request.urlopen(urllib.request.Request(url + "/models", headers=self.headers),
                                            timeout=min(self.timeout_s, 30)):
                    pass
            except urllib.error.HTTPError as e:
                if e.code in (401, 403):
                    raise FusechatError(f"{url}: the server refused the API key (HTTP {e.code})") from None
                # some servers have no /models route; the first real request will tell
            except TRANSIENT as e:
                unreachable.append(f"{url}: endpoint unreachable ({getattr(e, 'reason', e)})")
                self.failed[url] = time.monotonic()
        if len(unreachable) == len(self.urls):
            raise FusechatError(unreachable[0] if len(self.urls) == 1 else f"no replica reachable; {unreachable[0]}")
        for line in unreachable:
            print(f"fusechat: {line}; using the other replicas", file=sys.stderr, flush=True)

    def _pick(self) -> str:
        """The next replica in turn among those not failing; when all are, the one that failed first."""
        with self.lock:
            now = time.monotonic()
            alive = [u for u in self.urls if now - self.failed.get(u, -REVIVE_S) >= REVIVE_S]
            if not alive:
                return min(self.urls, key=lambda u: self.failed[u])
            return alive[next(self.turn) % len(alive)]

    def _set_aside(self, url: str) -> bool:
        """Note that `url` failed; True when another replica is still worth trying at once."""
        with self.lock:
            self.failed[url] = now = time.monotonic()
            return any(now - self.failed.get(u, -REVIVE_S) >= REVIVE_S for u in self.urls)

    def _post(self, url: str, body: dict, route: str) -> dict:
        data = json.dumps(body).encode()
        request = urllib.request.Request(url + route, data=data, headers=self.headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return json.loads(response.read())

    def complete(self, body: dict, route: str = "/chat/completions") -> dict:
        """One call (chat completions, or another `route` of the same server) with retries; a refusal for good
        comes back as {"error": ...}; raises FusechatError when the retries run out."""
        last, attempt = "", 0
        while True:
            wait = self.backoff_s * 2**attempt * (0.5 + random.random())  # jitter spreads the retries out
            url = self._pick()
            try:
                return self._post(url, body, route)
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode(errors="replace")
                if e.code not in RETRYABLE:
                    return {"error": f"HTTP {e.code}: {detail}"}
                last = f"{url}: HTTP {e.code}: {detail}"
                after = e.headers.get("Retry-After") if e.headers else None
                if after and after.replace(".", "", 1).isdigit():
                    wait = float(after)
                if e.code == 429:  # busy, not broken: wait for it rather than pile onto the others
                    attempt += 1
                    if attempt > self.max_retries:
                        break
                    time.sleep(min(wait, 60.0))
                    continue
            except (*TRANSIENT, json.JSONDecodeError) as e:
                last = f"{url}: {type(e).__name__}: {e}"
            if len(self.urls) > 1 and self._set_aside(url):
                continue  # another replica takes it now
            attempt += 1
            if attempt > self.max_retries:
                break
            time.sleep(min(wait, 60.0))
        raise FusechatError(f"{self.url}: request failed after {self.max_retries} retries ({last[:200]})")

    def _one(self, request: Request, sampling: Sampling) -> Generation:
        body = {"model": self.model, "messages": request.messages, "max_tokens": sampling.max_new_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "seed": request.seed, "n": 1}
        if sampling.repetition_penalty != 1.0:  # not in OpenAI's API; vLLM, SGLang and llama.cpp take it
            body["repetition_penalty"] = sampling.repetition_penalty
        result = self.complete(body)
        return from_chat_completion(result, request.seed)

    def first_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]:
        return top_logprobs_from_chat_completion(self.complete({
            "model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
            "top_logprobs": top}))

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Generation]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda r: self._one(r, sampling), requests))

    def close(self) -> None:
        pass

"""The OpenAI-compatible backend against a real llama.cpp server on loopback, through a proxy that
injects 500s, 429s, hangs and dropped connections: every sample arrives exactly once."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.request
from collections import Counter

import pytest

from fusechat import FusechatError
from fusechat.recipe import Sampling
from fusechat.backends.base import Request
from fusechat.backends.openai_api import OpenAIBackend

pytestmark = pytest.mark.real  # a real llama.cpp server with SmolLM2 from the catalog


class FaultyProxy(http.server.ThreadingHTTPServer):
    """Forwards to `upstream`, but the first `faults_per_request` tries of the request with seed s get
    the fault `plan[s % len(plan)]` (so every fault is hit, whatever order the threads run in)."""

    daemon_threads = True

    def __init__(self, upstream: str, plan: list[str], hang_s: float, faults_per_request: int = 1):
        self.upstream, self.plan, self.hang_s, self.faults = upstream, plan, hang_s, faults_per_request
        self.tries, self.seen = Counter(), []
        super().__init__(("127.0.0.1", 0), ProxyHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # /models
        with urllib.request.urlopen(self.server.upstream + self.path.removeprefix("/v1")) as r:
            self._reply(r.status, r.read())

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        seed = json.loads(body)["seed"]
        self.server.tries[seed] += 1
        fault = self.server.plan[seed % len(self.server.plan)] if self.server.tries[seed] <= self.server.faults else "ok"
        self.server.seen.append(fault)
        if fault == "500":
            return self._reply(500, b'{"error": "injected"}')
        if fault == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        if fault == "hang":
            time.sleep(self.server.hang_s)  # longer than the client's timeout
            return self._drop()
        request = urllib.request.Request(self.server.upstream + self.path.removeprefix("/v1"), data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as r:
            answer = r.read()
        if fault == "drop-after":  # the server did the work, the client never hears of it
            return self._drop()
        self._reply(200, answer)

    def _reply(self, code, data):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self):
        self.close_connection = True
        self.connection.close()


def requests(n):
    return [Request([{"role": "user", "content": f"Name an animal that starts with the letter {chr(65 + i)}."}], seed=100 + i)
            for i in range(n)]


def test_every_sample_arrives_exactly_once_through_injected_faults(server):
    sampling = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=8)
    want = OpenAIBackend(server, "smollm2", concurrency=1).generate(requests(12), sampling)
    assert all(g.finish_reason != "error" and g.text for g in want)

    # the timeout leaves a busy machine's server time to answer; a hang outlasts it
    proxy = FaultyProxy(server, ["ok", "500", "hang", "drop-after", "429", "ok"], hang_s=12)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(proxy.url, "smollm2", concurrency=4, timeout_s=10, max_retries=4, backoff_s=0.05)
        got = backend.generate(requests(12), sampling)
    finally:
        proxy.shutdown()
    assert {"500", "429", "hang", "drop-after"} <= set(proxy.seen)  # every fault was really injected
    assert len(proxy.seen) == 12 + 8  # 8 of the 12 first tries failed, every retry went through
    assert len(got) == 12
    # request i got request i's answer: same seed and text as the fault-free run, none lost or swapped
    assert [(g.seed, g.text, g.completion_tokens) for g in got] == [(g.seed, g.text, g.completion_tokens) for g in want]


def test_unreachable_endpoint_and_missing_key_fail_in_one_line(monkeypatch):
    with pytest.raises(FusechatError, match="unreachable"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", timeout_s=2)
    monkeypatch.delenv("FUSECHAT_TEST_KEY", raising=False)
    with pytest.raises(FusechatError, match="FUSECHAT_TEST_KEY"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", api_key_env="FUSECHAT_TEST_KEY")


def test_retries_run_out_with_a_clear_error_and_bad_requests_are_kept_as_errors(server):
    proxy = FaultyProxy(server, ["500"], hang_s=0, faults_per_request=99)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with pytest.raises(FusechatError, match="after 2 retries.*HTTP 500"):
            OpenAIBackend(proxy.url, "m", max_retries=2, backoff_s=0.01).generate(requests(1), Sampling(max_new_tokens=4))
    finally:
        proxy.shutdown()
    assert proxy.seen == ["500"] * 3
    # a prompt longer than the server's context is refused for good: kept as an error sample, not retried
    long = [Request([{"role": "user", "content": "word " * 5000}], seed=1)]
    [g] = OpenAIBackend(server, "m", max_retries=3, backoff_s=0.01).generate(long, Sampling(max_new_tokens=4))
    assert g.finish_reason == "error" and "HTTP 400" in g.error


def test_sample_stage_through_an_openai_source(tmp_path, server):
    import yaml

    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import read_jsonl

    data = {"name": "http", "run_dir": str(tmp_path / "run"), "shard_size": 2,
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 3}]},
            "sources": [{"name": "served", "model": "smollm2", "backend": "openai", "endpoint": server, "batch_size": 2,
                         "samples_per_prompt": {"math": 2}, "sampling": {"max_new_tokens": 8}}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    run_stage("prompts", recipe)
    run_stage("sample", recipe)
    rows = read_jsonl(recipe.run_path / "sample" / "samples.jsonl")
    assert sorted((r["prompt_id"], r["sample_index"]) for r in rows) == sorted({(r["prompt_id"], k) for r in rows for k in (0, 1)})
    assert len(rows) == 6 and all(r["finish_reason"] in ("stop", "length") for r in rows)
    assert json.loads((recipe.run_path / "sample" / "manifest.json").read_text())["counts"]["samples"] == 6


def test_judge_read_out_through_the_server(server):
    from fusechat.scorers.judge import Judge, judge_messages

    backend = OpenAIBackend(server, "m", max_retries=1)
    read = backend.first_token_logprobs(judge_messages("What is 2 + 2?", "4"))
    assert len(read) >= 5 and all(lp <= 0 for lp in read.values())
    grades = Judge(backend).score([("What is 2 + 2?", "4"), ("What is 2 + 2?", "4")])
    assert grades[0] == grades[1] and 0 <= grades[0] <= 1


def start_replica() -> tuple:
    """A llama.cpp server with SmolLM2 in its own process (so it can be killed like a node), and its URL."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"""
import sys, time, xllamacpp
from fusechat.catalog import prepare
p = xllamacpp.CommonParams()
p.model.path = str(prepare("smollm2-135m-instruct"))
p.n_parallel, p.n_ctx, p.port, p.cpuparams.n_threads = 2, 4096, {port}, 1
p.use_jinja, p.warmup, p.verbosity = True, False, -1
server = xllamacpp.Server(p)
print("ready", flush=True)
time.sleep(3600)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}/v1"


def test_two_replicas_one_killed_mid_stage_every_request_answered_once(tmp_path):
    import yaml

    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import read_jsonl

    (first, url1), (second, url2) = start_replica(), start_replica()
    proxies = [FaultyProxy(url, ["ok"], hang_s=0) for url in (url1, url2)]  # they count what each replica saw
    for proxy in proxies:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
    data = {"name": "replicas", "run_dir": str(tmp_path / "run"), "shard_size": 4,
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 12}]},
            "sources": [{"name": "served", "model": "smollm2", "backend": "openai", "batch_size": 4,
                         "endpoint": [p.url for p in proxies], "request_timeout_s": 20, "max_retries": 3,
                         "samples_per_prompt": {"math": 2}, "sampling": {"max_new_tokens": 24}}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    run_stage("prompts", recipe)

    def kill_when_busy():  # SIGKILL the first replica once it has answered a few requests, mid-stage
        while len(proxies[0].seen) < 4:
            time.sleep(0.05)
        first.kill()

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    try:
        run_stage("sample", recipe)
    finally:
        first.kill()
        second.kill()
        for proxy in proxies:
            proxy.shutdown()
    rows = read_jsonl(recipe.run_path / "sample" / "samples.jsonl")
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert len(keys) == 24 and len(set(keys)) == 24  # every request once: none lost, none twice
    assert all(r["finish_reason"] in ("stop", "length") and r["text"] for r in rows)
    assert 4 <= len(proxies[0].seen) < 24 and len(proxies[1].seen) >= 24 - len(proxies[0].seen)

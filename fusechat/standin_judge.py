"""A stand-in judge for `fusechat rehearse`: a local OpenAI-compatible server that answers every judge
request of fusechat's judged benchmarks in the form the benchmark reads.

A rehearsal has tiny random models and no judge endpoint; a tiny random model behind a server would
never write "[[8]]". This server stands in for the judge the recipe names (it lists those names under
/models) so that the rehearsal runs the judged benchmarks' whole path (requests over HTTP, both orders,
grades parsed, shards written, scores and labels) on the real wire format:
- MT-Bench's FastChat prompts get "Rating: [[g]]", AlignBench's rubric gets its dictionary with
  '综合得分': g, any other grading request "[[g]]";
- a pairwise request (one token, with log-probabilities) gets "A" with P(A) and P(B) as top log-probs.
The grade g (1-10) and P(A) come from a hash of the request, so a rehearsal is repeatable; they mean
nothing about the answers, which is what a stand-in is.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by `text`."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8


def reply(body: dict) -> dict:
    """The chat completion the stand-in returns for one request body."""
    prompt = "".join(str(m.get("content", "")) for m in body.get("messages", []))
    u = _unit(prompt)
    choice = {"index": 0, "finish_reason": "stop"}
    if body.get("logprobs"):
        p = 0.05 + 0.9 * u
        choice["message"] = {"role": "assistant", "content": "A"}
        choice["logprobs"] = {"content": [{"token": "A", "logprob": math.log(p), "top_logprobs": [
            {"token": "A", "logprob": math.log(p)}, {"token": "B", "logprob": math.log(1 - p)}]}]}
    else:
        grade = 1 + int(10 * u)
        if "综合得分" in prompt:
            text = f"（替身评委）{{'事实正确性': {grade}, '满足用户需求': {grade}, '综合得分': {grade}}}"
        else:
            text = f"(stand-in judge) Rating: [[{grade}]]"
        choice["message"] = {"role": "assistant", "content": text}
    return {"choices": [choice], "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 8}}


def start(models: list[str], answer=reply) -> tuple[str, Callable[[], None]]:
    """Run the stand-in on 127.0.0.1 (a free port) in a daemon thread; returns its base URL and a function
    that stops it. `answer(request body)`: the chat completion to return (tests pass their own)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self._send(answer(json.loads(self.rfile.read(int(self.headers["Content-Length"])))))

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}/v1", stop

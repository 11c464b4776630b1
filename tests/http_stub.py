"""A local OpenAI-compatible server for tests: `serve(answer)` runs a real HTTP server on 127.0.0.1 whose
/chat/completions replies are `answer(request_body)` (a dict), and /models lists one model."""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def serve(answer, model: str = "stub"):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            self._send(answer(body))

        def do_GET(self):
            self._send({"data": [{"id": model}]})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()


def chat_reply(text: str, top_logprobs: dict[str, float] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if top_logprobs is not None:
        choice["logprobs"] = {"content": [{"token": text[:1], "logprob": 0.0,
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top_logprobs.items()]}]}
    return {"choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}

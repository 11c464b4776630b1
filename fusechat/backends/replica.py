"""The child side of fusechat.backends.replicas: one source's model opened in this process, answering one
JSON line per request on the socket it was given (`python -m fusechat.backends.replica FD`).

A FusechatError (a model that will not load) goes back as a message; anything else ends the process
with its traceback on stderr, and the parent stops the stage in one line.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import asdict

from fusechat import FusechatError
from fusechat.backends.base import Request
from fusechat.backends.factory import open_backend
from fusechat.recipe import Sampling, Source


def answer(backend, message: dict):
    match message["op"]:
        case "open":
            return open_backend(Source.model_validate(message["source"]), message["context"], in_process=True)
        case "generate":
            sampling = Sampling.model_validate(message["sampling"])
            return [asdict(g) for g in backend.generate([Request(**r) for r in message["requests"]], sampling)]
        case "logprobs":
            return backend.first_token_logprobs(message["messages"], message["top"])
    raise ValueError(f"unknown request {message['op']!r}")


def serve(fd: int) -> None:
    stream = socket.socket(fileno=fd).makefile("rwb")
    backend = None
    try:
        for line in stream:
            message = json.loads(line)
            if message["op"] == "exit":
                break
            try:
                result = answer(backend, message)
                if message["op"] == "open":
                    backend, result = result, True
                reply = {"ok": result}
            except FusechatError as e:
                reply = {"error": str(e)}
            stream.write(json.dumps(reply).encode() + b"\n")
            stream.flush()
    finally:
        if backend is not None:
            backend.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]))

"""A local OpenAI-compatible server for tests: `serve(answer)` runs a real HTTP server on 127.0.0.1 whose
/chat/completions replies are `answer(request_body)` (a dict), and /models lists one model."""

import contextlib

from fusechat.standin_judge import start


@contextlib.contextmanager
def serve(answer, model: str = "stub"):
    """The same server as the rehearsal's stand-in judge, answering with `answer`; yields its URL and the
    request bodies it saw, in arrival order."""
    seen = []

    def recorded(body: dict) -> dict:
        seen.append(body)
        return answer(body)

    url, stop = start([model], recorded)
    try:
        yield url, seen
    finally:
        stop()


def chat_reply(text: str, top_logprobs: dict[str, float] | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if top_logprobs is not None:
        choice["logprobs"] = {"content": [{"token": text[:1], "logprob": 0.0,
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top_logprobs.items()]}]}
    return {"choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}

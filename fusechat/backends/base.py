"""The one backend interface that sampling, the judge and evaluation all go through.

A backend is a loaded model behind three methods: `generate` (sampled or greedy answers),
`first_token_logprobs` (the judge's read-out) and `close`, and a context manager that closes it
(`with open_backend(source) as backend:`). Each class lives in its own file (hf, llamacpp, openai_api,
vllm, dataset); `fusechat.backends.factory.open_backend` picks one, so this file knows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusechat import FusechatError


@dataclass
class Request:
    messages: list[dict]
    seed: int


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop", "length" or "error"
    seed: int  # the seed the backend really used (a batch shares one seed in transformers)
    error: str = ""

    def __post_init__(self):
        # Model output is data: whatever a server sent, the record must be writable as UTF-8.
        self.text, self.error = writable(self.text), writable(self.error)


def over_context(prompt_tokens: int, context: int, seed: int) -> Generation:
    """A prompt the model cannot take: an `error` sample saying so (counted by the build), never a crash
    that would stop the shard, and the rerun, on the same prompt for good."""
    return Generation("", prompt_tokens, 0, "error", seed,
                      error=f"the prompt has {prompt_tokens} tokens; the model's context holds {context}")


def writable(text: str) -> str:
    """`text` with what UTF-8 cannot hold (a lone surrogate such as "\\ud800", which JSON can spell and a
    server may send) replaced by U+FFFD, so the record can be written."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def from_chat_completion(result, seed: int) -> Generation:
    """A Generation from an OpenAI-style chat-completions answer (llama.cpp's server and HTTP endpoints);
    an error, or an answer not shaped like one, becomes an `error` generation saying so."""
    try:
        if "error" in result or not result.get("choices"):
            return Generation("", 0, 0, "error", seed, error=str(result.get("error", result))[:300])
        choice, usage = result["choices"][0], result.get("usage") or {}
        text = (choice.get("message") or {}).get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"content is a {type(text).__name__}")
        return Generation(text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                          completion_tokens=int(usage.get("completion_tokens", 0)),
                          finish_reason="length" if choice.get("finish_reason") == "length" else "stop", seed=seed)
    except (AttributeError, TypeError, ValueError, IndexError, KeyError) as e:
        return Generation("", 0, 0, "error", seed, error=f"malformed answer from the server ({e}): {str(result)[:200]}")


def read_template(chat_template: str | None) -> str | None:
    """A chat template override is inline Jinja or a path to a file holding it; bad Jinja is one line here,
    before any model loads."""
    where = "chat_template"
    if chat_template and "{" not in chat_template and Path(chat_template).is_file():
        where = chat_template
        try:
            chat_template = Path(chat_template).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise FusechatError(f"{where}: not a UTF-8 text file") from None
    if chat_template:
        import jinja2

        try:  # the extensions transformers' template environment has
            jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(chat_template)
        except jinja2.TemplateSyntaxError as e:
            raise FusechatError(f"{where}: not a valid Jinja chat template (line {e.lineno}: {e.message})") from None
    return chat_template


def render_chat(tokenizer, messages: list[dict], where: str) -> str:
    """The prompt text from a tokenizer's chat template; a template that fails on these messages is one line."""
    import jinja2

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except jinja2.TemplateError as e:
        raise FusechatError(f"{where}: the chat template failed on a prompt ({e})") from None


class Backend:
    """A loaded model. Subclasses implement all three methods."""

    def generate(self, requests: list[Request], sampling) -> list[Generation]:
        """One answer per request, in request order, with the recipe's sampling settings."""
        raise NotImplementedError

    def first_token_logprobs(self, messages: list[dict], top: int = 20) -> dict[str, float]:
        """The `top` most likely first tokens of the reply and their log-probabilities (greedy, no sampling).

        Computed for this conversation alone (no batching with other requests, no reused cache), so a
        judge's grade is the same on every run and whatever else is being judged.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Free the model (a GPU's memory before the next source loads)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def top_logprobs_from_chat_completion(result) -> dict[str, float]:
    """First-token top log-probabilities from an OpenAI-style answer (llama.cpp's server, vLLM, hosted APIs);
    an error, or an answer not shaped like one, is one line naming what the server sent."""
    try:
        if "error" in result or not result.get("choices"):
            raise ValueError("no choices")
        content = (result["choices"][0].get("logprobs") or {}).get("content") or []
        return {str(t["token"]): float(t["logprob"]) for t in content[0]["top_logprobs"]} if content else {}
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        error = result.get("error", result) if isinstance(result, dict) else result
        raise FusechatError(f"the judge's server gave no log-probabilities ({str(error)[:200]})") from None

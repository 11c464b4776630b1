"""What every sampling backend takes and returns (kept small: one class, two methods)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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


def from_chat_completion(result: dict, seed: int) -> Generation:
    """A Generation from an OpenAI-style chat-completions answer (llama.cpp's server and HTTP endpoints)."""
    if "error" in result or not result.get("choices"):
        return Generation("", 0, 0, "error", seed, error=str(result.get("error", result))[:300])
    choice, usage = result["choices"][0], result.get("usage") or {}
    return Generation(
        text=(choice.get("message") or {}).get("content") or "",
        prompt_tokens=usage.get("prompt_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        seed=seed,
    )


def read_template(chat_template: str | None) -> str | None:
    """A chat template override is inline Jinja or a path to a file holding it."""
    if chat_template and "{" not in chat_template and Path(chat_template).is_file():
        return Path(chat_template).read_text(encoding="utf-8")
    return chat_template


def usable_cores() -> int:
    """CPUs this process may run on (respects affinity and container limits, unlike os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags

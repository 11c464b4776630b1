"""Instruction following with verifiable constraints (in the spirit of IFEval, our own small set).

Each prompt is a plain writing task plus one constraint a program can check: "answer in fewer than
40 words", "no commas", "exactly 3 bullet points"... The score is the fraction of answers that keep
their constraint (prompt-level strict accuracy). Prompts are made from a seed, so every model of a
run sees the same ones, and they share no text with the training packs.
"""

from __future__ import annotations

import json
import random
import re

TASKS = [
    "Write a short paragraph about {topic}.",
    "Explain {topic} to a ten-year-old.",
    "Give a friend some practical advice about {topic}.",
    "Write a short poem about {topic}.",
    "Describe the main benefits and drawbacks of {topic}.",
    "Write a product description for a book about {topic}.",
]
TOPICS = [
    "learning a second language", "urban gardening", "electric bicycles", "the water cycle", "public libraries",
    "saving money", "remote work", "volcanoes", "board games", "sleep", "recycling plastic", "honey bees",
    "the night sky", "cooking with beans", "train travel", "museums", "rainforests", "writing letters by hand",
    "chess", "solar panels", "running a marathon", "tea", "lighthouses", "jazz music",
]
KEYWORDS = ["blue", "journey", "simple", "future", "friendly", "balance", "window", "gentle"]
END_PHRASE = "Is there anything else I can help with?"


def _spec(kind: str, rng: random.Random) -> dict:
    if kind in ("max_words", "min_words"):
        return {"kind": kind, "n": rng.choice([30, 50, 80]) if kind == "max_words" else rng.choice([60, 100, 150])}
    if kind == "keyword":
        return {"kind": kind, "word": rng.choice(KEYWORDS)}
    if kind == "bullets":
        return {"kind": kind, "n": rng.choice([2, 3, 4, 5])}
    return {"kind": kind}


def instruction(spec: dict) -> str:
    """The sentence appended to the task that states the constraint."""
    return {
        "lowercase": "Your entire response must be in lowercase letters; no capital letters are allowed.",
        "uppercase": "Your entire response must be in English and in capital letters only.",
        "max_words": f"Answer in fewer than {spec.get('n')} words.",
        "min_words": f"Answer with at least {spec.get('n')} words.",
        "keyword": f"Include the word \"{spec.get('word')}\" in your response.",
        "bullets": f"Your answer must contain exactly {spec.get('n')} bullet points, written as markdown bullets such as:\n* This is a point.",
        "end_phrase": f"Finish your response with this exact phrase: \"{END_PHRASE}\" No other words should follow it.",
        "no_commas": "Do not use any commas in your response.",
        "quoted": "Wrap your entire response in double quotation marks.",
        "title": "Give your answer a title wrapped in double angular brackets, such as <<my title>>.",
        "json": "Your entire output must be valid JSON; you may wrap it in a ```json code block.",
    }[spec["kind"]]


KINDS = ["lowercase", "uppercase", "max_words", "min_words", "keyword", "bullets", "end_phrase", "no_commas",
         "quoted", "title", "json"]


def prompts(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spec = _spec(KINDS[i % len(KINDS)], rng)  # round-robin: every kind is represented
        task = rng.choice(TASKS).format(topic=rng.choice(TOPICS))
        out.append({"id": f"constraint-{i}", "prompt": f"{task} {instruction(spec)}", "constraint": spec})
    return out


def check(response: str, spec: dict) -> bool:
    """True when `response` keeps the constraint `spec`."""
    text = response.strip()
    kind = spec["kind"]
    words = re.findall(r"\b\w+\b", text)
    if not text:
        return False
    if kind == "lowercase":
        return text == text.lower() and any(c.isalpha() for c in text)
    if kind == "uppercase":
        return text == text.upper() and any(c.isalpha() for c in text)
    if kind == "max_words":
        return len(words) < spec["n"]
    if kind == "min_words":
        return len(words) >= spec["n"]
    if kind == "keyword":
        return re.search(rf"\b{re.escape(spec['word'])}\b", text, re.IGNORECASE) is not None
    if kind == "bullets":
        return len(re.findall(r"^\s*[*-]\s", text, re.MULTILINE)) == spec["n"]
    if kind == "end_phrase":
        return text.endswith(END_PHRASE)
    if kind == "no_commas":
        return "," not in text
    if kind == "quoted":
        return len(text) > 1 and text[0] == '"' and text[-1] == '"'
    if kind == "title":
        return re.search(r"<<[^\n<>]+>>", text) is not None
    if kind == "json":
        body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text, flags=re.IGNORECASE)
        try:
            json.loads(body)
        except ValueError:
            return False
        return True
    raise ValueError(f"unknown constraint kind {kind!r}")

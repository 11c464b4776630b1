"""Instruction prompts with verifiable constraints (IFEval style), for training and evaluation.

Each prompt is a plain writing task ("Write a short paragraph about tea.") plus one or two
constraints a program can check ("Answer with less than 50 words.", "Do not use any commas.").
Constraints are IFEval's instructions, written and checked by the `if-verifiable` package (the
IFEval/IFBench checkers, Apache-2.0): its `build_description` words the instruction and its strict
check decides a response. A prompt passes only when every constraint holds (IFEval's prompt-level
strict accuracy). We only make the prompts, because no offline package ships IFEval-style prompts.

Training and evaluation never share a base prompt: the writing tasks are built from two disjoint
topic lists (TRAIN_TOPICS, EVAL_TOPICS; `test_constraints` checks they stay disjoint), so an
evaluation task never appears in training with another constraint.
"""

from __future__ import annotations

import random
from functools import cache

TASKS = [
    "Write a short paragraph about {topic}.",
    "Explain {topic} to a ten-year-old.",
    "Give a friend some practical advice about {topic}.",
    "Write a short poem about {topic}.",
    "Describe the main benefits and drawbacks of {topic}.",
    "Write a product description for a book about {topic}.",
    "Write a short blog post introduction about {topic}.",
    "Write a letter to a local newspaper about {topic}.",
]
TRAIN_TOPICS = [
    "urban gardening", "electric bicycles", "public libraries", "saving money", "volcanoes", "board games",
    "recycling plastic", "the night sky", "train travel", "rainforests", "chess", "running a marathon",
    "lighthouses", "bird watching", "learning to swim", "coffee", "mountain hiking", "photography",
    "composting", "street food", "wind turbines", "penguins", "pottery", "city parks", "knitting",
    "first aid", "camping", "old maps", "bread baking", "sea turtles",
]
EVAL_TOPICS = [
    "learning a second language", "the water cycle", "remote work", "sleep", "honey bees",
    "cooking with beans", "museums", "writing letters by hand", "solar panels", "tea", "jazz music",
    "bicycle repair", "deserts", "ballet", "time zones", "houseplants", "dinosaurs", "volunteering",
    "snowboarding", "public transport", "origami", "coral reefs", "podcasts", "farmers markets",
    "the moon landing", "handwriting", "kites", "fermentation", "glaciers", "community theatre",
]
KEYWORDS = ["blue", "journey", "simple", "future", "friendly", "balance", "window", "gentle", "bright", "quiet"]
END_PHRASES = ["Is there anything else I can help with?", "Any other questions?", "That is all."]


def _constraint(kind: str, rng: random.Random) -> dict:
    """One IFEval instruction id with its arguments drawn from `rng`."""
    kwargs = {}
    match kind:
        case "length_constraints:number_words":
            kwargs = rng.choice([{"relation": "less than", "num_words": rng.choice([30, 50, 80])},
                                 {"relation": "at least", "num_words": rng.choice([60, 100])}])
        case "startend:end_checker":
            kwargs = {"end_phrase": rng.choice(END_PHRASES)}
        case "keywords:existence":
            kwargs = {"keywords": rng.sample(KEYWORDS, 2)}
        case "keywords:forbidden_words":
            kwargs = {"forbidden_words": rng.sample(["very", "really", "good", "thing", "also"], 2)}
        case "detectable_format:number_bullet_lists":
            kwargs = {"num_bullets": rng.randint(2, 5)}
        case "detectable_content:postscript":
            kwargs = {"postscript_marker": rng.choice(["P.S.", "P.P.S"])}
        case "detectable_format:number_highlighted_sections":
            kwargs = {"num_highlights": rng.randint(1, 3)}
        case "length_constraints:number_paragraphs":
            kwargs = {"num_paragraphs": rng.randint(2, 4)}
    return {"id": kind, "kwargs": kwargs}


KINDS = [
    "length_constraints:number_words", "punctuation:no_comma", "startend:end_checker", "keywords:existence",
    "keywords:forbidden_words", "detectable_format:number_bullet_lists", "change_case:english_lowercase",
    "change_case:english_capital", "startend:quotation", "detectable_format:title", "detectable_format:json_format",
    "detectable_content:postscript", "detectable_format:number_highlighted_sections",
    "length_constraints:number_paragraphs",
]
# Pairs that contradict each other are never drawn together.
_CLASHES = {frozenset({"change_case:english_lowercase", "change_case:english_capital"}),
            frozenset({"change_case:english_lowercase", "detectable_format:title"}),
            frozenset({"detectable_format:json_format", "startend:quotation"}),
            frozenset({"detectable_format:json_format", "startend:end_checker"}),
            frozenset({"detectable_format:json_format", "detectable_content:postscript"}),
            frozenset({"detectable_format:json_format", "length_constraints:number_paragraphs"}),
            frozenset({"startend:quotation", "startend:end_checker"}),
            frozenset({"startend:quotation", "detectable_content:postscript"}),
            frozenset({"startend:end_checker", "detectable_content:postscript"})}


@cache
def registry():
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # the case checkers ask langdetect, which is random unless seeded

    return INSTRUCTION_DICT


def describe(constraint: dict) -> str:
    """The instruction's wording, IFEval's own."""
    checker = registry()[constraint["id"]](constraint["id"])
    return checker.build_description(**constraint["kwargs"])


def make_prompts(n: int, seed: int, split: str, max_constraints: int = 1) -> list[dict]:
    """`n` prompts for `split` ("train" or "eval"); each kind of constraint comes round in turn."""
    topics = {"train": TRAIN_TOPICS, "eval": EVAL_TOPICS}[split]
    rng = random.Random(f"{split}:{seed}")
    out = []
    for i in range(n):
        kinds = [KINDS[i % len(KINDS)]]
        if max_constraints > 1 and rng.random() < 0.5:
            kinds.append(rng.choice([k for k in KINDS if k not in kinds and frozenset({k, kinds[0]}) not in _CLASHES]))
        constraints = [_constraint(k, rng) for k in kinds]
        task = rng.choice(TASKS).format(topic=rng.choice(topics))
        text = " ".join([task] + [describe(c) for c in constraints])
        out.append({"prompt": text, "constraints": constraints, "base_prompt": task})
    return out


def check(response: str, constraints: list[dict], prompt: str = "") -> bool:
    """True when `response` keeps every constraint (if-verifiable's strict check)."""
    from if_verifiable.common import evaluate_instructions

    ids = [c["id"] for c in constraints]
    unknown = [i for i in ids if i not in registry()]
    if unknown:
        raise ValueError(f"unknown IFEval instruction id {unknown[0]!r}")
    _, scores = evaluate_instructions(response, ids, [c["kwargs"] for c in constraints], prompt, registry())
    return scores.binary_strict == 1.0

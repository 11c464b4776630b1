"""Verifiable-constraint prompts: IFEval's checkers through if-verifiable, train/eval kept apart."""

import pytest

from fusechat.constraints import EVAL_TOPICS, KINDS, TASKS, TRAIN_TOPICS, check, make_prompts

KEPT_AND_BROKEN = {
    "length_constraints:number_words": ({"relation": "less than", "num_words": 30}, "Short answer.", "word " * 30),
    "punctuation:no_comma": ({}, "No commas at all.", "One, two."),
    "startend:end_checker": ({"end_phrase": "Any other questions?"}, "Done. Any other questions?", "Any other questions? More."),
    "keywords:existence": ({"keywords": ["blue", "simple"]}, "A blue and simple sky.", "A blue sky only."),
    "keywords:forbidden_words": ({"forbidden_words": ["very"]}, "It is fine.", "It is very fine."),
    "detectable_format:number_bullet_lists": ({"num_bullets": 3}, "Intro\n* one\n* two\n* three", "* one\n* two"),
    "change_case:english_lowercase": ({}, "all quiet here in the garden today.", "Not all quiet here in the garden."),
    "change_case:english_capital": ({}, "THE SUN IS BRIGHT AND THE BIRDS ARE SINGING IN THE GARDEN TODAY.", "NOT all loud here in the garden."),
    "startend:quotation": ({}, '"Quoted text."', '"Half quoted.'),
    "detectable_format:title": ({}, "<<Bees>>\nText.", "<Bees> text"),
    "detectable_format:json_format": ({}, '```json\n{"a": 1}\n```', "{a: 1}"),
    "detectable_content:postscript": ({"postscript_marker": "P.S."}, "Hello.\nP.S. Bye.", "Hello. Bye."),
    "detectable_format:number_highlighted_sections": ({"num_highlights": 2}, "*one* and *two*", "*one* only"),
    "length_constraints:number_paragraphs": ({"num_paragraphs": 2}, "First.\n***\nSecond.", "Only one."),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_constraint_accepts_a_kept_answer_and_rejects_a_broken_one(kind):
    kwargs, kept, broken = KEPT_AND_BROKEN[kind]
    constraint = [{"id": kind, "kwargs": kwargs}]
    assert check(kept, constraint)
    assert not check(broken, constraint)
    assert not check("   ", constraint)


def test_a_prompt_passes_only_when_every_constraint_holds():
    both = [{"id": "punctuation:no_comma", "kwargs": {}}, {"id": "startend:quotation", "kwargs": {}}]
    assert check('"no commas here"', both)
    assert not check('"one, two"', both) and not check("no commas here", both)


def test_prompts_are_seeded_cover_every_kind_and_word_the_constraint_the_ifeval_way():
    made = make_prompts(28, seed=0, split="train")
    assert made == make_prompts(28, seed=0, split="train")
    assert {c["id"] for p in made for c in p["constraints"]} == set(KINDS)
    assert "refrain from the use of any commas" in next(p["prompt"] for p in made if p["constraints"][0]["id"] == "punctuation:no_comma")


def test_training_and_evaluation_share_no_base_prompt():
    assert not set(TRAIN_TOPICS) & set(EVAL_TOPICS)
    train = {p["base_prompt"] for p in make_prompts(500, seed=3, split="train", max_constraints=2)}
    held_out = {p["base_prompt"] for p in make_prompts(500, seed=0, split="eval")}
    assert train and held_out and not train & held_out
    assert len(held_out) > 100  # enough distinct writing tasks for a few hundred eval prompts
    assert len(TASKS) * len(EVAL_TOPICS) >= 200

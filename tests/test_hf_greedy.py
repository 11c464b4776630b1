"""The transformers backend's decoder drops finished rows from the batch; greedy, it must write the same
tokens as `generate(do_sample=False)`; sampled, it must draw from the top-p nucleus."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from fusechat.recipe import Sampling
from fusechat.backends.base import Request, render_chat
from fusechat.backends.hf import TransformersBackend, pick_tokens

PROMPTS = ["Hi", "What is the capital of France? Answer in one word.", "Count to five.",
           "Write a haiku about the sea, then explain it line by line.", "2+2=", "Name three colours."]


def reference(backend: TransformersBackend, prompts: list[str], max_new_tokens: int) -> tuple[list[list[int]], dict]:
    """`generate`'s greedy tokens per prompt, cut at the first stop token (kept), as the decoder returns
    them; and the padded batch it was given."""
    texts = [render_chat(backend.tokenizer, [{"role": "user", "content": p}], backend.path) for p in prompts]
    enc = backend.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = backend.model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, top_k=None,
                                 eos_token_id=sorted(backend.stop_ids), pad_token_id=backend.tokenizer.pad_token_id)
    rows = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        stop = next((i for i, t in enumerate(row) if t in backend.stop_ids), None)
        rows.append(row if stop is None else row[: stop + 1])
    return rows, enc


def test_pruned_greedy_matches_generate_when_rows_stop_at_different_steps(tiny_model_dir):
    backend = TransformersBackend(str(tiny_model_dir), dtype="float32", batch_size=8)
    backend.stop_ids = set()
    free, _ = reference(backend, PROMPTS, 24)
    # A random model never says EOS: make a token it does write (at different steps in different rows) the stop.
    counts = Counter(t for row in free for t in set(row[1:20]))
    stop = next(t for t, _ in counts.most_common() if len({row.index(t) for row in free if t in row}) > 1)
    backend.stop_ids = {stop}
    expected, enc = reference(backend, PROMPTS, 24)
    lengths = [len(r) for r in expected]
    assert len(set(lengths)) > 2 and max(lengths) == 24  # rows really leave the batch at different steps
    with torch.inference_mode():
        assert backend._decode(enc, Sampling(temperature=0, max_new_tokens=24)) == expected


@pytest.mark.real
def test_pruned_greedy_on_smollm2_gives_generates_answers():
    from fusechat.models import resolve

    backend = TransformersBackend(resolve("smollm2-135m-instruct").hf_path(), dtype="float32", batch_size=8)
    expected, enc = reference(backend, PROMPTS, 40)
    assert any(r[-1] in backend.stop_ids for r in expected) and any(len(r) == 40 for r in expected)
    with torch.inference_mode():
        assert backend._decode(enc, Sampling(temperature=0, max_new_tokens=40)) == expected
    # and through the public interface: text cut at the stop, finish reasons
    out = backend.generate([Request([{"role": "user", "content": p}], 0) for p in PROMPTS],
                           Sampling(temperature=0, max_new_tokens=40))
    assert [g.finish_reason == "stop" for g in out] == [r[-1] in backend.stop_ids for r in expected]



def test_repetition_penalty_matches_generates(tiny_model_dir):
    backend = TransformersBackend(str(tiny_model_dir), dtype="float32", batch_size=8)
    backend.stop_ids = set()
    text = render_chat(backend.tokenizer, [{"role": "user", "content": PROMPTS[3]}], backend.path)
    enc = backend.tokenizer([text], return_tensors="pt", add_special_tokens=False)  # one row: no padding
    plain = backend.model.generate(**enc, do_sample=False, max_new_tokens=24, top_k=None)
    out = backend.model.generate(**enc, do_sample=False, max_new_tokens=24, top_k=None, repetition_penalty=0.2)
    expected = out[0, enc["input_ids"].shape[1]:].tolist()
    assert expected != plain[0, enc["input_ids"].shape[1]:].tolist()  # the penalty (< 1: seen tokens favoured, so a random model feels it) changes this answer
    with torch.inference_mode():
        assert backend._decode(enc, Sampling(temperature=0, repetition_penalty=0.2, max_new_tokens=24)) == [expected]


def test_top_p_draws_only_from_the_nucleus_in_proportion():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(20000, 4)
    drawn = pick_tokens(logits, Sampling(temperature=1.0, top_p=0.7))
    counts = torch.bincount(drawn, minlength=4).tolist()
    assert counts[2] == counts[3] == 0  # 0.5 < 0.7 needs the second token; the third is outside
    assert abs(counts[0] / 20000 - 0.5 / 0.8) < 0.02
    # temperature 0 is argmax; top_p 1 keeps every token
    assert pick_tokens(logits[:3], Sampling(temperature=0)).tolist() == [0, 0, 0]
    assert torch.bincount(pick_tokens(logits, Sampling(temperature=1.0, top_p=1.0)), minlength=4)[3] > 0


def test_a_nucleus_wider_than_the_top_k_shortcut_is_still_exact():
    torch.manual_seed(0)
    logits = torch.zeros(4000, 5000)  # flat: the 0.9 nucleus holds 4,500 tokens, more than the 1,024 looked at first
    drawn = pick_tokens(logits, Sampling(temperature=1.0, top_p=0.9))
    assert drawn.max() >= 2000 and len(set(drawn.tolist())) > 1500

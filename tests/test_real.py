"""The four data stages on a real model: SmolLM2-135M-Instruct from the offline catalog.

Select with `pytest -m real`; CI runs this group too.
"""

from collections import Counter

import datasets
import pytest
import yaml

from fusechat.pipeline import run_all
from fusechat.recipe import Sampling, load_recipe
from fusechat.runfolder import RunFolder
from fusechat.backends.base import Request

pytestmark = pytest.mark.real
SMOL = "smollm2-135m-instruct"


def test_four_stages_on_smollm2_with_llamacpp(tmp_path):
    data = {
        "name": "real", "run_dir": str(tmp_path / "run"),
        "prompts": {"sets": [
            {"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 4,
             "options": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}},
            {"domain": "code", "pack": "code-functions", "n": 2},
            {"domain": "instruction", "pack": "sharegpt", "n": 3}]},
        "sources": [{"name": "smol", "model": SMOL, "backend": "llamacpp", "batch_size": 4,
                     "samples_per_prompt": {"math": 3, "code": 2, "instruction": 3}, "sampling": {"max_new_tokens": 96}}],
        "score": {"reward": {"kind": "judge", "model": SMOL, "domains": ["instruction"], "batch_size": 4}},
        "build": {"gap_window": [0.0, 1.0]},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    manifests = run_all(recipe)
    samples = RunFolder(recipe.run_path).records("sample", "samples")
    assert len(samples) == 4 * 3 + 2 * 2 + 3 * 3
    assert sum(s["completion_tokens"] for s in samples) > 100 and all(s["text"] for s in samples)
    assert manifests["sample"]["timings"]["smol"]["tokens_per_s"] > 10
    scored = RunFolder(recipe.run_path).records("score", "scored")
    rewards = [s["reward"] for s in scored if s["domain"] == "instruction"]
    assert all(0 <= r <= 1 for r in rewards) and len(set(rewards)) > 1  # the judge discriminates
    assert all(isinstance(s["correct"], bool) for s in scored if s["domain"] in ("math", "code"))
    counts = manifests["build"]["counts"]
    assert sum(counts["sft"].values()) + sum(counts["dpo"].values()) + sum(counts["dropped"].values()) == 9
    for name in ("sft", "dpo"):
        ds = datasets.load_from_disk(str(recipe.run_path / "build" / name))
        assert len(ds) == sum(counts[name].values())


def test_llamacpp_greedy_answers_with_the_chat_template():
    from fusechat.catalog import prepare
    from fusechat.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(prepare(SMOL), slots=2, ctx_per_slot=1024)
    greedy = Sampling(temperature=0, max_new_tokens=24)
    request = Request([{"role": "user", "content": "What is 2+3?"}], seed=1)
    first, second = backend.generate([request, request], greedy)
    assert "5" in first.text and first.text == second.text
    assert first.prompt_tokens > 10 and first.finish_reason in ("stop", "length")
    backend.close()


def test_transformers_backend_on_converted_smollm2():
    from fusechat.models import resolve
    from fusechat.backends.hf import TransformersBackend

    backend = TransformersBackend(resolve(SMOL).hf_path(), batch_size=4)
    out = backend.generate([Request([{"role": "user", "content": "What is 2+3?"}], seed=1)] * 2,
                           Sampling(temperature=0, max_new_tokens=24))
    assert "5" in out[0].text and Counter(g.text for g in out).most_common(1)[0][1] == 2


def test_llamacpp_judge_gives_the_same_grades_on_every_run():
    """A rescore with nothing changed must not move a reward (it once moved 3 of 8, by up to 0.04)."""
    from fusechat.scorers.judge import open_judge

    pairs = [("Name a primary colour.", "Blue."), ("What is 7 * 6?", "42"), ("What is 7 * 6?", "It is 48."),
             ("Capital of France?", "Berlin.")]
    judge = open_judge(SMOL, "llamacpp")
    first = judge.score(pairs + pairs[:1])
    again = judge.score(pairs[::-1])[::-1]
    judge.close()
    fresh = open_judge(SMOL, "llamacpp")
    third = fresh.score(pairs)
    fresh.close()
    assert first[:4] == again == third and first[4] == first[0]
    assert len(set(first)) > 2

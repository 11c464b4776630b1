"""AlpacaEval 2's length-controlled win rate: fusechat's judgments handed to alpaca_eval as its annotations.

The computation itself runs alpaca_eval in its own virtualenv (scripts/alpaca_eval_venv.sh), which CI does
not build: that test runs where it exists, on the hub files alpaca_eval downloads (df_gamed.csv and its
instruction difficulties) replaced by small ones in their columns, in an offline hub cache."""

import json
from pathlib import Path

import pytest

from fusechat.benchmarks import alpaca_lc


def test_judgments_become_alpaca_evals_annotations_in_the_sets_order():
    rows = [{"id": "a0", "prompt": "Q0", "response": "mine 0", "score": 0.75},
            {"id": "a1", "prompt": "Q1", "response": "mine 1", "score": None}]
    got = alpaca_lc.annotations(rows, {"a0": "ref 0", "a1": "ref 1"}, "gpt4_1106_preview", "sft+dpo", "judge-x")
    assert got == [{"instruction": "Q0", "output_1": "ref 0", "output_2": "mine 0", "generator_1": "gpt4_1106_preview",
                    "generator_2": "sft+dpo", "annotator": "judge-x", "preference": 1.75},
                   {"instruction": "Q1", "output_1": "ref 1", "output_2": "mine 1", "generator_1": "gpt4_1106_preview",
                    "generator_2": "sft+dpo", "annotator": "judge-x", "preference": None}]


def offline_hub(cache: Path, n: int) -> None:
    """tatsu-lab/alpaca_eval's two GLM files, small, where an offline hf_hub_download finds them."""
    import random

    repo = cache / "datasets--tatsu-lab--alpaca_eval"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    rng = random.Random(0)
    difficulty = [rng.uniform(-1, 1) for _ in range(n)]
    lines = ["model,index,preference,std_delta_len,instruction_difficulty,not_gamed_baseline"]
    for model, bias in (("gamed_verbose", 1.0), ("gamed_concise", -1.0)):
        for i in range(n):
            delta = bias * rng.uniform(0.5, 1.5)
            lines.append(f"{model},{i},{1 + (rng.random() < 0.5 + 0.3 * bias):d},{delta},{difficulty[i]},False")
    (snapshot / "df_gamed.csv").write_text("\n".join(lines) + "\n")
    (snapshot / "instruction_difficulty.csv").write_text(
        "index,instruction_difficulty\n" + "".join(f"{i},{d}\n" for i, d in enumerate(difficulty)))


@pytest.mark.skipif(alpaca_lc.interpreter() is None, reason="alpaca_eval's virtualenv: scripts/alpaca_eval_venv.sh")
def test_a_win_bought_with_length_counts_less_after_length_control(tmp_path, monkeypatch):
    """A model that wins exactly where its answer is longer than the baseline's: its raw win rate is high,
    alpaca_eval's length-controlled one is lower; per instruction, a predicted preference in (0, 1)."""
    n = 60
    offline_hub(tmp_path / "hub", n)
    rows = [{"id": f"q{i}", "prompt": f"Question {i}?", "response": "x" * (400 if i % 3 else 20),
             "score": 0.95 if i % 3 else 0.05} for i in range(n)]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(alpaca_lc.annotations(rows, {f"q{i}": "y" * 100 for i in range(n)}, "ref", "m", "j")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the child inherits them: the small files above, no hub
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    got = alpaca_lc.compute(path, alpaca_lc.interpreter())
    assert got["win_rate"] == pytest.approx(100 * (0.05 + 0.9 * 2 / 3), abs=0.5)
    assert got["length_controlled_winrate"] < got["win_rate"] - 5
    assert len(got["glm_preference"]) == n and all(0 < p < 1 for p in got["glm_preference"])
    assert sum(got["glm_preference"]) / n == pytest.approx(got["length_controlled_winrate"] / 100)

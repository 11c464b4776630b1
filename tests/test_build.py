"""Each rule of method.md §4 pinned on hand-made records."""

import pytest

from fusechat.build import build_datasets
from fusechat.recipe import BuildConfig
from fusechat.records import Prompt

SOURCES = ["a", "b"]


def sample(pid, domain, source, index, reward=None, correct=None, text=None, finish="stop"):
    return {"prompt_id": pid, "domain": domain, "source": source, "sample_index": index, "seed": 0,
            "text": f"{source}{index}" if text is None else text, "prompt_tokens": 3, "completion_tokens": 2,
            "finish_reason": finish, "reward": reward, "correct": correct, "score_info": ""}


def P(pid, domain, split="any"):
    return Prompt(id=pid, domain=domain, prompt=f"question {pid}", answer="1", split=split)


def build(prompts, samples, **cfg):
    return build_datasets(prompts, samples, BuildConfig(**cfg), SOURCES)


def chosen_rejected(result):
    (pair,) = result.dpo
    return pair["chosen"][0]["content"], pair["rejected"][0]["content"]


def test_instruction_sft_takes_best_over_all_sources():
    r = build([P("p", "instruction", "sft")], [sample("p", "instruction", "a", 0, 0.1), sample("p", "instruction", "b", 0, 0.3),
                                              sample("p", "instruction", "b", 1, 0.2)])
    assert [e["messages"][-1]["content"] for e in r.sft] == ["b0"] and not r.dpo
    assert r.sft[0]["messages"][0] == {"role": "user", "content": "question p"}


def test_instruction_sft_tie_goes_to_first_source_then_lowest_index():
    r = build([P("p", "instruction", "sft")], [sample("p", "instruction", "b", 0, 0.5), sample("p", "instruction", "a", 1, 0.5),
                                              sample("p", "instruction", "a", 2, 0.5)])
    assert r.sft[0]["messages"][-1]["content"] == "a1"


def test_instruction_dpo_same_source_best_vs_worst_in_window():
    r = build([P("p", "instruction", "dpo")], [sample("p", "instruction", "a", 0, 0.20), sample("p", "instruction", "a", 1, 0.15),
                                              sample("p", "instruction", "a", 2, 0.12)])
    assert chosen_rejected(r) == ("a0", "a2")
    assert r.dpo[0]["source"] == "a" and r.dpo[0]["chosen_reward"] == 0.20 and r.dpo[0]["rejected_reward"] == 0.12
    assert not r.sft


@pytest.mark.parametrize("low, high, valid", [(0.10, 0.11, True), (0.10, 0.20, True), (0.10, 0.205, False),
                                              (0.10, 0.105, False), (0.10, 0.10, False)])
def test_window_edges_are_inclusive(low, high, valid):
    r = build([P("p", "instruction", "dpo")], [sample("p", "instruction", "a", 0, high), sample("p", "instruction", "a", 1, low)])
    assert bool(r.dpo) == valid
    if not valid:
        assert r.dropped == {"instruction/no_pair_in_window": 1}


def test_pairs_never_mix_sources_by_default():
    # a: gap 0.3 (outside), b: gap 0.005 (outside); a0 vs b1 would be inside the window but mixes sources.
    samples = [sample("p", "instruction", "a", 0, 0.50), sample("p", "instruction", "a", 1, 0.20),
               sample("p", "instruction", "b", 0, 0.455), sample("p", "instruction", "b", 1, 0.45)]
    assert not build([P("p", "instruction", "dpo")], samples).dpo
    cross = build([P("p", "instruction", "dpo")], samples, pairing="cross-source", gap_window=None)
    assert chosen_rejected(cross) == ("a0", "a1") and cross.dpo[0]["source"] == "a"


def test_cross_source_pairs_global_best_and_worst():
    samples = [sample("p", "instruction", "a", 0, 0.30), sample("p", "instruction", "a", 1, 0.28),
               sample("p", "instruction", "b", 0, 0.25)]
    r = build([P("p", "instruction", "dpo")], samples, pairing="cross-source")
    assert chosen_rejected(r) == ("a0", "b0") and r.dpo[0]["source"] == "a+b"


def test_several_valid_sources_pick_highest_chosen():
    samples = [sample("p", "instruction", "a", 0, 0.30), sample("p", "instruction", "a", 1, 0.25),
               sample("p", "instruction", "b", 0, 0.40), sample("p", "instruction", "b", 1, 0.35)]
    assert chosen_rejected(build([P("p", "instruction", "dpo")], samples)) == ("b0", "b1")


def test_equal_scores_make_no_pair_even_without_window():
    samples = [sample("p", "instruction", "a", 0, 0.3), sample("p", "instruction", "a", 1, 0.3)]
    assert not build([P("p", "instruction", "dpo")], samples).dpo
    assert not build([P("p", "instruction", "dpo")], samples, gap_window=None).dpo
    wide = [sample("p", "instruction", "a", 0, 0.9), sample("p", "instruction", "a", 1, 0.1)]
    assert build([P("p", "instruction", "dpo")], wide, gap_window=None).dpo  # the no-window ablation


def test_single_response_cannot_pair_with_itself():
    assert not build([P("p", "instruction", "dpo")], [sample("p", "instruction", "a", 0, 0.3)]).dpo


def test_math_pair_is_correct_vs_incorrect_of_one_source():
    samples = [sample("m", "math", "a", 0, 0.20, True), sample("m", "math", "a", 1, 0.25, True),
               sample("m", "math", "a", 2, 0.18, False), sample("m", "math", "a", 3, 0.21, False),
               sample("m", "math", "b", 0, 0.90, True)]
    r = build([P("m", "math")], samples)
    assert chosen_rejected(r) == ("a1", "a2") and not r.sft


def test_math_without_valid_pair_goes_to_sft_with_best_correct():
    samples = [sample("m", "math", "a", 0, 0.20, True), sample("m", "math", "a", 1, 0.90, False),
               sample("m", "math", "b", 0, 0.30, True)]
    r = build([P("m", "math")], samples)
    assert not r.dpo and r.sft[0]["messages"][-1]["content"] == "b0" and r.sft[0]["source"] == "b"


def test_math_all_wrong_is_dropped_and_unparseable_gold_is_counted():
    r = build([P("m", "math"), P("n", "math")], [sample("m", "math", "a", 0, 0.2, False), sample("n", "math", "a", 0, None, None)])
    assert not r.sft and not r.dpo
    assert r.dropped == {"math/no_correct": 1, "math/unparseable_gold": 1}


def test_math_without_rewards_pairs_by_correctness_alone():
    samples = [sample("m", "math", "a", 0, None, False), sample("m", "math", "a", 1, None, True),
               sample("m", "math", "a", 2, None, True)]
    assert chosen_rejected(build([P("m", "math")], samples)) == ("a1", "a0")


def test_code_window_is_configurable():
    samples = [sample("c", "code", "a", 0, 0.9, True), sample("c", "code", "a", 1, 0.1, False)]
    r = build([P("c", "code")], samples)
    assert not r.dpo and r.sft  # gap 0.8 is outside the window: the passing answer becomes SFT
    r = build([P("c", "code")], samples, window_domains=["instruction", "math"])
    assert r.dpo and not r.sft
    assert build([P("c", "code")], [sample("c", "code", "a", 0, 0.1, False)]).dropped == {"code/all_failed": 1}


def test_chinese_is_sft_only_with_the_single_response():
    r = build([P("z", "chinese", "sft")], [sample("z", "chinese", "b", 0, text="你好")])
    assert r.sft[0]["messages"][-1]["content"] == "你好" and not r.dpo


def test_truncated_and_empty_responses_never_become_chosen():
    samples = [sample("p", "instruction", "a", 0, 0.9, finish="length"), sample("p", "instruction", "a", 1, 0.5, text="  "),
               sample("p", "instruction", "a", 2, 0.3)]
    r = build([P("p", "instruction", "sft")], samples)
    assert r.sft[0]["messages"][-1]["content"] == "a2"
    assert r.skipped_samples == {"truncated": 1, "empty": 1}
    # A truncated, wrong math answer still serves as a rejected response.
    m = [sample("m", "math", "a", 0, None, True), sample("m", "math", "a", 1, None, False, finish="length")]
    assert chosen_rejected(build([P("m", "math")], m)) == ("a0", "a1")


def test_single_source_and_leave_one_out():
    samples = [sample("p", "instruction", "a", 0, 0.9), sample("p", "instruction", "b", 0, 0.5)]
    assert build([P("p", "instruction", "sft")], samples, sources=["b"]).sft[0]["source"] == "b"
    assert build([P("p", "instruction", "sft")], samples, exclude_sources=["a"]).sft[0]["source"] == "b"
    assert build([P("p", "instruction", "sft")], samples).sft[0]["source"] == "a"


def test_each_prompt_used_once():
    prompts = [P(f"p{i}", "instruction", "sft" if i % 2 else "dpo") for i in range(6)]
    samples = [sample(p.id, "instruction", s, k, 0.1 + 0.02 * k) for p in prompts for s in SOURCES for k in range(3)]
    r = build(prompts, samples)
    used = [e["prompt_id"] for e in r.sft] + [e["prompt_id"] for e in r.dpo]
    assert sorted(used) == sorted(p.id for p in prompts) and len(set(used)) == len(used)


def test_instruction_with_constraints_is_built_by_correctness_like_math():
    kept_vs_broken = Prompt(id="c1", domain="instruction", prompt="Write about tea. Do not use any commas.",
                            constraints=[{"id": "punctuation:no_comma", "kwargs": {}}])
    all_kept = Prompt(id="c2", domain="instruction", prompt="q2", constraints=kept_vs_broken.constraints)
    none_kept = Prompt(id="c3", domain="instruction", prompt="q3", constraints=kept_vs_broken.constraints)
    samples = [sample("c1", "instruction", "a", 0, 0.9, True), sample("c1", "instruction", "a", 1, None, False),
               sample("c2", "instruction", "a", 0, 0.4, True), sample("c2", "instruction", "b", 0, 0.7, True),
               sample("c3", "instruction", "a", 0, None, False)]
    r = build([kept_vs_broken, all_kept, none_kept], samples)
    # kept (judged) vs broken (not judged: only_correct) is a pair whatever the window says
    assert chosen_rejected(r) == ("a0", "a1")
    assert [(e["prompt_id"], e["messages"][-1]["content"]) for e in r.sft] == [("c2", "b0")]  # judge ranks the kept ones
    assert r.dropped == {"instruction/constraints_broken": 1}


def test_an_unscored_sample_never_outranks_a_scored_one():
    """No reward is an unknown reward, not 0.0: it must not beat negative ones, nor be the worst."""
    r = build([P("p", "instruction", "sft")], [sample("p", "instruction", "a", 0, None), sample("p", "instruction", "b", 0, -0.4),
                                              sample("p", "instruction", "b", 1, -0.2)])
    assert r.sft[0]["messages"][-1]["content"] == "b1"
    r = build([P("p", "instruction", "dpo")], [sample("p", "instruction", "a", 0, -0.30), sample("p", "instruction", "a", 1, None),
                                              sample("p", "instruction", "a", 2, -0.35)])
    assert chosen_rejected(r) == ("a0", "a2")
    only = build([P("p", "instruction", "sft")], [sample("p", "instruction", "a", 0, None)])
    assert only.sft[0]["messages"][-1]["content"] == "a0"  # used when nothing scored is there


def test_a_nan_reward_drops_that_sample_only_and_is_counted():
    r = build([P("p", "instruction", "sft"), P("q", "instruction", "sft")],
              [sample("p", "instruction", "a", 0, float("nan")), sample("p", "instruction", "a", 1, 0.1),
               sample("q", "instruction", "b", 0, 0.2)])
    assert [e["messages"][-1]["content"] for e in r.sft] == ["a1", "b0"]
    assert r.skipped_samples == {"nan_reward": 1}


def test_instruction_split_after_pairing_uses_every_prompt_once():
    """The paper's counts: DPO takes prompts with a valid pair, up to 60%, SFT the rest; none dropped."""
    prompts = [P(f"p{i}", "instruction", "dpo" if i % 2 else "sft") for i in range(10)]
    samples = []
    for i in range(10):
        gap = 0.05 if i < 8 else 0.5  # eight prompts can pair, two cannot
        samples += [sample(f"p{i}", "instruction", "a", 0, 0.2 + gap), sample(f"p{i}", "instruction", "a", 1, 0.2)]
    before = build(prompts, samples)
    assert len(before.sft) == 5 and len(before.dpo) == 4 and before.dropped == {"instruction/no_pair_in_window": 1}
    after = build(prompts, samples, instruction_split="pairs")
    assert len(after.dpo) == 6 and len(after.sft) == 4 and not after.dropped
    assert {d["prompt_id"] for d in after.dpo} <= {f"p{i}" for i in range(8)}
    assert {d["prompt_id"] for d in after.dpo} | {e["prompt_id"] for e in after.sft} == {p.id for p in prompts}
    again = build(prompts, samples, instruction_split="pairs")
    assert [d["prompt_id"] for d in again.dpo] == [d["prompt_id"] for d in after.dpo]  # seeded

import pytest

from fusechat.recipe import SandboxConfig
from fusechat.scorers.code import check_code, extract_code
from fusechat.scorers.judge import p_yes
from fusechat.scorers.math import MathChecker


@pytest.fixture(scope="module")
def math_checker():
    checker = MathChecker(timeout_s=10)
    yield checker
    checker.close()


@pytest.mark.parametrize("response, gold, expected", [
    ("The sum is 3 + 4 = 7, so the answer is \\boxed{7}.", "7", True),
    ("So we get \\boxed{-12955}", "-12955", True),
    ("The answer is \\boxed{\\frac{1}{2}}", "0.5", True),
    ("I think it is \\boxed{8}", "7", False),
    ("no idea", "7", False),
])
def test_math_equivalence(math_checker, response, gold, expected):
    assert math_checker.check(response, gold).correct is expected


# Golds as MATH and OpenMathInstruct-2's `expected_answer` write them (bare LaTeX), each with a correct and a
# wrong final answer as a model would box it. The bare-LaTeX ones were "unparseable" before issue 29.
GOLDS = [
    (r"\sqrt{5}", r"\boxed{\sqrt{5}}", r"\boxed{\sqrt{6}}"),
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\dfrac{\sqrt{3}}{2}}", r"\boxed{\frac{\sqrt{2}}{2}}"),
    (r"\pi", r"\boxed{\pi}", r"\boxed{2\pi}"),
    (r"\dfrac{3}{4}", r"\boxed{0.75}", r"\boxed{\frac{4}{3}}"),
    (r"\text{Monday}", r"\boxed{\text{Monday}}", r"\boxed{\text{Tuesday}}"),
    ("x^2+1", r"\boxed{1 + x^2}", r"\boxed{x^2 - 1}"),
    (r"2\sqrt{2}", r"\boxed{\sqrt{8}}", r"\boxed{2}"),
    (r"\infty", r"\boxed{\infty}", r"\boxed{0}"),
    ("(1,2)", r"\boxed{(1, 2)}", r"\boxed{(2, 1)}"),
    (r"\$5", r"The total is \boxed{5} dollars.", r"\boxed{6}"),
    ("1,000", r"\boxed{1000}", r"\boxed{100}"),
    ("-3", "so the answer is $-3$.", r"\boxed{3}"),
]


@pytest.mark.parametrize("gold, right, wrong", GOLDS, ids=[g for g, _, _ in GOLDS])
def test_golds_in_bare_latex_are_scored(math_checker, gold, right, wrong):
    assert math_checker.check(right, gold).correct is True
    assert math_checker.check(wrong, gold).correct is False


def test_unparseable_gold_is_flagged(math_checker):
    assert math_checker.check("\\boxed{3}", "").correct is None


def test_math_timeout_kills_the_worker_and_recovers():
    checker = MathChecker(timeout_s=0.001)
    checker.STARTUP_S = 0  # no import allowance: the first check must overrun
    verdict = checker.check("\\boxed{7}", "7")
    assert verdict.correct is False and verdict.extracted == "timeout"
    checker.timeout_s = 30
    assert checker.check("\\boxed{7}", "7").correct is True  # a fresh worker took over
    checker.close()


def test_extract_code_prefers_the_fenced_function():
    text = "Here:\n```python\ndef f(x):\n    return x + 1\n```\nUsage:\n```\nf(1)\n```"
    assert extract_code(text) == "def f(x):\n    return x + 1"
    assert extract_code("def g():\n    return 1") == "def g():\n    return 1"


def test_code_passes_fails_and_static_check():
    limits = SandboxConfig(timeout_s=5)
    tests = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
    assert check_code("```python\ndef add(a, b):\n    return a + b\n```", tests, limits) == (True, "passed")
    ok, info = check_code("```python\ndef add(a, b):\n    return a - b\n```", tests, limits)
    assert not ok and info.startswith("failed")
    ok, info = check_code("```python\ndef add(a, b) return\n```", tests, limits)
    assert not ok and info.startswith("syntax error")
    ok, info = check_code("```python\ndef add(a, b):\n    while True: pass\n```", tests, SandboxConfig(timeout_s=1))
    assert not ok and info.startswith("timeout")


def test_p_yes_reads_any_case_and_spacing():
    import math

    assert p_yes({"Yes": math.log(0.6), " yes": math.log(0.1), "No": math.log(0.1), "Maybe": math.log(0.2)}) == pytest.approx(0.875)
    assert p_yes({"Hmm": 0.0}) == 0.5


def test_reward_model_batched_equals_one_at_a_time(smol_tokenizer_dir, tmp_path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from fusechat.scorers.reward_model import RewardModel

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    pairs = [("What is 2+2?", "4"), ("Write a poem.", "Roses are red, violets are blue, " * 5), ("Hi", "Hello there! How can I help?")]
    batched = RewardModel(str(tmp_path), batch_size=8, precision="fp32").score(pairs)
    single = RewardModel(str(tmp_path), batch_size=1, precision="fp32").score(pairs)
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(round(s, 4) for s in batched)) == 3  # really scores the content, not a constant


def test_every_backend_speaks_the_same_interface():
    from fusechat.backends.base import Backend
    from fusechat.backends.hf import TransformersBackend
    from fusechat.backends.llamacpp import LlamaCppBackend
    from fusechat.backends.openai_api import OpenAIBackend
    from fusechat.backends.vllm import VLLMBackend

    for cls in (TransformersBackend, LlamaCppBackend, OpenAIBackend, VLLMBackend):
        assert issubclass(cls, Backend)
        for method in ("generate", "first_token_logprobs", "close"):
            assert getattr(cls, method) is not getattr(Backend, method) or method == "close", (cls, method)


def test_judge_reads_do_not_depend_on_order_or_company(tiny_model_dir):
    from fusechat.scorers.judge import judge_messages, open_judge

    pairs = [(f"What is {i} + {i}?", f"It is {2 * i + i % 2}." * (i + 1)) for i in range(5)]
    judge = open_judge(str(tiny_model_dir), "transformers")
    read = lambda pair: judge.backend.first_token_logprobs(judge_messages(*pair))  # noqa: E731
    first = [read(p) for p in pairs]
    assert [read(p) for p in pairs[::-1]][::-1] == first  # exactly: no batching, no padding
    assert len({tuple(d.values()) for d in first}) == len(pairs)  # the read-outs differ by conversation
    assert judge.score(pairs) == judge.score(pairs[::-1])[::-1]
    judge.close()


class FixedJudge:
    def __init__(self):
        self.seen = []

    def score(self, pairs):
        self.seen += [r for _, r in pairs]
        return [0.5 for _ in pairs]


def constraint_sample(text, prompt_id="c", finish_reason="stop"):
    return {"prompt_id": prompt_id, "domain": "instruction", "source": "a", "sample_index": 0, "seed": 0, "text": text,
            "prompt_tokens": 1, "completion_tokens": 1, "finish_reason": finish_reason}


def score_with(reward: dict, samples: list[dict], prompts: dict) -> tuple[list[dict], list[str]]:
    from fusechat.recipe import recipe_from_dict
    from fusechat.score import check_shard, reward_shard, wants_reward

    recipe = recipe_from_dict({"prompts": {"sets": [{"domain": "instruction", "pack": "constraints", "n": 1}]},
                               "sources": [{"name": "a", "model": "m", "backend": "transformers"}],
                               "score": {"reward": {"kind": "judge", "model": "j", **reward}}})
    judge = FixedJudge()
    checked = check_shard(samples, prompts, recipe, None)
    return reward_shard(checked, wants_reward(checked, recipe.score.reward), prompts, judge), judge.seen


def no_comma_prompt(prompt_id="c"):
    from fusechat.records import Prompt

    return Prompt(id=prompt_id, domain="instruction", prompt="Write about tea. Do not use any commas.",
                  constraints=[{"id": "punctuation:no_comma", "kwargs": {}}])


def test_constraint_prompts_are_scored_by_their_checker_and_only_kept_ones_are_judged():
    out, seen = score_with({"only_correct": True}, [constraint_sample("Tea is calm and warm."),
                                                    constraint_sample("Tea, coffee, water.")], {"c": no_comma_prompt()})
    assert [(o["correct"], o["reward"]) for o in out] == [(True, 0.5), (False, None)]
    assert seen == ["Tea is calm and warm."]


def test_only_ranked_judges_only_responses_the_build_can_rank():
    prompts = {"one": no_comma_prompt("one"), "two": no_comma_prompt("two")}
    samples = [
        constraint_sample("Tea is calm.", "one"),  # the prompt's only finished, kept response: nothing to rank
        constraint_sample("Tea is warm and", "one", finish_reason="length"),  # cut off: the build drops it
        constraint_sample("Tea, again.", "one"),  # broken: can only be rejected
        constraint_sample("Tea is green.", "two"),
        constraint_sample("Tea is black.", "two"),
    ]
    out, seen = score_with({"only_ranked": True}, samples, prompts)
    assert seen == ["Tea is green.", "Tea is black."]
    assert [o["reward"] for o in out] == [None, None, None, 0.5, 0.5]
    assert [o["correct"] for o in out] == [True, True, False, True, True]
    # without it, every kept response is judged, the cut-off one too
    _, seen = score_with({"only_correct": True}, samples, prompts)
    assert seen == ["Tea is calm.", "Tea is warm and", "Tea is green.", "Tea is black."]


def test_only_ranked_cannot_pair_with_keeping_truncated_responses():
    from fusechat import FusechatError
    from fusechat.recipe import recipe_from_dict

    with pytest.raises(FusechatError, match="only_ranked"):
        recipe_from_dict({"prompts": {"sets": [{"domain": "instruction", "pack": "constraints", "n": 1}]},
                          "sources": [{"name": "a", "model": "m", "backend": "transformers"}],
                          "score": {"reward": {"kind": "judge", "model": "j", "only_ranked": True}},
                          "build": {"drop_truncated": False}})

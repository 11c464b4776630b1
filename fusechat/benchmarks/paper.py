"""The paper's 14 benchmarks (method.md §6, FuseEval), what each needs, and how fusechat runs it today.

`fusechat eval --list` prints this table, so a user sees, before renting a node, which of the paper's
numbers their run can reproduce under the paper's protocol and which it runs under another protocol
(said so in the report's label). The paper's own numbers per target are here
too, for the report's "paper" column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperBenchmark:
    name: str
    protocol: str  # FuseEval's setting, as the paper ran it
    data: str  # where the items live
    needs: str  # a judge, the sandbox, a GPU (for its size)
    here: str  # how fusechat runs it now, and under which protocol


PAPER_BENCHMARKS = [
    PaperBenchmark("AlpacaEval 2", "length-controlled win rate vs GPT-4-1106, GPT-4 judge", "tatsu-lab/alpaca_eval (805)",
                   "a judge endpoint", "eval.judged [alpaca_eval]: answers for `alpaca_eval`; with eval.pairwise_judge "
                   "a win rate, both orders, vs the base or (`baseline:`) the set's reference outputs, and then "
                   "alpaca_eval's length-controlled win rate (its own virtualenv: scripts/alpaca_eval_venv.sh)"),
    PaperBenchmark("Arena-Hard", "v0.1 win rate vs GPT-4-0314, GPT-4 judge", "lmarena-ai/arena-hard-auto v0.1 (500)",
                   "a judge endpoint", "eval.judged [arena_hard]: answers for arena-hard-auto; with eval.pairwise_judge "
                   "a win rate, both orders, vs the base or (`baseline:`) gpt-4-0314's answers"),
    PaperBenchmark("MT-Bench", "two turns, 1-10 grades, GPT-4 judge with reference answers", "lmsys/mt_bench_human_judgments (80)",
                   "a judge endpoint", "eval.mtbench_graded: both turns, 1-10 with FastChat's prompts and GPT-4's "
                   "reference answers, by any judge endpoint (named in the label); eval.mtbench: a first-turn win "
                   "rate by a local judge (another protocol)"),
    PaperBenchmark("AlignBench", "v1.1, rubric grades 1-10, GPT-4 judge (Chinese)", "github.com/THUDM/AlignBench (683)",
                   "a judge endpoint", "eval.alignbench: graded 1-10 with AlignBench's rubric prompt by any judge endpoint "
                   "(named in the label); AlignBench's overall (reasoning and language halves); greedy answers"),
    PaperBenchmark("LiveBench", "0831 release, ground-truth scorers", "livebench/* (hub sets per category)", "the sandbox",
                   "eval.livebench: the release's 18 tasks by LiveBench's scorers (ported), IFEval's checkers, "
                   "math-verify (AMPS_Hard), and the coding tasks' cases in fusechat's sandbox"),
    PaperBenchmark("MMLU-Pro", "0-shot chain of thought, answer letter extracted", "TIGER-Lab/MMLU-Pro (12,032)", "a GPU (size)",
                   "eval.harness [fusechat_mmlu_pro]: the paper's protocol (fusechat's task file); lm-eval's "
                   "mmlu_pro is 5-shot"),
    PaperBenchmark("MMLU-redux", "0-shot chain of thought", "edinburgh-dawg/mmlu-redux (5,700)", "-",
                   "eval.harness [fusechat_mmlu_redux]: the paper's protocol (fusechat's task files, a group of "
                   "57 subjects, per-item rows kept); lm-eval's mmlu_redux_generative asks for the letter alone"),
    PaperBenchmark("GPQA-Diamond", "0-shot chain of thought, answer letter extracted", "Idavidrein/gpqa diamond (198)", "-",
                   "eval.harness [gpqa_diamond_cot_zeroshot]: lm-eval's 0-shot chain of thought (the paper's "
                   "protocol); the hub set is gated: accept its terms first"),
    PaperBenchmark("GSM8K", "0-shot chain of thought, greedy, 2048 tokens (Qwen2.5-Math harness)", "openai/gsm8k (1,319)", "-",
                   "eval.harness [fusechat_gsm8k]: the paper's protocol (fusechat's task file, math-verify); "
                   "lm-eval's gsm8k is 5-shot"),
    PaperBenchmark("MATH", "0-shot chain of thought, greedy, 2048 tokens, math-verify-style equivalence", "hendrycks MATH test (5,000)",
                   "-", "eval.harness [fusechat_math]: the paper's protocol (fusechat's task files, math-verify; "
                   "a group of 7 subjects, per-item rows kept)"),
    PaperBenchmark("AMC23", "0-shot chain of thought, greedy, 2048 tokens", "math-ai/amc23 (40)", "-",
                   "eval.harness [fusechat_amc23]: the paper's protocol (fusechat's task file, math-verify)"),
    PaperBenchmark("HumanEval", "EvalPlus (HumanEval+), greedy, pass@1", "evalplus/humanevalplus (164)", "the sandbox",
                   "eval.humaneval_plus: pass@1 on EvalPlus's tests in fusechat's sandbox (eval.humaneval: "
                   "HumanEval's own tests)"),
    PaperBenchmark("MBPP", "EvalPlus (MBPP+), greedy, pass@1", "evalplus/mbppplus (378)", "the sandbox",
                   "eval.mbpp_plus: pass@1 on MBPP's and EvalPlus's tests in fusechat's sandbox"),
    PaperBenchmark("LiveCodeBench", "lcb_runner, release_latest, problems 2024-07 to 2024-11", "livecodebench/code_generation_lite",
                   "the sandbox", "eval.livecodebench: every public and private case in fusechat's sandbox, "
                   "lcb_runner's comparison, the paper's date window"),
]

# The paper's numbers (method.md §6, the official README's table): base -> SFT -> SFT+DPO, per benchmark.
PAPER_SCORES = {
    "Llama-3.1-8B-Instruct": {
        "AlpacaEval 2": (28.3, 41.3, 65.4), "Arena-Hard": (28.1, 38.7, 58.2), "MT-Bench": (8.4, 8.5, 9.0),
        "AlignBench": (4.6, 6.3, 6.7), "GSM8K": (85.9, 87.0, 88.0), "MATH": (50.7, 54.7, 55.2), "AMC23": (25.0, 30.0, 37.5),
        "LiveBench": (27.6, 30.2, 32.0), "MMLU-Pro": (50.0, 47.8, 49.2), "MMLU-redux": (67.2, 68.4, 69.2),
        "GPQA-Diamond": (33.8, 37.9, 34.9), "HumanEval": (69.5, 69.5, 71.3), "MBPP": (75.4, 71.4, 72.0),
        "LiveCodeBench": (12.3, 12.6, 13.1),
    },
    # the other targets: AlpacaEval 2 and Arena-Hard, base -> SFT+DPO (no SFT row published)
    "Qwen2.5-7B-Instruct": {"AlpacaEval 2": (33.2, None, 63.6), "Arena-Hard": (50.7, None, 61.4)},
    "gemma-2-9b-it": {"AlpacaEval 2": (51.1, None, 70.2), "Arena-Hard": (40.8, None, 63.4)},
    "Llama-3.2-3B-Instruct": {"AlpacaEval 2": (21.4, None, 54.0), "Arena-Hard": (16.6, None, 30.2)},
    "Llama-3.2-1B-Instruct": {"AlpacaEval 2": (9.7, None, 25.3), "Arena-Hard": (5.1, None, 8.6)},
}


# Where each of the 14 lands in a run's results: fusechat's benchmark key for it.
KEYS = {"AlpacaEval 2": "alpaca_eval", "Arena-Hard": "arena_hard", "MT-Bench": "mtbench_graded", "AlignBench": "alignbench",
        "LiveBench": "livebench", "MMLU-Pro": "harness:fusechat_mmlu_pro", "MMLU-redux": "harness:fusechat_mmlu_redux",
        "GPQA-Diamond": "harness:gpqa_diamond_cot_zeroshot", "GSM8K": "harness:fusechat_gsm8k", "MATH": "harness:fusechat_math",
        "AMC23": "harness:fusechat_amc23", "HumanEval": "humaneval_plus", "MBPP": "mbpp_plus", "LiveCodeBench": "livecodebench"}
# The keys the report puts the paper's row beside: all but AlpacaEval 2's raw win rate (the paper's is
# length-controlled: alpaca_eval_lc) (MT-Bench and AlignBench on their 1-10 scale; HumanEval and MBPP through EvalPlus, whose base or
# plus score the paper reports it does not say; eval.humaneval and eval.mtbench run other protocols: no column).
PAPER_NAME_OF = {key: name for name, key in KEYS.items() if name != "AlpacaEval 2"}
PAPER_NAME_OF["alpaca_eval_lc"] = "AlpacaEval 2"  # the paper's is the length-controlled win rate, not the raw one


def paper_column(target_hub_id: str | None) -> dict[str, str]:
    """benchmark key -> the paper's "base → SFT → SFT+DPO" for this target (%; MT-Bench and AlignBench on their 1-10 scale), where it reports one."""
    rows = PAPER_SCORES.get((target_hub_id or "").rstrip("/").split("/")[-1], {})
    return {key: " → ".join("-" if x is None else f"{x:.1f}" for x in rows[name])
            for key, name in PAPER_NAME_OF.items() if name in rows}


def table() -> list[list[str]]:
    """The rows `fusechat eval --list` prints."""
    return [[b.name, b.protocol, b.data, b.needs, b.here] for b in PAPER_BENCHMARKS]

"""Stage 3, score: correctness (math against gold, code against tests in the sandbox, instruction
constraints by their IFEval checkers) and reward.

Input: `run/prompts/prompts`, `run/sample/samples`. Output: `run/score/scored`, the samples with
`correct`, `reward` and `score_info` added (records.ScoredSample). Resumable by shards of samples:
first every sample's correctness, then the rewards (which, with `reward.only_ranked`, go only where
the build can use them: a judge's time is the stage's cost).
"""

from __future__ import annotations

from collections import Counter

from fusechat import FusechatError, constraints, models
from fusechat.analysis import reward_bias
from fusechat.recipe import Recipe, RewardConfig
from fusechat.records import CHECKED_DOMAINS, Prompt, from_dict
from fusechat.runfolder import Outputs, StageRun
from fusechat.scorers.code import check_many
from fusechat.scorers.judge import open_judge
from fusechat.scorers.math import MathChecker

SHARD_SAMPLES = 64


def open_reward(config: RewardConfig):
    """Load the reward scorer named in the recipe; None when rewards are off."""
    match config.kind:
        case "none":
            return None
        case "reward-model" if config.endpoint:
            from fusechat.scorers.reward_server import RewardServer

            return RewardServer(config.endpoint, config.model, config.batch_size, config.max_length, config.api_key_env)
        case "reward-model":
            from fusechat.scorers.reward_model import RewardModel  # torch: imported only when used

            path = models.resolve(config.model).hf_path()
            return RewardModel(path, config.trust_remote_code, config.batch_size, config.max_length, config.precision)
        case "judge":
            return open_judge(config.model, config.backend)


def check_shard(samples: list[dict], prompts: dict[str, Prompt], recipe: Recipe, math: MathChecker) -> list[dict]:
    """Correctness only: math against gold, code in the sandbox, constraints by their checkers."""
    cfg = recipe.score
    out = [dict(s, correct=None, reward=None, score_info="") for s in samples]
    code_jobs = []
    for s in out:
        prompt = prompts[s["prompt_id"]]
        if s["finish_reason"] == "error" or not s["text"].strip():
            s["score_info"] = "empty response" if s["finish_reason"] != "error" else "sampling error"
            if s["domain"] in CHECKED_DOMAINS or prompt.constraints:
                s["correct"] = False
        elif s["domain"] == "math":
            verdict = math.check(s["text"], prompt.answer)
            s["correct"] = verdict.correct
            s["score_info"] = "unparseable gold answer" if verdict.correct is None else f"answer: {verdict.extracted}"
        elif s["domain"] == "code":
            code_jobs.append(s)
        elif prompt.constraints:
            s["correct"] = constraints.check(s["text"], prompt.constraints, prompt.prompt)
            s["score_info"] = "constraints kept" if s["correct"] else "constraint broken"
    for s, (ok, info) in zip(code_jobs, check_many([(s["text"], prompts[s["prompt_id"]].tests) for s in code_jobs], cfg.code, cfg.workers)):
        s["correct"], s["score_info"] = ok, info
    return out


def wants_reward(checked: list[dict], cfg: RewardConfig) -> list[bool]:
    """Which checked samples get a reward. With `only_ranked`, a reward is only paid for where it can
    change the build's pick: among a prompt's finished, not-failed responses, when there are two or more."""
    wanted = [s["domain"] in cfg.domains and bool(s["text"].strip())
              and not ((cfg.only_correct or cfg.only_ranked) and s["correct"] is False) for s in checked]
    if not cfg.only_ranked:
        return wanted
    wanted = [w and s["finish_reason"] != "length" for w, s in zip(wanted, checked)]
    candidates = Counter(s["prompt_id"] for w, s in zip(wanted, checked) if w)
    return [w and candidates[s["prompt_id"]] > 1 for w, s in zip(wanted, checked)]


def reward_shard(checked: list[dict], wanted: list[bool], prompts: dict[str, Prompt], reward) -> list[dict]:
    out = [dict(s) for s in checked]
    todo = [s for s, w in zip(out, wanted) if w]
    for s, r in zip(todo, reward.score([(prompts[s["prompt_id"]].prompt, s["text"]) for s in todo]) if todo else []):
        s["reward"] = round(float(r), 6)
    return out


def score(run: StageRun) -> Outputs:
    """Two passes, each resumable by shards: correctness for every sample, then rewards, which need the
    whole set's correctness to know which samples are worth a reward (`only_ranked`)."""
    recipe = run.recipe
    prompts = {r["id"]: from_dict(Prompt, r, f"prompt {r.get('id')}") for r in run.read("prompts", "prompts")}
    samples = run.read("sample", "samples")
    sources = {s.name for s in recipe.sources}
    for lineno, s in enumerate(samples, 1):
        if s.get("prompt_id") not in prompts or s.get("source") not in sources:
            what = (f"prompt {s.get('prompt_id')!r:.60}, not in this run's prompts" if s.get("prompt_id") not in prompts
                    else f"source {s.get('source')!r:.60}, not in the recipe's sources")
            raise FusechatError(f"{run.folder.stage_dir('sample') / 'samples.jsonl'}:{lineno}: the sample names {what}")
    starts = range(0, len(samples), SHARD_SAMPLES)
    task = run.progress.add_task("score", total=2 * len(samples))
    math = None
    try:
        for i in starts:
            key = f"checked-{i // SHARD_SAMPLES:05d}"
            if not run.has_shard(key):
                math = math or MathChecker(recipe.score.math_timeout_s)
                run.write_shard(key, check_shard(samples[i : i + SHARD_SAMPLES], prompts, recipe, math))
            run.progress.update(task, advance=len(samples[i : i + SHARD_SAMPLES]))
    finally:
        if math is not None:
            math.close()
    checked = [r for i in starts for r in run.read_shard(f"checked-{i // SHARD_SAMPLES:05d}")]
    wanted = wants_reward(checked, recipe.score.reward) if recipe.score.reward.kind != "none" else [False] * len(checked)
    reward = None
    try:
        for i in starts:
            key = f"scored-{i // SHARD_SAMPLES:05d}"
            if not run.has_shard(key):
                if reward is None and any(wanted[i : i + SHARD_SAMPLES]):
                    reward = open_reward(recipe.score.reward)
                run.write_shard(key, reward_shard(checked[i : i + SHARD_SAMPLES], wanted[i : i + SHARD_SAMPLES], prompts, reward))
            run.progress.update(task, advance=len(checked[i : i + SHARD_SAMPLES]))
    finally:
        if reward is not None:
            reward.close()

    scored = [r for i in starts for r in run.read_shard(f"scored-{i // SHARD_SAMPLES:05d}")]
    counts = {
        "scored": len(scored),
        "correct": dict(Counter(f"{r['domain']}/{r['source']}/{r['correct']}" for r in scored if r["correct"] is not None)),
        "with_reward": sum(r["reward"] is not None for r in scored),
        "reward_bias": reward_bias(scored, [s.name for s in recipe.sources]),
    }
    return Outputs({"scored": scored}, counts)

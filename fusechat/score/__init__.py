"""Stage 3, score: correctness (math against gold, code against tests in the sandbox, instruction
constraints by their IFEval checkers) and reward.

Input: `run/prompts/prompts`, `run/sample/samples`. Output: `run/score/scored`, the samples with
`correct`, `reward` and `score_info` added (records.ScoredSample). Resumable by shards of samples.
"""

from __future__ import annotations

from collections import Counter

from fusechat import constraints, models
from fusechat.analysis import reward_bias
from fusechat.recipe import Recipe, RewardConfig
from fusechat.records import Prompt, from_dict
from fusechat.runfolder import Outputs, StageRun
from fusechat.score.code import check_many
from fusechat.score.judge import open_judge
from fusechat.score.math import MathChecker

SHARD_SAMPLES = 64


def open_reward(config: RewardConfig):
    """Load the reward scorer named in the recipe; None when rewards are off."""
    match config.kind:
        case "none":
            return None
        case "reward-model":
            from fusechat.score.reward_model import RewardModel

            path = models.resolve(config.model).hf_path()
            return RewardModel(path, config.trust_remote_code, config.batch_size, config.max_length)
        case "judge":
            return open_judge(config.model, config.backend)


def score_shard(samples: list[dict], prompts: dict[str, Prompt], recipe: Recipe, math: MathChecker, reward) -> list[dict]:
    cfg = recipe.score
    out = [dict(s, correct=None, reward=None, score_info="") for s in samples]
    code_jobs = []
    for s in out:
        prompt = prompts[s["prompt_id"]]
        if s["finish_reason"] == "error" or not s["text"].strip():
            s["score_info"] = "empty response" if s["finish_reason"] != "error" else "sampling error"
            if s["domain"] in ("math", "code") or prompt.constraints:
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
    if reward is not None:
        todo = [s for s in out if s["domain"] in cfg.reward.domains and s["text"].strip()
                and not (cfg.reward.only_correct and s["correct"] is False)]
        for s, r in zip(todo, reward.score([(prompts[s["prompt_id"]].prompt, s["text"]) for s in todo])):
            s["reward"] = round(float(r), 6)
    return out


def score(run: StageRun) -> Outputs:
    recipe = run.recipe
    prompts = {r["id"]: from_dict(Prompt, r, f"prompt {r.get('id')}") for r in run.read("prompts", "prompts")}
    samples = run.read("sample", "samples")
    shards = [(f"scored-{i // SHARD_SAMPLES:05d}", samples[i : i + SHARD_SAMPLES]) for i in range(0, len(samples), SHARD_SAMPLES)]
    todo = [(key, chunk) for key, chunk in shards if not run.has_shard(key)]
    task = run.progress.add_task("score", total=len(samples), completed=len(samples) - sum(len(c) for _, c in todo))
    if todo:
        math, reward = MathChecker(recipe.score.math_timeout_s), open_reward(recipe.score.reward)
        try:
            for key, chunk in todo:
                run.write_shard(key, score_shard(chunk, prompts, recipe, math, reward))
                run.progress.update(task, advance=len(chunk))
        finally:
            math.close()
            if reward is not None:
                reward.close()

    scored = [r for key, _ in shards for r in run.read_shard(key)]
    counts = {
        "scored": len(scored),
        "correct": dict(Counter(f"{r['domain']}/{r['source']}/{r['correct']}" for r in scored if r["correct"] is not None)),
        "with_reward": sum(r["reward"] is not None for r in scored),
        "reward_bias": reward_bias(scored, [s.name for s in recipe.sources]),
    }
    return Outputs({"scored": scored}, counts)

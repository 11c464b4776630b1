"""Stage 7, eval: the base target, the SFT model and the SFT+DPO model side by side.

Greedy decoding; every score with a 95% confidence interval:
- math: accuracy on held-out reasoning-gym problems (a seed no training set uses, seen texts removed);
- code: HumanEval pass@1, executed in the sandbox;
- instruction: MT-Bench first-turn win rate against the base target: a local judge grades every
  answer with P(Yes) and a question is won when the candidate's grade beats the base's (ties: 0.5;
  always labelled "local judge"); constraint accuracy on writing tasks with a verifiable constraint.
Input: the target and `run/sft/model`, `run/dpo/model` (whichever exist), plus any `eval.extra_models`.
Output: `run/eval/results` (one row per model and benchmark) and `run/eval/items` (every answer).
Resumable: one shard per (model, benchmark) generation and per judged model.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from fusechat import FusechatError
from fusechat.evaluate import constraints, humaneval, mtbench
from fusechat.evaluate.math import held_out_problems
from fusechat.evaluate.stats import bootstrap_mean, wilson
from fusechat.recipe import Recipe, Sampling
from fusechat.sample.backend import Request
from fusechat.train.common import target_path


def models_to_evaluate(recipe: Recipe) -> dict[str, str]:
    models = {"base": target_path(recipe)}
    for stage, name in (("sft", "sft"), ("dpo", "sft+dpo")):
        manifest = Path(recipe.run_path) / stage / "manifest.json"
        if manifest.exists():
            models[name] = json.loads(manifest.read_text())["model"]
    return models | recipe.eval.extra_models


def benchmarks(recipe: Recipe) -> dict[str, list[dict]]:
    cfg = recipe.eval
    out = {}
    if cfg.math is not None:
        prompts_file = Path(recipe.run_path) / "prompts" / "prompts.jsonl"
        seen = {json.loads(line)["prompt"] for line in prompts_file.read_text().splitlines()} if prompts_file.exists() else set()
        out["math"] = held_out_problems(recipe, seen)
    if cfg.humaneval:
        out["humaneval"] = humaneval.problems(cfg.humaneval)
    if cfg.mtbench:
        out["mtbench"] = mtbench.questions(cfg.mtbench)
    if cfg.constraints:
        out["constraints"] = constraints.prompts(cfg.constraints, seed=0)
    return out


def generate_answers(path: str, problems: dict[str, list[dict]], recipe: Recipe) -> dict[str, list[str]]:
    from fusechat.sample.hf import TransformersBackend

    backend = TransformersBackend(path, dtype=recipe.eval.dtype, batch_size=recipe.eval.batch_size)
    greedy = Sampling(temperature=0, max_new_tokens=recipe.eval.max_new_tokens)
    try:
        return {bench: [g.text for g in backend.generate([Request([{"role": "user", "content": p["prompt"]}], 0) for p in items], greedy)]
                for bench, items in problems.items()}
    finally:
        backend.close()


def score_answers(bench: str, items: list[dict], answers: list[str], recipe: Recipe) -> list[float]:
    if bench == "math":
        from fusechat.score.math import MathChecker

        checker = MathChecker(recipe.score.math_timeout_s)
        try:
            return [float(bool(checker.check(a, p["answer"]).correct)) for a, p in zip(answers, items)]
        finally:
            checker.close()
    if bench == "humaneval":
        from fusechat.sandbox import run_python

        limits = recipe.score.code
        return [float(run_python(humaneval.program(a, p) + "\n\n" + p["tests"], limits.timeout_s, limits.memory_mb,
                                 limits.max_output_bytes).passed) for a, p in zip(answers, items)]
    if bench == "constraints":
        return [float(constraints.check(a, p["constraint"])) for a, p in zip(answers, items)]
    return []  # mtbench is judged against the base, below


def summarise(model: str, bench: str, scores: list[float], judge: str = "") -> dict:
    n = len(scores)
    mean = sum(scores) / n if n else float("nan")
    low, high = bootstrap_mean(scores) if bench == "mtbench" else wilson(sum(scores), n)
    label = {"math": "held-out math accuracy", "humaneval": "HumanEval pass@1",
             "mtbench": f"MT-Bench win rate vs base (local judge: {judge}, P(Yes) grades)",
             "constraints": "verifiable-constraint accuracy"}[bench]
    return {"model": model, "benchmark": bench, "score": mean, "ci_low": low, "ci_high": high, "n": n, "label": label}


def run_eval(recipe: Recipe, force: bool = False, progress=None) -> dict:
    from fusechat.runfolder import Stage
    from fusechat.score import open_judge

    models = models_to_evaluate(recipe)
    problems = benchmarks(recipe)
    config = {"eval": recipe.eval.model_dump(), "models": models, "mtbench_scoring": "p-yes-grades"}
    fingerprints = [json.loads((Path(recipe.run_path) / s / "manifest.json").read_text())["output_fingerprint"]
                    for s in ("sft", "dpo") if (Path(recipe.run_path) / s / "manifest.json").exists()]
    stage = Stage(recipe.run_path, "eval", config, ":".join(fingerprints) or "base-only")
    if stage.is_done() and not force:
        return stage.manifest() | {"skipped": True}
    stage.begin()

    task = progress.add_task("eval", total=len(models) * (1 + ("mtbench" in problems))) if progress else None
    items = []
    for name, path in models.items():
        key = "answers-" + "".join(c if c.isalnum() else "_" for c in name)
        if not stage.has_shard(key):
            answers = generate_answers(path, problems, recipe)
            rows = []
            for bench, bench_items in problems.items():
                scores = score_answers(bench, bench_items, answers[bench], recipe)
                for i, (p, a) in enumerate(zip(bench_items, answers[bench])):
                    rows.append({"model": name, "benchmark": bench, "id": p["id"], "prompt": p["prompt"], "response": a,
                                 "gold": p.get("answer") or json.dumps(p.get("constraint") or ""), "score": scores[i] if scores else None})
            stage.write_shard(key, rows)
        items += stage.read_shard(key)
        if progress:
            progress.update(task, advance=1)

    judge_name = recipe.eval.judge or recipe.score.reward.model
    if "mtbench" in problems and len(models) > 1 and judge_name is None:
        raise FusechatError("eval.mtbench needs a judge: set eval.judge (or score.reward.model)")
    if "mtbench" in problems and len(models) > 1:
        # Every model's answers get the judge's P(Yes) grade (the base's too); a candidate wins a
        # question when its grade beats the base's. (Pairwise A/B prompts gave the 1.5B judge no signal.)
        judge, grades = None, {}
        for name in models:
            key = "graded-" + "".join(c if c.isalnum() else "_" for c in name)
            if not stage.has_shard(key):
                if judge is None:
                    judge = open_judge(judge_name, recipe.eval.judge_backend, slots=4)
                mine = [r for r in items if r["model"] == name and r["benchmark"] == "mtbench"]
                marks = judge.score([(r["prompt"], r["response"]) for r in mine])
                stage.write_shard(key, [{"id": r["id"], "grade": g} for r, g in zip(mine, marks)])
            grades[name] = {row["id"]: row["grade"] for row in stage.read_shard(key)}
            if progress:
                progress.update(task, advance=1)
        if judge is not None:
            judge.close()
        for r in items:
            if r["benchmark"] == "mtbench" and r["model"] != "base":
                r["score"] = mtbench.win(grades[r["model"]][r["id"]], grades["base"][r["id"]])

    by = defaultdict(list)
    for r in items:
        if r["score"] is not None:
            by[(r["model"], r["benchmark"])].append(r["score"])
    results = [summarise(m, b, by[(m, b)], judge_name) for m in models for b in problems if by[(m, b)]]
    counts = {f"{r['model']}/{r['benchmark']}": round(r["score"], 4) for r in results}
    return stage.finish({"results": results, "items": items}, counts, models=models)

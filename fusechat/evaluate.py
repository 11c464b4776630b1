"""Stage 7, eval: the base target, the SFT model and the SFT+DPO model side by side.

Greedy decoding; every score with a 95% confidence interval. Each benchmark is declared in its own
module of fusechat.benchmarks (its items, scorer, label, whether it is a win rate); this stage runs them:
- math: accuracy on held-out reasoning-gym problems (a seed no training set uses, seen texts removed);
- code: HumanEval pass@1, executed in the sandbox;
- instruction: MT-Bench first-turn win rate against the base target: a local judge grades every
  answer with P(Yes) and a question is won when the candidate's grade beats the base's (ties: 0.5;
  always labelled "local judge"); constraint accuracy on writing tasks with a verifiable constraint;
- any lm-evaluation-harness tasks (`eval.harness`, fusechat.benchmarks.harness), with lm-eval's errors;
- the paper's benchmarks (`fusechat eval --list`): EvalPlus's, LiveCodeBench and LiveBench scored by their
  own rules, and the judged ones (MT-Bench's 1-10, AlignBench, AlpacaEval 2 and Arena-Hard) graded by a
  judge endpoint once every model has answered (grade_by_judge, judge_pairwise), AlpacaEval 2's
  length-controlled win rate by alpaca_eval (length_controlled).
Input: the target and `run/sft/model`, `run/dpo/model` (whichever exist), plus any `eval.extra_models`.
Output: `run/eval/results` (one row per model and benchmark) and `run/eval/items` (every answer).
Resumable: one shard per (model, benchmark) generation and per judged model.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from fusechat import FusechatError, benchmarks
from fusechat.backends.base import Request
from fusechat.backends.factory import open_backend
from fusechat.cards import model_card
from fusechat.benchmarks import alignbench, alpaca_lc, judged, mtbench, mtbench_graded
from fusechat.benchmarks.harness import run_harness
from fusechat.hardware import release_memory
from fusechat.models import target_path
from fusechat.recipe import Recipe, Sampling, Source, eval_judge
from fusechat.records import stable_id
from fusechat.runfolder import Outputs, StageRun, write_atomic
from fusechat.scorers.judge import open_judge
from fusechat.scorers.math import MathChecker
from fusechat.stats import bootstrap_mean, wilson


def models_to_evaluate(run: StageRun) -> dict[str, str]:
    wanted = run.recipe.eval.models
    models = {"base": target_path(run.recipe)} if "base" in wanted else {}
    for stage, name in (("sft", "sft"), ("dpo", "sft+dpo")):
        if name in wanted and run.manifest(stage):
            models[name] = run.model(stage)
    return models | run.recipe.eval.extra_models


def training_texts(run: StageRun) -> set[str]:
    """The user turns the run trained on: no held-out item may be one of them."""
    seen = {r["prompt"] for r in run.read("prompts", "prompts")} if run.manifest("prompts") else set()
    if run.recipe.data is not None and run.manifest("build"):  # imported sets: their user turns are training text
        seen |= {m["content"] for r in run.read("build", "sft") for m in r["messages"] if m["role"] == "user"}
        seen |= {m["content"] for r in run.read("build", "dpo") for m in r["prompt"] if m["role"] == "user"}
    return seen


def generate_answers(path: str, problems: dict[str, list[dict]], recipe: Recipe, on_batch=None,
                     second: dict | None = None) -> dict[str, list[str]]:
    """Greedy answers to every benchmark's prompts, through the same backend interface as sampling.

    Benchmarks with the same length cap go to the backend as one list: on a CPU one batch of 90 costs
    about what a batch of 20 does, and a small benchmark alone would pay a whole batch's steps. Items with
    `turns` (MT-Bench) get their second turn after the model's own first answer, into `second`."""
    greedy = Sampling(temperature=0, max_new_tokens=recipe.eval.max_new_tokens)
    source = Source(name="eval", model=path, backend=recipe.eval.backend or "transformers", dtype=recipe.eval.dtype,
                    batch_size=recipe.eval.batch_size, sampling=greedy)
    capped = {bench: greedy.model_copy(update={"max_new_tokens": benchmarks.BENCHMARKS[bench].max_new_tokens(recipe)})
              for bench in problems}
    answers = {}
    with open_backend(source) as backend:
        backend.on_batch = on_batch  # answers as they finish, for the stage's progress
        for sampling in {s.max_new_tokens: s for s in capped.values()}.values():
            benches = [b for b in problems if capped[b].max_new_tokens == sampling.max_new_tokens]
            requests = [Request([{"role": "user", "content": p["prompt"]}], 0) for b in benches for p in problems[b]]
            texts = iter([g.text for g in backend.generate(requests, sampling)])
            answers |= {b: [next(texts) for _ in problems[b]] for b in benches}
        for bench in [b for b in problems if problems[b] and len(problems[b][0].get("turns") or []) > 1]:
            requests = [Request([{"role": "user", "content": p["turns"][0]}, {"role": "assistant", "content": a},
                                 {"role": "user", "content": p["turns"][1]}], 0) for p, a in zip(problems[bench], answers[bench])]
            texts = [g.text for g in backend.generate(requests, capped[bench])]
            if second is not None:
                second[bench] = texts
    return {bench: answers[bench] for bench in problems}


def score_answers(bench: str, items: list[dict], answers: list[str], recipe: Recipe,
                  math: MathChecker | None = None) -> list[float] | None:
    """1.0 / 0.0 per answer by the benchmark's own scorer (fusechat.benchmarks: the score stage's math-verify
    check, the sandboxed code check, IFEval's checkers); None where a judge decides after every model answered.
    `math`: a checker to reuse (its worker process pays sympy's import once for every model)."""
    return benchmarks.BENCHMARKS[bench].score(items, answers, recipe, math)


def shard_key(kind: str, model: str) -> str:
    """A file name for a model's shard; the hash keeps names like `a.b` and `a_b` apart."""
    return f"{kind}-{''.join(c if c.isalnum() else '_' for c in model)}-{stable_id(model)[:8]}"


def summarise(model: str, bench: str, rows: list[dict], judge: str = "") -> dict:
    """One model's score on one benchmark from its scored item rows: the mean, or the benchmark's own
    aggregate where it declares one (`summary`: AlignBench's two halves), with a 95% interval."""
    scores = [r["score"] for r in rows]
    n = len(scores)
    mean = sum(scores) / n if n else float("nan")
    # pass/fail scores get Wilson's interval; win rates and grades (MT-Bench's 1-10) a bootstrap one
    graded = benchmarks.is_win_rate(bench) or any(x not in (0.0, 1.0) for x in scores)
    low, high = bootstrap_mean(scores) if graded else wilson(sum(scores), n)
    own = getattr(benchmarks.BENCHMARKS.get(bench), "summary", None)
    if own is not None and n:
        mean, low, high = own(rows)
    return {"model": model, "benchmark": bench, "score": mean, "ci_low": low, "ci_high": high, "n": n,
            "label": benchmarks.label(bench, judge)}


def evaluate(run: StageRun) -> Outputs:
    recipe = run.recipe
    models = models_to_evaluate(run)
    problems = benchmarks.problems(recipe, training_texts(run) if recipe.eval.math is not None else set())
    # answers a model (MT-Bench's second turns too); the local MT-Bench judge's grading: one step
    per_model = sum(len(b) * (2 if b and len(b[0].get("turns") or []) > 1 else 1) for b in problems.values())
    task = run.progress.add_task("eval", total=len(models) * (per_model + ("mtbench" in problems)))
    items, harness_results, math = [], [], MathChecker(recipe.score.math_timeout_s)  # its worker starts at the first check
    try:
        for name, path in models.items():
            key = shard_key("answers", name)
            answered = [0]

            def on_batch(n: int) -> None:
                answered[0] += n
                run.progress.update(task, advance=n)

            if not run.has_shard(key):
                second = {}
                answers = generate_answers(path, problems, recipe, on_batch, second) if problems else {}
                rows = []
                for bench, bench_items in problems.items():
                    scores = score_answers(bench, bench_items, answers[bench], recipe, math)
                    for i, (p, a) in enumerate(zip(bench_items, answers[bench])):
                        rows.append({"model": name, "benchmark": bench, "id": p["id"], "prompt": p["prompt"], "response": a,
                                     "gold": p.get("answer") or json.dumps(p.get("constraints") or ""),
                                     "score": scores[i] if scores else None}
                                    | ({"turn_2": second[bench][i]} if bench in second else {})
                                    | ({"group": p["group"]} if "group" in p else {}))  # a benchmark's own aggregate reads it
                run.write_shard(key, rows)
            items += run.read_shard(key)
            run.progress.update(task, advance=per_model - answered[0])  # a finished shard's, over-long prompts'
        for name, path in models.items():
            if not recipe.eval.harness:
                break
            key = shard_key("harness", name)
            if not run.has_shard(key):  # lm-eval's summaries (with its standard errors) and its per-item scores
                summary, per_item = run_harness(path, recipe.eval)
                release_memory()  # lm-eval's model is unreachable now: its GPU memory goes before the next one loads
                run.write_shard(key, [dict(r, model=name, kind="summary") for r in summary]
                                + [dict(r, model=name, kind="item") for r in per_item])
            rows = run.read_shard(key)
            items += [{k: v for k, v in r.items() if k != "kind"} for r in rows if r["kind"] == "item"]
            harness_results += [{k: v for k, v in r.items() if k not in ("kind", "metric", "filter")}
                                for r in rows if r["kind"] == "summary"]
    finally:
        math.close()

    judge_name = eval_judge(recipe)
    if "mtbench" in problems and len(models) > 1 and judge_name is None:
        raise FusechatError("eval.mtbench needs a judge: set eval.judge (or score.reward.model)")
    if "mtbench" in problems and len(models) > 1:
        # Every model's answers get the judge's P(Yes) grade (the base's too); a candidate wins a
        # question when its grade beats the base's. (Pairwise A/B prompts gave the 1.5B judge no signal.)
        judge, grades = None, {}
        try:
            for name in models:
                key = shard_key("graded", name)
                if not run.has_shard(key):
                    if judge is None:
                        judge = open_judge(judge_name, recipe.eval.judge_backend)
                    mine = [r for r in items if r["model"] == name and r["benchmark"] == "mtbench"]
                    marks = judge.score([(r["prompt"], r["response"]) for r in mine])
                    run.write_shard(key, [{"id": r["id"], "grade": g} for r, g in zip(mine, marks)])
                grades[name] = {row["id"]: row["grade"] for row in run.read_shard(key)}
                run.progress.update(task, advance=1)
        finally:
            if judge is not None:
                judge.close()
        for r in items:
            if r["benchmark"] == "mtbench" and r["model"] != "base":
                r["score"] = mtbench.win(grades[r["model"]][r["id"]], grades["base"][r["id"]])

    judge_label, extra = {}, {"models": models}
    if "livebench" in problems:
        judge_label["livebench"] = recipe.eval.livebench.release  # its label's one slot: no judge, a release
    if "mtbench_graded" in problems:  # both turns of every model graded 1-10 by the judge endpoint
        grade_mtbench(run, models, items, problems["mtbench_graded"])
        judge_label["mtbench_graded"] = recipe.eval.mtbench_graded.judge.model
    if "alignbench" in problems:  # every model's answers graded 1-10 with AlignBench's rubric
        grade_alignbench(run, models, items, problems["alignbench"])
        judge_label["alignbench"] = recipe.eval.alignbench.judge.model
    files = write_official_answers(run, models, items)
    if recipe.eval.pairwise_judge and recipe.eval.judged:
        # the judge's consistency, per model and set; each set's baseline named in its label beside the judge
        extra["both_orders_agree"], against = judge_pairwise(run, models, items, problems)
        judge_label |= {bench: f"{recipe.eval.pairwise_judge.model}; vs {baseline}" for bench, baseline in against.items()}
        lc = next((spec for spec in recipe.eval.judged if spec.format == "alpaca_eval" and spec.baseline), None)
        if lc is not None:  # AlpacaEval 2 against its own baseline: alpaca_eval's length-controlled win rate
            missing = length_controlled(run, models, items, problems["alpaca_eval"], lc)
            judge_label["alpaca_eval_lc"] = judge_label["alpaca_eval"]
            if missing:
                extra["alpaca_eval_lc"] = missing
    by = defaultdict(list)
    for r in items:
        if r["score"] is not None:
            by[(r["model"], r["benchmark"])].append(r)
    benches = list(problems) + [alpaca_lc.NAME] * any(r["benchmark"] == alpaca_lc.NAME for r in items)
    results = [summarise(m, b, by[(m, b)], judge_label.get(b, judge_name)) for m in models for b in benches if by[(m, b)]]
    results += harness_results
    counts = {f"{r['model']}/{r['benchmark']}": round(r["score"], 4) for r in results}
    for name, stage in (("sft", "sft"), ("sft+dpo", "dpo")):  # the trained models' cards gain their scores
        if name in models and (Path(models[name]) / "README.md").is_file():
            write_atomic(Path(models[name]) / "README.md", model_card(recipe, stage, recipe.target.model, results))
    return Outputs({"results": results, "items": items}, counts, files=files, extra=extra)


def write_official_answers(run: StageRun, models: dict[str, str], items: list[dict]) -> dict:
    """AlpacaEval / Arena-Hard answers in the official tools' files (fusechat.benchmarks.judged)."""
    folders = {}
    for spec in run.recipe.eval.judged:
        for name in models:
            rows = [r for r in items if r["model"] == name and r["benchmark"] == spec.format]
            judged.write_official(run.work_dir, spec.format, name, rows)
        folders[spec.format] = run.work_dir / spec.format
    return folders


def grade_mtbench(run: StageRun, models: dict[str, str], items: list[dict], questions: list[dict]) -> None:
    """Each model's two MT-Bench turns graded by the endpoint with FastChat's prompts; the items get the mean of
    their graded turns, and keep the judge's ratings for the report's data viewer."""
    prompts = {}
    by_id = {q["id"]: q for q in questions}

    def messages(r: dict) -> list[list[dict]]:
        if not prompts:  # read once, when the judge is first needed
            prompts["all"] = mtbench_graded.judge_prompts()
        return [mtbench_graded.judge_messages(prompts["all"], by_id[r["id"]], (r["response"], r["turn_2"]), turn)
                for turn in (1, 2)]

    def read(r: dict, texts: list[str]) -> None:
        r["grades"] = [mtbench_graded.rating(text) for text in texts]
        r["score"] = mtbench_graded.question_score(r["grades"])

    grade_by_judge(run, models, items, "mtbench_graded", run.recipe.eval.mtbench_graded.judge, messages, read)


def grade_alignbench(run: StageRun, models: dict[str, str], items: list[dict], questions: list[dict]) -> None:
    """Each model's AlignBench answers graded by the endpoint with AlignBench's rubric (its overall grade)."""
    cfg = run.recipe.eval.alignbench
    folder = alignbench.files(cfg.data)
    by_id = {q["id"]: q for q in questions}

    def read(r: dict, texts: list[str]) -> None:
        r["score"] = alignbench.rating(texts[0])

    grade_by_judge(run, models, items, "alignbench", cfg.judge,
                   lambda r: [alignbench.judge_messages(folder, by_id[r["id"]], r["response"])], read)


def reach_judge(connect):
    """The judge's client; an unreachable judge says that the answers are kept (a node that served the target
    can serve the judge next, and the stage picks up at the grading)."""
    try:
        return connect()
    except FusechatError as e:
        raise FusechatError(f"judge {e}; every model's answers are saved: start the judge and run `fusechat eval` "
                            "again to grade them") from None


def grade_by_judge(run: StageRun, models: dict[str, str], items: list[dict], bench: str, cfg, messages, read) -> None:
    """Every model's answers to `bench` graded by a judge endpoint, one shard a model (a killed stage asks the
    judge again only for the models it had not finished). `messages(row)`: the judge conversations for one
    answer; `read(row, texts)`: sets the row's score from the judge's replies, which the row keeps for the
    report's data viewer."""
    from fusechat.backends.openai_api import OpenAIBackend

    backend = None
    for name in models:
        mine = [r for r in items if r["model"] == name and r["benchmark"] == bench]
        key = shard_key(bench.replace("_", "-"), name)  # mtbench-graded: the name it had
        if not run.has_shard(key):
            backend = backend or reach_judge(lambda: OpenAIBackend(cfg.endpoint, cfg.model, concurrency=cfg.concurrency,
                                                                   api_key_env=cfg.api_key_env))
            asked = [messages(r) for r in mine]
            requests = [Request(m, 0) for conversations in asked for m in conversations]
            texts = iter([g.text for g in backend.generate(requests, Sampling(temperature=0, max_new_tokens=2048))])
            run.write_shard(key, [{"id": r["id"], "judgments": [next(texts) for _ in a]} for r, a in zip(mine, asked)])
        got = {row["id"]: row["judgments"] for row in run.read_shard(key)}
        for r in mine:
            r["judgments"] = got[r["id"]]
            read(r, got[r["id"]])


def length_controlled(run: StageRun, models: dict[str, str], items: list[dict], questions: list[dict], spec) -> str | None:
    """Each model's AlpacaEval 2 judgments against the set's baseline as alpaca_eval's annotations (written to
    eval/alpaca_eval/annotations/), and, where alpaca_eval's virtualenv is here, its length-controlled win
    rate: one item row per instruction (benchmark alpaca_eval_lc, the GLM's predicted preference), one shard
    a model. Returns a sentence when the rate cannot be computed here."""
    name, answers = judged.baseline_answers(spec, questions)
    judge, python = run.recipe.eval.pairwise_judge.model, alpaca_lc.interpreter()
    folder, missing = run.work_dir / "alpaca_eval" / "annotations", None
    for model in models:
        mine = [r for r in items if r["model"] == model and r["benchmark"] == "alpaca_eval"]
        path = folder / f"{model}.json"
        write_atomic(path, json.dumps(alpaca_lc.annotations(mine, answers, name, model, judge), ensure_ascii=False))
        key = shard_key("alpaca-lc", model)
        if not run.has_shard(key):
            if python is None:
                missing = ("not computed: alpaca_eval needs its own virtualenv (scripts/alpaca_eval_venv.sh); the "
                           f"annotations are in {folder}")
                continue
            got = alpaca_lc.compute(path, python)
            run.write_shard(key, [{"id": r["id"], "glm_preference": p} for r, p in zip(mine, got["glm_preference"])])
        predicted = {row["id"]: row["glm_preference"] for row in run.read_shard(key)}
        items += [{k: r[k] for k in ("model", "id", "prompt", "response", "gold")}
                  | {"benchmark": alpaca_lc.NAME, "score": predicted[r["id"]]} for r in mine]
    return missing


def judge_pairwise(run: StageRun, models: dict[str, str], items: list[dict], questions: dict) -> tuple[dict, dict]:
    """Every model judged against the baseline, both orders (fusechat.benchmarks.judged): the set's own
    baseline answers where the recipe gives them (every model, the base too), else the run's baseline model
    (every other model). The items get their scores; returned: "model/set" -> the share of questions on
    which both orders agree, and each set's baseline name for its label."""
    cfg = run.recipe.eval
    client, agreement, theirs, against = None, {}, {}, {}
    for spec in cfg.judged:
        if spec.baseline:
            against[spec.format], answers = judged.baseline_answers(spec, questions[spec.format])
            theirs |= {(spec.format, qid): text for qid, text in answers.items()}
        else:
            against[spec.format] = cfg.judged_baseline
            theirs |= {(r["benchmark"], r["id"]): r["response"] for r in items
                       if r["model"] == cfg.judged_baseline and r["benchmark"] == spec.format}
    for name in models:
        mine = [r for r in items if r["model"] == name and r["benchmark"] in against and name != against[r["benchmark"]]]
        if not mine:
            continue
        key = shard_key("pairwise", name)
        if not run.has_shard(key):
            client = client or reach_judge(lambda: judged.PairwiseJudgeClient(cfg.pairwise_judge))
            verdicts = client.verdicts([(r["prompt"], r["response"], theirs[(r["benchmark"], r["id"])]) for r in mine])
            run.write_shard(key, [{"benchmark": r["benchmark"], "id": r["id"], "candidate_first": v[0], "baseline_first": v[1]}
                                  for r, v in zip(mine, verdicts)])
        got = {(v["benchmark"], v["id"]): v for v in run.read_shard(key)}
        for r in mine:
            r["score"] = judged.item_score(got[(r["benchmark"], r["id"])]["candidate_first"],
                                           got[(r["benchmark"], r["id"])]["baseline_first"])
        for bench in against:
            flags = [judged.agrees(v["candidate_first"], v["baseline_first"]) for v in got.values() if v["benchmark"] == bench]
            if flags:
                agreement[f"{name}/{bench}"] = round(sum(flags) / len(flags), 4)
    return agreement, against

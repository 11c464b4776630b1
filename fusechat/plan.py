"""`fusechat plan`: what a recipe will cost before any work: work per stage, memory fit, time, disk.

It sits beside the pipeline, not under it: it reads finished stages through the run folder, asks the
prompts and import stages for their work through their public functions, and takes each model's size
and memory fit from fusechat.modelfacts (configs only, never weights). Time comes from throughput
figures, each labelled with where it came from:
- a finished stage of an earlier run in the same run folder (its measured tokens/s and lengths);
- `fusechat plan --calibrate` (fusechat.calibrate): a short measurement on this machine (a few real
  prompts per source, a few judgments, a few training steps of the target), cached in the fusechat
  cache folder;
- on GPUs, a roofline: an H100's bf16 rate at the utilisation BENCHMARKS.md assumes for planning (an
  estimate, labelled so; our own H100 figures are for a 0.5B model, too small to scale from);
- on a CPU with nothing calibrated, the same roofline from the CPU reference run in BENCHMARKS.md (the
  default run's FLOP/s per core, scaled by parameters, cores and bf16 units; labelled an estimate).
A stage already finished in the run folder shows the seconds it took.
Nothing estimates a whole fusion pipeline, hence this module.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fusechat import FusechatError, benchmarks
from fusechat.catalog import cache_dir
from fusechat.hardware import cpu_has_bf16, describe, ram_gib, usable_cores
from fusechat.benchmarks.harness import TASK_SIZES
from fusechat.import_data import data_rows
from fusechat.launch import chosen_config
from fusechat.modelfacts import GIB, Arch, Fit, generation_fit, model_arch, tensor_parallel_for, training_fit
from fusechat.prompts import collect_prompts
from fusechat.recipe import Recipe
from fusechat.records import CHECKED_DOMAINS
from fusechat.runfolder import RunFolder

PROMPT_TOKENS = 256  # a typical chat prompt, for KV-cache and training lengths when nothing is measured
DEFAULT_LENGTH_SHARE = 0.5  # expected answer length as a share of max_new_tokens when nothing is measured
KEPT_SHARE = 0.5  # with `only_correct`, the share of checked answers assumed correct (and so rewarded)
# A checked prompt ("any") becomes a DPO pair when one source has a right and a wrong answer, an SFT
# example when only right ones exist, nothing when none is right; until a build says, assumed in these
# shares (the CPU runs measured 0.24-0.27 SFT, 0.25-0.66 pairs: math pairs easily, constraints less).
ANY_SPLIT = {"sft": 0.3, "dpo": 0.5}
# Planning assumptions for GPUs (BENCHMARKS.md, "Planning figures"): an H100's dense bf16 rate and the
# share of it each kind of work reaches on models of billions of parameters. A token costs 2 x params
# FLOPs to generate or score, 6 x params to train on (8 x params for DPO's extra reference pass).
H100_FLOPS = 989e12
UTILISATION = {"generate": 0.15, "score": 0.30, "sft": 0.30, "dpo": 0.30}
FLOPS_PER_PARAM = {"generate": 2, "score": 2, "sft": 6, "dpo": 8}
# A CPU with no calibration: FLOP/s per core the default run reached on the reference CPU (BENCHMARKS.md,
# 2026-12-06, 2-core AMD EPYC with AVX512-BF16): sampling 2 x params x tokens/s = 36 GFLOP/s a core
# (SmolLM2-135M) and 55 (Qwen-0.5B), evaluation ~50, DPO 8 x params x tokens/s = 78. On a CPU without
# bf16 units decoding ran 3.1-3.5x slower and training ~2x (BENCHMARKS.md, "a CPU without bf16 units").
CPU_FLOPS_PER_CORE = {"generate": 45e9, "score": 45e9, "sft": 60e9, "dpo": 60e9}
CPU_NO_BF16_SLOWER = {"generate": 3.3, "score": 3.3, "sft": 2.0, "dpo": 2.0}
SERVED_ON_CPU = 0.5  # llama.cpp and vLLM-CPU decoded at about half transformers' batched rate (BENCHMARKS.md)
MATH_CHECK_S = 0.002  # one math-verify check in the worker: 1.9 ms measured (BENCHMARKS.md, benchmarks/math_check.py)

# ---- work and time ----------------------------------------------------------------------------------


@dataclass
class Row:
    stage: str
    what: str  # the model or part of the stage
    work: str
    tokens: float = 0.0
    seconds: float | None = None
    basis: str = ""  # where the speed figure came from
    fit: Fit | None = None


@dataclass
class Plan:
    recipe: str
    hardware: str
    rows: list[Row] = field(default_factory=list)
    disk_gib: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(r.seconds or 0 for r in self.rows)

    def problems(self) -> list[str]:
        return [f"{r.stage} {r.what}: {r.fit.advice}" for r in self.rows if r.fit and not r.fit.ok]


def prompt_counts(recipe: Recipe, folder: RunFolder) -> tuple[Counter, Counter, str]:
    """Prompts per domain and per domain/split: from the run folder when made, else built in memory."""
    made = folder.manifest("prompts")
    if made:
        return Counter(made["counts"]["by_domain"]), Counter(made["counts"]["by_split"]), "the run folder's prompts"
    try:
        prompts, _ = collect_prompts(recipe)  # packs, files and datasets, as the stage reads them
    except FusechatError as e:  # files not here yet (a cluster recipe planned elsewhere): the declared counts
        if any(spec.n is None for spec in recipe.prompts.sets):
            raise FusechatError(f"{e}; `fusechat plan` needs the prompts, or `n` on every prompt set") from None
        by_domain = Counter()
        for spec in recipe.prompts.sets:
            by_domain[spec.domain] += spec.n
        by_split = Counter({f"{d}/{'sft' if d == 'chinese' else 'any'}": n for d, n in by_domain.items()})
        if by_domain["instruction"]:  # the seeded 40:60 split of open instruction prompts
            sft = round(by_domain["instruction"] * recipe.prompts.sft_fraction)
            del by_split["instruction/any"]
            by_split.update({"instruction/sft": sft, "instruction/dpo": by_domain["instruction"] - sft})
        return by_domain, by_split, "each set's `n` (its files are not readable here)"
    return (Counter(p.domain for p in prompts), Counter(f"{p.domain}/{p.split}" for p in prompts),
            "the recipe's prompt sets")


def imported_counts(recipe: Recipe, folder: RunFolder) -> tuple[Counter, Counter, str]:
    """A `data:` recipe's SFT examples and DPO pairs: the build's when made, else the sets' rows."""
    cfg, by_split = recipe.data, Counter()
    built = folder.manifest("build")
    if built:
        counts = built["counts"]
        by_split.update({f"{d}/sft": n for d, n in counts["sft"].items()} | {f"{d}/dpo": n for d, n in counts["dpo"].items()})
    else:
        for kind, name in (("sft", cfg.sft), ("dpo", cfg.dpo)):
            if not name:
                continue
            try:
                by_split[f"instruction/{kind}"] = sum(1 for _ in data_rows(cfg, kind))
            except FusechatError as e:  # a hub set planned offline: its declared limit, if any
                if cfg.limit is None:
                    raise FusechatError(f"{e}; `fusechat plan` needs the data, or `data.limit`") from None
                by_split[f"instruction/{kind}"] = cfg.limit
    by_domain = Counter()
    for key, n in by_split.items():
        by_domain[key.split("/")[0]] += n
    return by_domain, by_split, "the data sets (no sampling: the recipe starts at build)"


def measured(folder: RunFolder) -> dict:
    """Speeds and lengths from the run folder's finished stages, when there are any."""
    out = {"tokens_per_s": {}, "lengths": {}, "prompt_tokens": None}
    sample = folder.manifest("sample")
    if sample:
        for name, t in (sample.get("timings") or {}).items():
            out["tokens_per_s"][name] = t["tokens_per_s"]
        lengths, prompts = {}, []
        for r in folder.iter_records("sample", "samples"):  # streamed: a cluster run holds millions
            lengths.setdefault((r["source"], r["domain"]), []).append(r["completion_tokens"])
            prompts.append(r["prompt_tokens"])
        out["lengths"] = {k: sum(v) / len(v) for k, v in lengths.items()}
        out["prompt_tokens"] = sum(prompts) / len(prompts) if prompts else None
    for stage in ("sft", "dpo"):  # the target's training rate; one stage's stands in for the other's
        done = folder.manifest(stage) or {}
        rate = done.get("tokens_per_s") or (done.get("counts") or {}).get("tokens_per_s")
        if rate:
            out["tokens_per_s"][stage] = rate
    return out


def calibration_file() -> Path:
    """Where `fusechat plan --calibrate` (fusechat.calibrate) keeps this machine's measured speeds."""
    return cache_dir() / "calibration.json"


def calibration_key(kind: str, model: str, backend: str, batch: int) -> str:
    return f"{kind}|{model}|{backend}|batch {batch}|{usable_cores()} cores"


def calibrated() -> dict:
    try:
        return json.loads(calibration_file().read_text())
    except (OSError, ValueError):
        return {}


def make_plan(recipe: Recipe, gpus: int = 0, gpu_gb: float = 80.0, folder: RunFolder | None = None) -> Plan:
    """The plan for `recipe` on `gpus` GPUs of `gpu_gb` GB (0: this CPU). `folder`: the run folder whose
    finished stages give measured counts and speeds (default the recipe's; a study variant's shares stages)."""
    folder = folder or RunFolder(recipe.run_path)
    by_domain, by_split, prompt_origin = (imported_counts if recipe.data else prompt_counts)(recipe, folder)
    # On a CPU, name it: bf16 units or not is a factor of ~3 in every decoding and training speed (BENCHMARKS.md).
    hardware = f"{gpus} GPU(s) of {gpu_gb:g} GB" if gpus else f"this CPU ({describe()}, {ram_gib():.0f} GiB RAM)"
    plan = Plan(recipe.name, hardware, notes=[f"prompts: {dict(by_domain)} (from {prompt_origin})"])
    seen, cal = measured(folder), calibrated()
    disk = 0.0
    prompt_tokens = []  # measured prompt lengths, for the training rows

    def speed(kind: str, model: str, backend: str, batch: int, arch: Arch | None, measured_name: str = "",
              devices: int | None = None, how: str = ""):
        """Tokens/s and where the figure comes from; on GPUs, `devices` of them busy (what the code runs
        the work on, said in `how`), at the planning utilisation."""
        if measured_name and measured_name in seen["tokens_per_s"]:
            return seen["tokens_per_s"][measured_name], "measured in this run folder"
        if kind in ("sft", "dpo") and seen["tokens_per_s"].get("dpo" if kind == "sft" else "sft"):
            other = "dpo" if kind == "sft" else "sft"  # the same model trains at about the same rate
            return seen["tokens_per_s"][other], f"measured: {other} in this run folder"
        if backend == "dataset":
            return 1e9, "read from a dataset"
        if gpus:
            if backend == "openai":
                return None, "an endpoint: not estimated"
            if arch is None:
                return None, "unknown model size"
            devices = devices or gpus
            return devices * H100_FLOPS * UTILISATION[kind] / (FLOPS_PER_PARAM[kind] * arch.params), \
                f"{how or f'{devices} GPU(s)'}; H100 roofline at {UTILISATION[kind]:.0%} (estimate)"
        entry = cal.get(calibration_key(kind, model, backend, batch))
        if entry:
            return entry["tokens_per_s"], "calibrated on this machine"
        if backend == "openai":
            return None, "an endpoint: not estimated"
        if arch is None:
            return None, "model config not found: run `fusechat plan --calibrate`"
        flops = usable_cores() * CPU_FLOPS_PER_CORE[kind] / (1 if cpu_has_bf16() else CPU_NO_BF16_SLOWER[kind])
        rate = flops / (FLOPS_PER_PARAM[kind] * arch.params) * (SERVED_ON_CPU if backend in ("llamacpp", "vllm") else 1)
        return rate, "reference CPU in BENCHMARKS.md, scaled (estimate; `fusechat plan --calibrate` measures)"

    # sample
    total_samples = 0
    for source in recipe.sources:
        arch = None if source.backend == "dataset" else model_arch(source.model)
        samples, tokens = 0, 0.0
        for domain, n in by_domain.items():
            k = n * source.samples_for(domain)
            entry = cal.get(calibration_key("length", source.model, domain, source.sampling.max_new_tokens)) or {}
            length = seen["lengths"].get((source.name, domain)) or entry.get("tokens") or \
                source.sampling.max_new_tokens * DEFAULT_LENGTH_SHARE
            if k and entry.get("prompt_tokens"):
                prompt_tokens.append(entry["prompt_tokens"])
            samples, tokens = samples + k, tokens + k * length
        total_samples += samples
        context = source.sampling.max_new_tokens + 2048  # the context the sample stage gives a vLLM engine
        fit = generation_fit(arch, source.backend, gpus, gpu_gb, source.batch_size or 8, context,
                             source.tensor_parallel_size)
        devices, how = generation_devices(source, arch, gpus, gpu_gb, context)
        rate, basis = speed("generate", source.model, source.backend, source.batch_size, arch, source.name, devices, how)
        plan.rows.append(Row("sample", source.name, f"{samples:,} answers", tokens,
                             tokens / rate if rate else None, basis, fit))
        disk += samples * (4 * tokens / max(samples, 1) + 400) * 2  # JSONL + Arrow copy
        disk += arch.weight_bytes if arch and source.backend != "openai" else 0  # the downloaded weights

    def answer_length() -> float:
        """An answer's tokens: measured in the run folder, else half the shortest answer cap."""
        if seen["lengths"]:
            return sum(seen["lengths"].values()) / len(seen["lengths"])
        return min((s.sampling.max_new_tokens for s in recipe.sources), default=1024) * DEFAULT_LENGTH_SHARE

    # score
    reward = recipe.score.reward
    checked = {d: n for d, n in by_domain.items() if d in CHECKED_DOMAINS} | {"instruction": by_split["instruction/any"]}
    judged = 0.0
    for d in reward.domains:  # with only_correct, only the checked answers that pass are rewarded
        k = sum(s.samples_for(d) for s in recipe.sources)
        kept = KEPT_SHARE if reward.only_correct or reward.only_ranked else 1.0
        per_prompt = {"open": k * 1.0, "checked": k * kept}
        if reward.only_ranked:
            # answers cut at max_new_tokens are never judged (calibrated share that finish), and a prompt's
            # lone judgeable answer is not either: k p - k p (1 - p)^(k - 1), p the judgeable share
            finished = [f for s in recipe.sources if s.samples_for(d) for f in [(cal.get(calibration_key(
                "length", s.model, d, s.sampling.max_new_tokens)) or {}).get("finished")] if f is not None]
            finished = sum(finished) / len(finished) if finished else 1.0
            for kind, p in (("open", finished), ("checked", finished * kept)):
                per_prompt[kind] = k * p - k * p * (1 - p) ** (k - 1)
        judged += (by_domain[d] - checked.get(d, 0)) * per_prompt["open"] + checked.get(d, 0) * per_prompt["checked"]
    judged = round(judged)
    scored = folder.manifest("score")
    if scored:  # measured
        judged = scored["counts"].get("with_reward", judged)
    if reward.kind != "none" and judged:
        arch = model_arch(reward.model)
        if reward.kind == "judge":
            entry = cal.get(calibration_key("judge", reward.model, reward.backend, 1))
            fit = generation_fit(arch, reward.backend, gpus, gpu_gb, 1, 4096)
            if entry:  # the load is paid once: spread over the judgments
                per, basis = entry["seconds_per_item"] + entry.get("load_s", 0) / judged, "calibrated on this machine"
            else:  # one forward pass over the prompt and the answer, ~10x a decoded token's rate
                rate, basis = speed("score", reward.model, reward.backend, 1, arch, devices=1, how="1 GPU")
                per = (PROMPT_TOKENS + answer_length()) / (10 * rate) if rate else None
        elif reward.endpoint:
            per, basis, fit = None, "an endpoint (score.reward.endpoint): not estimated", Fit("endpoint", 0.0, True)
        else:
            bf16 = reward.precision == "bf16" or reward.precision == "auto" and bool(gpus)  # every GPU since Ampere
            rate, basis = speed("score", reward.model, "transformers", reward.batch_size, arch, devices=gpus,
                                how=f"one {'bf16' if bf16 else 'fp32'} replica per GPU ({gpus})")
            if gpus and rate and not bf16:  # fp32 runs on TF32 tensor cores at about half the bf16 rate
                rate /= 2
            if not gpus and rate:  # calibrated decoding; one forward pass over a sequence runs ~10x faster
                rate *= 10
            per = (PROMPT_TOKENS + answer_length()) / rate if rate else None
            fit = generation_fit(arch, "transformers", gpus, gpu_gb, reward.batch_size, reward.max_length)
        work = f"{'~' if reward.only_correct or reward.only_ranked else ''}{judged:,} responses rewarded ({reward.kind})"
        plan.rows.append(Row("score", reward.model, work, 0, per * judged if per else None, basis, fit))
    checks = sum(by_domain["math"] * s.samples_for("math") for s in recipe.sources)
    if checks:  # math-verify in one worker process (fusechat.scorers.math)
        plan.rows.append(Row("score", "math-verify", f"{checks:,} answers checked", 0, checks * MATH_CHECK_S,
                             f"one worker; BENCHMARKS.md: ~{MATH_CHECK_S * 1000:.0f} ms a check"))
    code = sum(by_domain["code"] * s.samples_for("code") for s in recipe.sources)
    if code:
        plan.rows.append(Row("score", "sandbox", f"{code:,} programs run", 0,
                             code * 0.15 / recipe.score.workers, "BENCHMARKS.md: ~0.15 s a sandboxed run"))

    # train: one SFT answer or one pair per prompt (method.md §4)
    target = recipe.target.model if recipe.target else None
    if target:
        arch = model_arch(target)
        either = sum(n for key, n in by_split.items() if key.endswith("/any"))
        sft_n = sum(n for key, n in by_split.items() if key.endswith("/sft")) + round(either * ANY_SPLIT["sft"])
        dpo_n = sum(n for key, n in by_split.items() if key.endswith("/dpo")) + round(either * ANY_SPLIT["dpo"])
        built = folder.manifest("build")
        if built:  # measured: what the build made
            counts = built["counts"]
            sft_n, dpo_n = sum(counts["sft"].values()), sum(counts["dpo"].values())
        prompt = seen["prompt_tokens"] or (sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else PROMPT_TOKENS)
        answer_lengths = list(seen["lengths"].values()) or [
            (cal.get(calibration_key("length", s.model, d, s.sampling.max_new_tokens)) or {}).get("tokens")
            for s in recipe.sources for d in by_domain if s.samples_for(d)]
        answer_lengths = [x for x in answer_lengths if x]
        length = prompt + (sum(answer_lengths) / len(answer_lengths) if answer_lengths else
                           min((s.sampling.max_new_tokens for s in recipe.sources), default=1024) * DEFAULT_LENGTH_SHARE)
        batch = recipe.sft.batch_size
        config, processes, sharded = training_launch(recipe, gpus, gpu_gb)
        how = f"{processes} process(es), {config}" if gpus else ""
        for stage, cfg, n, per_item in (("sft", recipe.sft, sft_n, 1), ("dpo", recipe.dpo, dpo_n, 2)):
            tokens = n * per_item * min(length, cfg.max_length) * cfg.epochs
            # DPO: 8 x params a token, the reference pass once (shared by the processes) beside training's 6
            rate, basis = speed(stage, target, "train", batch, arch, devices=processes,
                                how=how + ("; reference pass once, shared" if stage == "dpo" and how else ""))
            plan.rows.append(Row(stage, target, f"~{n:,} {'examples' if per_item == 1 else 'pairs'} "
                                 f"x {cfg.epochs:g} epoch(s)", tokens, tokens / rate if rate else None, basis,
                                 training_fit(arch, processes if sharded else min(gpus, 1), gpu_gb, cfg.lora is not None)))
            if arch:  # the saved model (bf16)
                disk += arch.params * 2
        if arch:  # at the peak, during one training stage: two checkpoints of fp32 weights and AdamW moments
            disk += 2 * arch.params * 12

    # eval
    ev = recipe.eval
    if target:
        # every benchmark's answers (the judged sets' too) come from one model on one GPU (eval.backend)
        answered = list(benchmarks.BENCHMARKS.values())
        items = {b.NAME: b.count(recipe) for b in answered if b.count(recipe)}
        caps = {b.NAME: b.max_new_tokens(recipe) for b in answered if b.count(recipe)}
        tokens = sum(n * caps[b] * DEFAULT_LENGTH_SHARE for b, n in items.items())
        entry = cal.get(calibration_key("eval", target, "transformers", ev.batch_size))
        models = len(ev.models) + len(ev.extra_models)
        if entry:
            tokens = sum(n * entry["lengths"].get(b, caps[b] * DEFAULT_LENGTH_SHARE) for b, n in items.items())
            rate, basis = entry["tokens_per_s"], "calibrated on this machine"
        else:
            rate, basis = speed("generate", target, "transformers", ev.batch_size, model_arch(target), devices=1,
                                how=f"{ev.backend or 'transformers'} on 1 GPU")
        work = f"{models} model(s) x {sum(items.values()):,} items"
        plan.rows.append(Row("eval", target, work, tokens * models,
                             tokens * models / rate if rate else None, basis,
                             generation_fit(model_arch(target), "transformers", gpus, gpu_gb, ev.batch_size,
                                            PROMPT_TOKENS + ev.max_new_tokens)))
    judge = recipe.eval.judge or reward.model
    if target and ev.mtbench and judge:  # the MT-Bench judge grades every model's answers
        arch = model_arch(judge)
        judged = ev.mtbench * max(len(ev.models) - 1, 1)
        entry = cal.get(calibration_key("judge", judge, ev.judge_backend, 1))
        rate, basis = (None, "") if entry else speed("score", judge, ev.judge_backend, 1, arch)
        if rate and not gpus:  # a CPU's figure is a decoding rate; reading a sequence runs ~10x faster
            rate *= 10
        per = entry["seconds_per_item"] if entry else (PROMPT_TOKENS * 4 / rate if rate else None)
        plan.rows.append(Row("eval", f"judge {judge}", f"{judged:,} MT-Bench answers judged", 0,
                             per * judged if per else None, "calibrated on this machine" if entry else basis,
                             generation_fit(arch, ev.judge_backend, gpus, gpu_gb, 1, 4096)))
    models = len(ev.models) + len(ev.extra_models)
    if target and ev.harness:  # lm-eval on one GPU (vLLM where installed), each model in turn
        known = [t for t in ev.harness if t in TASK_SIZES]
        sizes = {t: min(TASK_SIZES[t][0], ev.harness_limit or TASK_SIZES[t][0]) for t in known}
        # a log-likelihood item: 4 choices scored in forward passes, each token ~10x cheaper than a generated one
        tokens = sum(n * (TASK_SIZES[t][1] * DEFAULT_LENGTH_SHARE or 4 * PROMPT_TOKENS / 10) for t, n in sizes.items())
        rate, basis = speed("generate", target, "harness", ev.batch_size, model_arch(target), devices=1,
                            how="lm-eval on 1 GPU")
        plan.rows.append(Row("eval", "lm-eval " + ", ".join(ev.harness), f"{models} model(s) x {sum(sizes.values()):,} items",
                             tokens * models, tokens * models / rate if rate else None, basis))
        if len(known) < len(ev.harness):
            plan.notes.append(f"eval.harness: {', '.join(t for t in ev.harness if t not in known)}: size unknown to "
                              "fusechat, not in the estimate")
    if target and ev.judged and ev.pairwise_judge:  # each model against the baseline, both orders, at an endpoint
        # against the set's own baseline every model is judged, against the base every other one
        judgments = sum(2 * benchmarks.BENCHMARKS[spec.format].count(recipe) * (models if spec.baseline else max(models - 1, 0))
                        for spec in ev.judged)
        plan.rows.append(Row("eval", f"judge {ev.pairwise_judge.model}", f"{judgments:,} pairwise judgments", 0, None,
                             "an endpoint (eval.pairwise_judge): not estimated"))
    for name, key, cfg, turns in (("MT-Bench", "mtbench_graded", ev.mtbench_graded, 2), ("AlignBench", "alignbench", ev.alignbench, 1)):
        if target and cfg:  # every model's answers graded 1-10 at an endpoint
            grades = turns * benchmarks.BENCHMARKS[key].count(recipe) * models
            plan.rows.append(Row("eval", f"judge {cfg.judge.model}", f"{grades:,} {name} grades (1-10)", 0, None,
                                 "an endpoint: not estimated"))
    for stage in ("score", "sft", "dpo", "eval"):  # a finished stage: the seconds it took, whole
        done, rows = folder.manifest(stage), [r for r in plan.rows if r.stage == stage]
        if done and rows and done.get("seconds") is not None:
            rows[0].seconds, rows[0].basis = done["seconds"], "measured in this run folder (the whole stage)"
            for r in rows[1:]:
                r.seconds, r.basis = 0.0, f"measured: in the first {stage} row"
    plan.disk_gib = disk / GIB
    if any(r.seconds is None for r in plan.rows):
        plan.notes.append("rows without a time (-) have no throughput figure; the total leaves them out")
    return plan


def generation_devices(source, arch: Arch | None, gpus: int, gpu_gb: float, tokens: int) -> tuple[int, str]:
    """The GPUs a source's sampling keeps busy, and how: vLLM runs `replicas` engines of tensor-parallel
    size TP (fusechat.backends.replicas), the other local backends one model on one GPU."""
    if source.backend != "vllm" or not gpus:
        return (1, f"{source.backend} on 1 GPU") if gpus else (0, "")
    tp = source.tensor_parallel_size or (tensor_parallel_for(arch, gpus, gpu_gb, tokens) if arch else None) or 1
    replicas = source.replicas or max(1, gpus // tp)
    return min(replicas * tp, gpus), f"{replicas} vLLM engine(s) x TP {tp} = {min(replicas * tp, gpus)} of {gpus} GPUs"


def training_launch(recipe: Recipe, gpus: int, gpu_gb: float) -> tuple[str, int, bool]:
    """What sft and dpo run under on `gpus` GPUs (fusechat.launch's choice): the accelerate config, the
    processes, and whether the weights are sharded (FSDP, ZeRO-3) or whole on each GPU (DDP)."""
    if gpus < 1:
        return "this CPU", 0, False
    name = chosen_config(recipe, gpus, gpu_gb)
    if name is None:
        return "one process", 1, False
    processes = recipe.launch.processes or gpus
    sharded = name in ("fsdp", "deepspeed-zero3") or "fsdp" in name.lower() or "zero3" in name.lower()
    return Path(name).stem, processes, sharded


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.1f} h"
    days = seconds / 86400
    return f"{days:.0f} days" if days < 730 else f"{days / 365:,.0f} years"


def render(plan: Plan) -> str:
    """The plan as a plain-text table (what `fusechat plan` and the start of `fusechat run` print)."""
    lines = [f"Plan for '{plan.recipe}' on {plan.hardware}:"]
    table = [("stage", "model", "work", "tokens", "time", "fits", "speed from")]
    for r in plan.rows:
        fit = "" if r.fit is None else (f"NO: {r.fit.where}" if not r.fit.ok else r.fit.where if not r.fit.gib
                                        else f"{r.fit.where}, {r.fit.gib:.1f} GiB")
        table.append((r.stage, r.what, r.work, f"{r.tokens:,.0f}" if r.tokens else "", duration(r.seconds),
                      fit, r.basis))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.append(f"  total: {duration(plan.seconds)} of work with a figure; disk: {plan.disk_gib:.1f} GiB")
    lines += [f"  note: {n}" for n in plan.notes]
    lines += [f"  DOES NOT FIT: {p}" for p in plan.problems()]
    return "\n".join(lines)


def refuse_what_cannot_fit(plan: Plan) -> None:
    """One line, before any work, for the first model that cannot fit the hardware."""
    problems = plan.problems()
    if problems:
        raise FusechatError(f"{problems[0]} (on {plan.hardware}; `fusechat plan` shows the whole plan)")


# ---- calibration (CPU) ------------------------------------------------------------------------------


def slurm_sample_script(recipe: Recipe, recipe_arg: str, nodes: int, gpus_per_node: int) -> str:
    """A Slurm array of `nodes` jobs, each sampling its share of the shards (`fusechat sample --part I/N`) into
    one run folder on storage every node sees. Plain `sbatch`, not submitit: no extra dependency, and a
    script the user can read and edit for their site (partition, account, time limit)."""
    import os
    import shlex

    return f"""#!/bin/bash
# fusechat: sample {recipe.name} as a Slurm array of {nodes} jobs, one node of {gpus_per_node} GPUs each, into
# {recipe.run_path} (storage every node sees). Each job samples every {nodes}th shard; finished shards are kept.
#   fusechat prompts {recipe_arg}                      # once, first: every job reads the same prompt list
#   jobid=$(sbatch --parsable {recipe.run_path}/slurm-sample.sh)
#   sbatch --dependency=afterok:$jobid --gres=gpu:{gpus_per_node} --wrap 'fusechat run {recipe_arg}'   # merge, then the rest
# A job that died: resubmit its index alone (sbatch --array=I ...); it redoes only its missing shards.
#SBATCH --job-name=fusechat-sample-{recipe.name}
#SBATCH --array=1-{nodes}
#SBATCH --nodes=1
#SBATCH --gres=gpu:{gpus_per_node}
#SBATCH --output={recipe.run_path}/slurm-sample-%A_%a.out
set -euo pipefail
cd {shlex.quote(os.getcwd())}
fusechat sample {shlex.quote(recipe_arg)} --part "${{SLURM_ARRAY_TASK_ID}}/{nodes}"
"""

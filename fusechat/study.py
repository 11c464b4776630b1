"""`fusechat study STUDY.yaml`: does fusion pay? One base recipe, named variants, paired comparisons.

A study file holds a base recipe (inline or a path), variants (each a set of dotted overrides, as
`--set`), a reference variant and the claims to test. Sampling and scoring are the expensive part,
so they run once, in the reference variant's folder, and every variant reads them from there: a
variant that changes a sampling or scoring setting is refused. Each variant then gets its own build,
sft, dpo and eval under `study_dir/<variant>/`, except where a stage with the same settings and the
same inputs was already made by another variant: that stage is shared, not redone (the run folder's
own currency rule decides). So "SFT only" costs nothing (the reference's SFT model), and two variants
that build the same data (with two sources, "only A" and "without B") train once. A variant with
`seeds: [s0, s1, ...]` is one run per training seed (sft.seed and dpo.seed), the first in its own
folder and the others in `<variant>-seed-<s>/`; the report averages over them and resamples them.

Every variant is evaluated on the same items, so differences are paired (fusechat.stats);
the study report (fusechat.study_report) holds the table, the plot and a verdict per claim.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from fusechat import FusechatError, benchmarks
from fusechat import recipe as r
from fusechat.analysis import training_lengths
from fusechat.pipeline import STAGES
from fusechat.records import SOURCE_STAGES, STAGE_ORDER
from fusechat.runfolder import RunFolder, config_hash
from fusechat.study_report import study_tables, write_study_report

SHARED_DATA = SOURCE_STAGES  # sampled and scored once, in the reference's folder
VARIANT_STAGES = STAGE_ORDER[: STAGE_ORDER.index("report")]  # a variant's report is the study's
FINAL_STAGE = {"sft": "sft", "dpo": "sft+dpo"}  # a variant's final stage -> its model's name in eval


class Claim(r.Strict):
    claim: str
    better: str = Field(description="the variant that should score higher ('base': the target before training)")
    worse: str
    benchmarks: list[str] = Field(min_length=1)


class StudyConfig(r.Strict):
    name: str
    study_dir: str = "runs/{name}"
    reference: str = Field(description="the variant every other one is compared with")
    recipe: dict | str = Field(description="the base recipe: a mapping, a file, or a built-in name")
    variants: dict[str, dict] = Field(min_length=1)
    claims: list[Claim] = Field(default_factory=list)
    resamples: int = Field(2000, gt=99, description="bootstrap resamples for each paired interval")

    _plain_name = field_validator("name")(lambda name: r.plain_name(name))
    _safe_dir = field_validator("study_dir")(lambda folder: r.safe_folder(folder))

    @model_validator(mode="after")
    def _known_names(self):
        for name, overrides in self.variants.items():
            r.plain_name(name)
            final = (overrides or {}).get("final", "dpo")
            if final not in FINAL_STAGE:
                raise ValueError(f"variants.{name}.final: 'sft' or 'dpo', got {final!r}")
            seeds = (overrides or {}).get("seeds")
            if seeds is not None:
                if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
                        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
                    raise ValueError(f"variants.{name}.seeds: a list of distinct training seeds (0, 1, ...), got {seeds!r}")
                if {"sft.seed", "dpo.seed"} & set(overrides):
                    raise ValueError(f"variants.{name}: `seeds` sets sft.seed and dpo.seed; give one or the other")
                for s in seeds[1:]:
                    if seed_run(name, s) in self.variants:
                        raise ValueError(f"variants.{name}.seeds: '{seed_run(name, s)}' is also a variant's name")
        if self.reference not in self.variants:
            raise ValueError(f"reference '{self.reference}' is not one of the variants {list(self.variants)}")
        if (self.variants[self.reference] or {}).get("final", "dpo") != "dpo":
            raise ValueError("the reference variant must go through dpo (its eval holds the base and SFT models)")
        for i, c in enumerate(self.claims):
            for side in (c.better, c.worse):
                if side != "base" and side not in self.variants:
                    raise ValueError(f"claims.{i}: unknown variant '{side}' (variants: {list(self.variants)}, or 'base')")
        return self

    @property
    def path(self) -> Path:
        return Path(self.study_dir.format(name=self.name))


def seed_run(variant: str, seed: int) -> str:
    """The run (and folder) of `variant` trained with its second, third... seed."""
    return f"{variant}-seed-{seed}"


@dataclass
class Variant:
    name: str  # the run's name and folder: the study's variant, or `<variant>-seed-<s>` for its later seeds
    recipe: r.Recipe
    final: str  # "sft" or "dpo"
    folder: RunFolder = field(repr=False)
    of: str = ""  # the study variant this run belongs to (its own name unless it is a later seed)


def load_study(path: str | Path, overrides: list[str] = ()) -> tuple[StudyConfig, dict[str, Variant]]:
    """The study and every run's recipe; `overrides` (`--set KEY=VALUE`) change the base recipe, under every
    variant's own overrides."""
    path = Path(path)
    data = r.read_yaml_mapping(path, "study file")
    study = r.validated(StudyConfig, data, str(path))
    runs = variants(study, path, overrides)
    evaluated = {b.NAME for v in runs.values() for b in benchmarks.chosen(v.recipe)}
    evaluated |= {f"harness:{task}" for v in runs.values() for task in v.recipe.eval.harness}
    for i, claim in enumerate(study.claims):  # before any work: a misspelt benchmark would only show at the end
        for bench in claim.benchmarks:
            if bench not in evaluated:
                raise FusechatError(f"{path}: claims.{i}: no variant evaluates '{bench}' (evaluated: {', '.join(sorted(evaluated))})")
    return study, runs


def base_data(study: StudyConfig, where: Path) -> dict:
    if isinstance(study.recipe, dict):
        return copy.deepcopy(study.recipe)
    candidate = Path(study.recipe)
    if not candidate.is_absolute() and not candidate.exists():
        candidate = where.parent / study.recipe
    if not candidate.exists() and r.builtin_recipe(study.recipe).exists():
        candidate = r.builtin_recipe(study.recipe)
    return r.read_yaml_mapping(candidate)


def runs_of(name: str, overrides: dict) -> list[tuple[str, dict]]:
    """(run name, overrides) for each training seed of a variant: `seeds: [0, 1]` trains it twice, the
    first seed in the variant's own folder, the second in `<name>-seed-1`."""
    overrides = dict(overrides or {})
    seeds = overrides.pop("seeds", None)
    if not seeds:
        return [(name, overrides)]
    return [(name if i == 0 else seed_run(name, s), overrides | {"sft.seed": s, "dpo.seed": s})
            for i, s in enumerate(seeds)]


def variants(study: StudyConfig, where: Path, base_overrides: list[str] = ()) -> dict[str, Variant]:
    """Every run's recipe (a variant at each of its seeds); its folder shares the reference's sampled and scored data."""
    base = base_data(study, where)
    for assignment in base_overrides:
        r.apply_override(base, assignment)
    out = {}
    for variant, variant_overrides in study.variants.items():
        for name, overrides in runs_of(variant, variant_overrides):
            data = copy.deepcopy(base)
            final = overrides.pop("final", "dpo")
            for key, value in overrides.items():
                r.set_value(data, key, value, f"{where}: variants.{variant}.{key}")
            data["name"] = f"{study.name}-{name}"
            data["run_dir"] = str(study.path / name)
            if name != study.reference:
                data.setdefault("eval", {})["models"] = [FINAL_STAGE[final]]
                data["eval"]["mtbench"] = 0  # a win rate against the base needs the base's answers judged again
                data["eval"]["pairwise_judge"] = None  # likewise (their AlpacaEval / Arena-Hard answers are still written)
            recipe = r.recipe_from_dict(data, f"{where}: variants.{variant}")
            out[name] = Variant(name, recipe, final, RunFolder(recipe.run_path), of=variant)
    reference = out[study.reference]
    for v in out.values():
        if v is reference:
            continue
        for stage, projection in (("prompts", r.prompts_settings), ("sample", r.sample_settings), ("score", r.score_settings)):
            if config_hash(projection(v.recipe)) != config_hash(projection(reference.recipe)):
                raise FusechatError(f"{where}: variant '{v.name}' changes {stage} settings; a study samples and scores "
                                    f"once (vary only build, sft, dpo and eval)")
        v.folder.shared = {s: reference.folder for s in SHARED_DATA}
    return out


# ---- running -------------------------------------------------------------------------------------

def _owner(folder: RunFolder, stage: str) -> RunFolder:
    return folder.shared.get(stage, folder)


def share_or_run(v: Variant, stage: str, made: list[Variant], progress=None) -> dict:
    """Run `stage` of `v`, unless another variant already made it with the same settings and inputs."""
    definition = STAGES[stage]
    settings = definition.settings(v.recipe)
    fingerprint = v.folder.input_fingerprint(definition, v.recipe)
    if not v.folder.is_current(stage, settings, fingerprint):
        for other in made:
            owner = _owner(other.folder, stage)
            if owner.is_current(stage, settings, fingerprint):
                v.folder.shared[stage] = owner
                return owner.manifest(stage) | {"skipped": True, "shared_from": str(owner.path)}
    return v.folder.run(definition, v.recipe, progress=progress)


def run_study(study: StudyConfig, variants: dict[str, Variant], progress=None, on_stage=None, on_variant=None) -> None:
    """Every variant's stages, the reference first; sampling and scoring happen only there.

    `on_variant(finished names)` is called after each variant (the CLI rewrites the report then, so a
    long study shows its results as they come)."""
    on_stage = on_stage or (lambda variant, stage, manifest: None)
    on_variant = on_variant or (lambda done: None)
    reference = variants[study.reference]
    for stage in VARIANT_STAGES:
        on_stage(reference.name, stage, reference.folder.run(STAGES[stage], reference.recipe, progress=progress))
    made = [reference]
    on_variant([reference.name])
    for v in variants.values():
        if v is reference:
            continue
        for stage in ("build", "sft") + (("dpo",) if v.final == "dpo" else ()):
            on_stage(v.name, stage, share_or_run(v, stage, made, progress))
        if _owner(v.folder, v.final).path != reference.folder.path:  # else the reference's eval has this model
            on_stage(v.name, "eval", share_or_run(v, "eval", made, progress))
        made.append(v)
        on_variant([m.name for m in made])


def final_records(study: StudyConfig, variants: dict[str, Variant]) -> dict[str, dict]:
    """Per model of the study ("base" and every variant given), per training seed it was run at
    (None: not trained): that model's evaluation records. Each eval file is read once."""
    reference = variants[study.reference]
    ref_items = reference.folder.records("eval", "items")
    out = {"base": {None: [i for i in ref_items if i["model"] == "base"]}}
    for v in variants.values():
        model = FINAL_STAGE[v.final]
        own = v is reference or _owner(v.folder, v.final).path == reference.folder.path
        seeds = {v.recipe.sft.seed} | ({v.recipe.dpo.seed} if v.final == "dpo" else set())
        seed = seeds.pop() if len(seeds) == 1 else tuple(sorted(seeds))
        out.setdefault(v.of or v.name, {})[seed] = [
            i for i in (ref_items if own else v.folder.records("eval", "items")) if i["model"] == model]
    return out


def final_items(records: dict[str, dict]) -> dict[str, dict[int | None, dict[tuple[str, str], float]]]:
    """final_records as {model: {seed: {(benchmark, item id): score}}}."""
    return {name: {seed: {(i["benchmark"], i["id"]): i["score"] for i in items if i["score"] is not None}
                   for seed, items in runs.items()} for name, runs in records.items()}


def answer_lengths(records: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Mean answer length in characters per model and benchmark (over its seeds): a model that learned
    to ramble shows it here before anyone reads its answers."""
    out = {}
    for name, runs in records.items():
        lengths: dict[str, list[int]] = {}
        for items in runs.values():
            for i in items:
                if isinstance(i.get("response"), str):
                    lengths.setdefault(i["benchmark"], []).append(len(i["response"]))
        out[name] = {b: sum(ls) / len(ls) for b, ls in lengths.items()}
    return out


def stage_times(study: StudyConfig, variants: dict[str, Variant]) -> tuple[list[dict], Counter]:
    """Wall time of every stage of every variant, or where a shared stage came from; and the machines
    those times were measured on (stages per machine: a study resumed elsewhere mixes their speeds)."""
    rows, machines = [], Counter()
    reference = variants[study.reference].folder
    for v in variants.values():
        row = {"variant": v.name}
        for stage in VARIANT_STAGES:
            owner = _owner(v.folder, stage)
            if stage == "eval" and _owner(v.folder, v.final).path == reference.path:
                owner = reference  # its final model was evaluated with the reference's
            m = owner.manifest(stage)
            if m is None:
                row[stage] = None
            elif owner.path != v.folder.path:
                row[stage] = f"= {owner.path.name}"
            else:
                row[stage] = m["seconds"]
                machines[m.get("hardware", "not recorded")] += 1
        rows.append(row)
    return rows, machines


def report_study(study: StudyConfig, variants: dict[str, Variant], done: list[str] | None = None) -> tuple[Path, bool]:
    """The study report from the finished variants (`done`, default all; run_study decides what is shared).
    Claims about a variant not yet finished say so."""
    finished = {name: v for name, v in variants.items() if done is None or name in done}
    records = final_records(study, finished)
    tables = study_tables(study, final_items(records))
    tables["pending"] = [name for name in variants if name not in finished]
    tables["answer_length"] = answer_lengths(records)
    reference = variants[study.reference].folder
    if reference.manifest("build"):
        tables["training_length"] = training_lengths(reference.records("build", "sft"), reference.records("build", "dpo"))
    source = (reference.manifest("build") or {}).get("counts", {}).get("source_table")
    bias = (reference.manifest("score") or {}).get("counts", {}).get("reward_bias")
    times, tables["hardware"] = stage_times(study, variants)
    return write_study_report(study, tables, times, source, bias)

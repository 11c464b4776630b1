"""The pipeline: every stage declared once, in the order data flows, and running them.

A stage's declaration names its work function, the part of the recipe its result depends on
(fusechat.recipe.*_settings) and the stages whose outputs it reads; the run folder decides from
those alone whether it is current, so a changed setting reruns exactly the stages that depend on it.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import yaml

from fusechat import FusechatError
from fusechat import launch
from fusechat import recipe as r
from fusechat.build import build
from fusechat.evaluate import evaluate
from fusechat.import_data import data_fingerprint, import_build
from fusechat.prompts import prompt_files_fingerprint, prompts
from fusechat.records import DATA_STAGES, SOURCE_STAGES, STAGE_ORDER
from fusechat.report import REPORTED, report
from fusechat.runfolder import RunFolder, StageDef, write_atomic
from fusechat.sample import responses_fingerprint, sample
from fusechat.score import score
from fusechat.train.dpo import dpo
from fusechat.train.sft import sft

RECIPE_FILE = "recipe.yaml"  # in the run folder: the recipe its stages last ran with, resolved

STAGES = {
    s.name: s
    for s in [
        StageDef("prompts", prompts, r.prompts_settings, external=prompt_files_fingerprint),
        StageDef("sample", sample, r.sample_settings, reads=("prompts",), external=responses_fingerprint, parts=True),
        StageDef("score", score, r.score_settings, reads=("prompts", "sample")),
        StageDef("build", build, r.build_settings, reads=("prompts", "score")),
        StageDef("sft", sft, r.sft_settings, reads=("build",), only=("build/sft",), distributed=True),
        StageDef("dpo", dpo, r.dpo_settings, reads=("build", "sft"), only=("build/dpo",), distributed=True),
        StageDef("eval", evaluate, r.eval_settings, uses=("prompts", "sft", "dpo")),
        StageDef("report", report, r.report_settings, uses=REPORTED),
    ]
}
assert tuple(STAGES) == STAGE_ORDER, "declare the stages in records.STAGE_ORDER's order"
# A recipe with `data:` starts here: its build re-keys SFT/DPO sets made elsewhere (fusechat.import_data).
IMPORTED_BUILD = StageDef("build", import_build, r.data_settings, external=data_fingerprint)
# ... and its eval keeps the imported sets' prompts out of the held-out math (it has no prompts stage).
IMPORTED_EVAL = StageDef("eval", evaluate, r.eval_settings, uses=("prompts", "build", "sft", "dpo"))


def stage_def(name: str, recipe: r.Recipe) -> StageDef:
    if recipe.data is not None and name in SOURCE_STAGES:
        raise FusechatError(f"recipe {recipe.name} starts at build from `data`: it has no {name} stage")
    if recipe.data is not None and name in ("build", "eval"):
        return IMPORTED_BUILD if name == "build" else IMPORTED_EVAL
    return STAGES[name]


def stages_of(recipe: r.Recipe) -> list[str]:
    """The stages this recipe runs, in order: all of them, less the data stages it starts after, less
    training and evaluation when it has no `target`."""
    names = [n for n in STAGES if recipe.data is None or n not in SOURCE_STAGES]
    return [n for n in names if recipe.target is not None or n in DATA_STAGES]


def run_stage(name: str, recipe: r.Recipe, force: bool = False, progress=None, part: tuple[int, int] | None = None) -> dict:
    """Run one stage unless it is current (or `force`); its manifest, with `skipped: True` when current
    (`part_done` instead when `part` did its share: see RunFolder.run). sft and dpo start `accelerate launch`
    themselves where the recipe or the machine asks for several processes (fusechat.launch)."""
    stage = stage_def(name, recipe)
    folder = RunFolder(recipe.run_path)  # refuses, in one line, a run_dir that is a file
    if not launch.inside_launch():  # the recipe as resolved, so that `fusechat report RUN_FOLDER` finds it
        save_recipe(recipe)
    elsewhere = None
    if stage.distributed and (where := launch.plan(recipe)) is not None:
        elsewhere = functools.partial(launch.launch, name, recipe, *where, force=force, progress=progress)
    return folder.run(stage, recipe, force=force, progress=progress, part=part, elsewhere=elsewhere)


def save_recipe(recipe: r.Recipe) -> None:
    recipe.run_path.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(recipe.model_dump(mode="json", exclude_unset=True), sort_keys=False, allow_unicode=True)
    path = recipe.run_path / RECIPE_FILE
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)


def run_all(recipe: r.Recipe, progress=None, on_stage=None, until: str | None = None,
            force: set[str] = frozenset()) -> dict[str, dict]:
    """Every stage in order (up to `until`), redoing those in `force` even when current; a recipe without
    a `target` stops after building the data."""
    manifests = {}
    for name in stages_of(recipe):
        manifests[name] = run_stage(name, recipe, force=name in force, progress=progress)
        if on_stage:
            on_stage(name, manifests[name])
        if name == until:
            break
    return manifests


def reuse_stages(recipe: r.Recipe, other: str | Path) -> list[str]:
    """Take the data stages (prompts, sample, score) that another run folder made with this recipe's
    settings and inputs, in order, up to the first it cannot give: an ablation of the build or training
    then samples nothing again. The files are hard links where the file system allows (no second copy),
    so the two runs stay independent: a rerun of either writes new files, never into the other's."""
    source, folder = RunFolder(other), RunFolder(recipe.run_path)
    if source.path.resolve() == folder.path.resolve():
        return []
    taken = []
    for name in [n for n in stages_of(recipe) if n in DATA_STAGES and n != "build"]:
        stage = stage_def(name, recipe)
        settings, fingerprint = stage.settings(recipe), folder.input_fingerprint(stage, recipe)
        if folder.is_current(name, settings, fingerprint):
            taken.append(name)
            continue
        if not source.is_current(name, settings, fingerprint):
            break
        target = folder.stage_dir(name)
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source.stage_dir(name), target, copy_function=_link_or_copy)
        taken.append(name)
    return taken


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links refused: a copy
        shutil.copy2(src, dst)

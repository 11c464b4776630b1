"""Runs the stages of a recipe in order; each stage skips itself when its output is current."""

from __future__ import annotations

from fusechat.build import run_build
from fusechat.evaluate import run_eval
from fusechat.prompts import run_prompts
from fusechat.recipe import Recipe
from fusechat.report import run_report
from fusechat.sample import run_sample
from fusechat.score import run_score
from fusechat.train.dpo import run_dpo
from fusechat.train.sft import run_sft

STAGES = {
    "prompts": run_prompts,
    "sample": run_sample,
    "score": run_score,
    "build": run_build,
    "sft": run_sft,
    "dpo": run_dpo,
    "eval": run_eval,
    "report": run_report,
}
DATA_STAGES = ("prompts", "sample", "score", "build")


def run_stage(name: str, recipe: Recipe, force: bool = False, progress=None) -> dict:
    return STAGES[name](recipe, force=force, progress=progress)


def run_all(recipe: Recipe, progress=None, on_stage=None) -> dict[str, dict]:
    """Every stage in order; a recipe without a `target` stops after building the data."""
    manifests = {}
    for name in STAGES:
        if recipe.target is None and name not in DATA_STAGES:
            break
        manifests[name] = run_stage(name, recipe, progress=progress)
        if on_stage:
            on_stage(name, manifests[name])
    return manifests

"""Runs the stages of a recipe in order; each stage skips itself when its output is current."""

from __future__ import annotations

from fusechat.build import run_build
from fusechat.prompts import run_prompts
from fusechat.recipe import Recipe
from fusechat.sample import run_sample
from fusechat.score import run_score

STAGES = {
    "prompts": run_prompts,
    "sample": run_sample,
    "score": run_score,
    "build": run_build,
}


def run_stage(name: str, recipe: Recipe, force: bool = False, progress=None) -> dict:
    return STAGES[name](recipe, force=force, progress=progress)


def run_all(recipe: Recipe, progress=None, on_stage=None) -> dict[str, dict]:
    manifests = {}
    for name in STAGES:
        manifests[name] = run_stage(name, recipe, progress=progress)
        if on_stage:
            on_stage(name, manifests[name])
    return manifests

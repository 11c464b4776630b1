"""Stage 1, prompts: load prompt sets, tag domains, remove duplicates, split instruction prompts.

Input: the recipe's prompt sets (built-in packs or files). Output: `run/prompts/prompts`.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from fusechat import FusechatError
from fusechat.benchmarks import humaneval
from fusechat.readers import dataset_rows, file_rows, files_digest, user_text
from fusechat.packs import (code_function_prompts, constraint_prompts, looks_like_math_or_code, reasoning_gym_prompts,
                            sharegpt_prompts)
from fusechat.recipe import PromptSet, Recipe
from fusechat.records import Prompt, stable_id, to_dict
from fusechat.runfolder import Outputs, StageRun


def load_prompt_file(path: str | Path, domain: str) -> list[dict]:
    """Read prompts of one domain from a file; math needs `answer`, code needs `tests`."""
    return _prompt_items(file_rows(Path(path)), domain, str(path))


def _prompt_items(rows, domain: str, origin: str) -> list[dict]:
    prompts = []
    for where, row in rows:
        item = {"prompt": user_text(row, where), "origin": origin}
        if row.get("id") is not None:
            if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
                raise FusechatError(f"{where}: `id` must be a string or an integer, not {type(row['id']).__name__}")
            item["id"] = str(row["id"])
        if domain == "math":
            if row.get("answer") in (None, ""):
                raise FusechatError(f"{where}: math prompts need a gold `answer`")
            if not isinstance(row["answer"], (str, int, float)) or isinstance(row["answer"], bool):
                raise FusechatError(f"{where}: a gold `answer` is text or a number, not {type(row['answer']).__name__}")
            item["answer"] = str(row["answer"])
        if domain == "code":
            if not isinstance(row.get("tests"), str) or not row["tests"].strip():
                raise FusechatError(f"{where}: code prompts need `tests` (Python code that asserts)")
            item["tests"] = row["tests"]
            item["entry_point"] = str(row.get("entry_point") or "")
        if domain == "instruction" and row.get("instruction_id_list"):
            item["constraints"] = _ifeval_constraints(row, where)
        prompts.append(item)
    return prompts


def _ifeval_constraints(row: dict, where: str) -> list[dict]:
    """IFEval's own row format: `instruction_id_list` with one `kwargs` mapping per id."""
    from fusechat.constraints import registry

    ids, kwargs = row["instruction_id_list"], row.get("kwargs") or [{} for _ in row["instruction_id_list"]]
    if not isinstance(ids, list) or not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise FusechatError(f"{where}: `instruction_id_list` and `kwargs` must be lists of the same length")
    for i in ids:
        if i not in registry():
            raise FusechatError(f"{where}: unknown IFEval instruction id {i!r}")
    return [{"id": i, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}} for i, kw in zip(ids, kwargs)]


def load_prompt_set(spec: PromptSet) -> list[dict]:
    n = spec.n
    match spec.pack:
        case "reasoning-gym":
            return reasoning_gym_prompts(spec.task, n or 100, spec.seed, spec.options)
        case "code-functions":
            return code_function_prompts(n or 100, spec.seed)
        case "sharegpt":
            return sharegpt_prompts(spec.domain, n or 100, spec.seed, spec.options)
        case "constraints":
            return constraint_prompts(n or 100, spec.seed, spec.options)
    if spec.dataset:
        rows = _prompt_items(dataset_rows(spec.dataset, spec.subset, spec.split, spec.columns, spec.where),
                             spec.domain, spec.dataset)
    else:
        rows = load_prompt_file(spec.path, spec.domain)
    if not rows:
        raise FusechatError(f"{spec.path or spec.dataset}: no prompts here (after `where`)")
    return rows  # all of them: `n` is drawn in collect_prompts, after duplicates and filters


def split_instruction(prompts: list[Prompt], sft_fraction: float, seed: int) -> None:
    """The seeded 40:60 SFT/DPO split of method.md §4, for open instruction prompts. Prompts with
    verifiable constraints are built like math and code (a pair when one exists, else SFT)."""
    ids = sorted(p.id for p in prompts if p.domain == "instruction" and not p.constraints)
    random.Random(seed).shuffle(ids)
    sft = set(ids[: round(len(ids) * sft_fraction)])
    for p in prompts:
        if p.domain == "instruction" and not p.constraints:
            p.split = "sft" if p.id in sft else "dpo"
        elif p.domain == "chinese":
            p.split = "sft"


def _why_not(spec: PromptSet, text: str, duplicate: bool, max_chars: int) -> str:
    """Why a prompt is set aside ('' when it is kept)."""
    if not text:
        return "empty"
    if len(text) > max_chars:
        return "too_long"
    if spec.domain == "code" and humaneval.holds_a_problem(text):  # evaluation data, never training
        return "humaneval_overlap"
    if spec.drop_math_and_code and looks_like_math_or_code(text):
        return "math_or_code"
    return "duplicate" if duplicate else ""


def collect_prompts(recipe: Recipe) -> tuple[list[Prompt], Counter]:
    """Every set's prompts, each once: duplicates (within and across sets) and filtered prompts are set
    aside, and counted, before a set's `n` is drawn, so a set that holds enough yields exactly `n`."""
    dropped = Counter()
    seen: dict[str, Prompt] = {}
    for spec in recipe.prompts.sets:
        kept: dict[str, tuple[str, dict]] = {}
        for row in load_prompt_set(spec):
            text = row["prompt"].strip()
            key = stable_id(spec.domain, text)
            why = _why_not(spec, text, key in seen or key in kept, recipe.prompts.max_prompt_chars)
            if why:
                dropped[why] += 1
            else:
                kept[key] = (text, row)
        chosen = list(kept)
        if spec.n is not None and spec.n < len(chosen) and not spec.pack:  # a pack makes `n` itself
            chosen = random.Random(spec.seed).sample(chosen, spec.n)
            dropped["not_drawn"] += len(kept) - spec.n
        for key in chosen:
            text, row = kept[key]
            seen[key] = Prompt(
                id=row.get("id") or key,
                domain=spec.domain,
                prompt=text,
                answer=row.get("answer", ""),
                tests=row.get("tests", ""),
                entry_point=row.get("entry_point", ""),
                origin=row.get("origin", ""),
                constraints=row.get("constraints", []),
            )
    prompts = list(seen.values())
    if not prompts:
        raise FusechatError(f"prompts: every prompt of the recipe's sets was dropped ({dict(dropped)}); nothing to sample")
    ids = Counter(p.id for p in prompts)
    clash = [i for i, c in ids.items() if c > 1]
    if clash:
        raise FusechatError(f"prompt id '{clash[0]}' is used by two different prompts")
    split_instruction(prompts, recipe.prompts.sft_fraction, recipe.prompts.split_seed)
    return prompts, dropped


def prompt_files_fingerprint(recipe: Recipe) -> str:
    """The contents of the recipe's prompt files and local dataset folders (the packs are fixed by their
    settings; a hub dataset by its id, split and filters, which are settings too)."""
    return files_digest([spec.path or spec.dataset for spec in recipe.prompts.sets if spec.path or spec.dataset])


def prompts(run: StageRun) -> Outputs:
    """Load, dedupe and split the recipe's prompts."""
    loaded, dropped = collect_prompts(run.recipe)
    counts = {
        "prompts": len(loaded),
        "by_domain": dict(Counter(p.domain for p in loaded)),
        "by_split": dict(Counter(f"{p.domain}/{p.split}" for p in loaded)),
        "dropped": dict(dropped),
    }
    return Outputs({"prompts": [to_dict(p) for p in loaded]}, counts)

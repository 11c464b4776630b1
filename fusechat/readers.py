"""Reading what users give us, for any stage: rows of JSONL, Parquet and dataset folders or hub datasets,
a row's user turn, digests of files, and whether the hub can be reached.

The ground floor: this module knows no stage. Every failure is one line naming the file and line (or
row) at fault.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from fusechat import FusechatError


def user_text(row: dict, where: str) -> str:
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


def file_rows(path: Path):
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


def dataset_rows(name: str, subset: str | None = None, split: str | None = None, columns: dict | None = None,
                 where: dict | None = None, limit: int | None = None):
    """Yield (where, row) from `datasets.load_dataset` (a hub id, a local folder of data files or one
    file, a `save_to_disk` folder too), with our field names added by `columns` and rows kept by `where`;
    `limit`: at most that many rows."""
    import datasets
    from huggingface_hub import constants

    split, columns, where = split or "train", columns or {}, where or {}
    if not Path(name).exists() and not constants.HF_HUB_OFFLINE and not hub_reachable():
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
    kept = 0
    for i, row in enumerate(data):
        if kept == limit:
            return
        if all(row[c] in (v if isinstance(v, list) else [v]) for c, v in where.items()):
            kept += 1
            yield f"dataset {name} ({split}) row {i}", row | {ours: row[theirs] for ours, theirs in columns.items()}


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


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()



@cache
def hub_reachable() -> bool:
    """One quick connection to the hub (its retries take a minute per file when offline)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False

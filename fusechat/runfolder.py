"""The run folder: where each stage reads its input and writes its output.

Layout, for a stage `S` writing datasets `a` and `b`:

    run/S/manifest.json      written last: its presence means the stage finished
    run/S/a/                 Hugging Face dataset (datasets.load_from_disk)
    run/S/a.jsonl            the same records as JSONL
    run/S/shards/            finished work units of an unfinished stage (resume points)

A stage whose config hash and input fingerprint match its manifest is skipped. A stage killed
midway keeps its finished shards; on rerun with the same config and input it skips them and
ends with exactly the records an uninterrupted run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fusechat import FusechatError, __version__
from fusechat.records import stable_json


def config_hash(config) -> str:
    return hashlib.sha256(stable_json(config).encode()).hexdigest()[:16]


def only_new_unset_keys(stored, current) -> bool:
    """True when `current` differs from `stored` only by keys a later fusechat added, left unset (None).

    So an upgrade that adds a recipe option keeps the stages an older version finished.
    """
    current = json.loads(json.dumps(current, default=str))
    if isinstance(stored, dict) and isinstance(current, dict):
        return (set(stored) <= set(current)
                and all(only_new_unset_keys(stored[k], current[k]) for k in stored)
                and all(current[k] is None for k in set(current) - set(stored)))
    if isinstance(stored, list) and isinstance(current, list):
        return len(stored) == len(current) and all(map(only_new_unset_keys, stored, current))
    return stored == current


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old file or the whole new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonl_text(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FusechatError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
    return records


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"fusechat": __version__}
    for name in ("torch", "transformers", "datasets", "trl", "xllamacpp", "math-verify"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


@dataclass
class Stage:
    """One stage's folder inside a run folder."""

    run_dir: Path
    name: str
    config: dict
    input_fingerprint: str
    started: float = field(default_factory=time.time)

    @property
    def dir(self) -> Path:
        return Path(self.run_dir) / self.name

    @property
    def shard_dir(self) -> Path:
        return self.dir / "shards"

    def manifest(self) -> dict | None:
        path = self.dir / "manifest.json"
        return json.loads(path.read_text()) if path.exists() else None

    def is_done(self) -> bool:
        m = self.manifest()
        if m is None or m["input_fingerprint"] != self.input_fingerprint:
            return False
        return m["config_hash"] == config_hash(self.config) or only_new_unset_keys(m.get("config"), self.config)

    def begin(self) -> None:
        """Prepare to (re)run: keep finished shards only if they were made from the same config and input."""
        (self.dir / "manifest.json").unlink(missing_ok=True)
        key = {"config_hash": config_hash(self.config), "input_fingerprint": self.input_fingerprint}
        marker = self.shard_dir / "shards.json"
        if marker.exists() and json.loads(marker.read_text()) != key:
            shutil.rmtree(self.shard_dir)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, json.dumps(key))

    def has_shard(self, key: str) -> bool:
        return (self.shard_dir / f"{key}.jsonl").exists()

    def write_shard(self, key: str, records: list[dict]) -> None:
        write_atomic(self.shard_dir / f"{key}.jsonl", jsonl_text(records))

    def read_shard(self, key: str) -> list[dict]:
        return read_jsonl(self.shard_dir / f"{key}.jsonl")

    def finish(self, outputs: dict[str, list[dict]], counts: dict, **extra) -> dict:
        """Write every output dataset, then the manifest (last, atomically), then drop the shards."""
        import datasets

        datasets.disable_progress_bars()  # our own progress bars are enough
        digest = hashlib.sha256()
        for name, records in outputs.items():
            text = jsonl_text(records)
            digest.update(name.encode() + b"\0" + text.encode())
            write_atomic(self.dir / f"{name}.jsonl", text)
            tmp = self.dir / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            datasets.Dataset.from_list(records).save_to_disk(str(tmp))
            shutil.rmtree(self.dir / name, ignore_errors=True)
            os.replace(tmp, self.dir / name)
        manifest = {
            "stage": self.name,
            "config_hash": config_hash(self.config),
            "config": self.config,
            "input_fingerprint": self.input_fingerprint,
            "output_fingerprint": digest.hexdigest()[:16],
            "counts": counts,
            "seconds": round(time.time() - self.started, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": library_versions(),
            **extra,
        }
        write_atomic(self.dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        return manifest


def load_output(run_dir: Path, stage: str, name: str) -> tuple[list[dict], str]:
    """Records of a finished stage's output and that stage's output fingerprint."""
    folder = Path(run_dir) / stage
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FusechatError(f"{folder}: stage '{stage}' has not finished; run `fusechat {stage}` first")
    manifest = json.loads(manifest_path.read_text())
    return read_jsonl(folder / f"{name}.jsonl"), manifest["output_fingerprint"]

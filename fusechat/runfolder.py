"""The run folder: where each stage reads its input and writes its output, and the one place that
decides whether a stage is current.

Layout, for a stage `S` writing datasets `a` and `b`:

    run/S/manifest.json      written last: its presence means the stage finished
    run/S/a/                 Hugging Face dataset (datasets.load_from_disk)
    run/S/a.jsonl            the same records as JSONL
    run/S/shards/            the work area of an unfinished stage: finished work units (resume
                             points), checkpoints, files not yet moved into place

A stage is declared once (`StageDef`: its name, the stages it reads, the projection of the recipe
its result depends on, its work function). `RunFolder.run` does the rest for every stage: skip when
current, force, keep or drop resume shards, progress, main-process gating under `accelerate launch`,
and writing outputs and manifest. A stage is current when the hash of its settings, the output
fingerprints of the stages it reads, and its outputs on disk all match its manifest. A finished
stage's manifest is replaced only once its new work has succeeded: a rerun that fails on bad input
leaves the finished stage as it was.
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
from typing import Callable

from fusechat import FusechatError, __version__
from fusechat.hardware import describe
from fusechat.readers import file_digest
from fusechat.records import stable_json


def config_hash(config) -> str:
    return hashlib.sha256(stable_json(config).encode()).hexdigest()[:16]


def same_settings(stored, current) -> bool:
    """True when settings a stage finished with still hold, across fusechat versions: they may differ
    from `current` only by keys a later fusechat added and left unset (None), or keys it no longer
    hashes (a field since marked speed-only). So an upgrade never reruns a finished stage; any changed
    value does. (A recipe change never drops a key: every field is always in the projection.)
    """
    current = json.loads(json.dumps(current, default=str))
    if isinstance(stored, dict) and isinstance(current, dict):
        return (all(same_settings(stored[k], current[k]) for k in stored.keys() & current.keys())
                and all(current[k] is None for k in current.keys() - stored.keys()))
    if isinstance(stored, list) and isinstance(current, list):
        return len(stored) == len(current) and all(map(same_settings, stored, current))
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


def inside(folder: Path, *parts: str) -> Path:
    """`folder / parts`, refused in one line when it would resolve outside `folder`: the one guard that keeps
    names from recipes, models and datasets from becoming paths out of the run folder."""
    path = Path(folder).joinpath(*parts)
    if not path.resolve().is_relative_to(Path(folder).resolve()):
        raise FusechatError(f"{'/'.join(parts)}: would be written outside {folder}; a name must be one plain path component")
    return path


SHARD_FOOTER = "__fusechat_shard__"  # the key of a resume shard's last line


def jsonl_text(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def read_jsonl(path: Path) -> list[dict]:
    return list(iter_jsonl(path))


def iter_jsonl(path: Path):
    """The records of a JSONL file one at a time (a cluster run's samples do not fit in memory twice)."""
    with open(path, "rb") as f:
        yield from parse_jsonl(f, path)


def parse_jsonl(lines, path: Path):
    """The records of JSONL `lines` (bytes), each failure one line naming `path` and the line."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise FusechatError(f"{path}:{lineno}: not UTF-8") from None
        except json.JSONDecodeError as e:
            raise FusechatError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise FusechatError(f"{path}:{lineno}: expected a JSON object")
        yield record


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return None


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"fusechat": __version__}
    for name in ("torch", "transformers", "datasets", "trl", "xllamacpp", "math-verify"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


class NullProgress:
    """Stands in for a rich Progress when nobody watches (tests, library use, non-main processes)."""

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass


@dataclass
class Outputs:
    """What a stage's work returns; the run folder writes it.

    `datasets` are the stage's results: written as JSONL and HF dataset folders and fingerprinted.
    `logs` are written the same way but not fingerprinted (a loss curve holds wall times, which
    differ on every run). `files` maps a name in the stage folder to a file or folder the work made
    in its work area (a model, a page); they are moved into place and fingerprinted by content.
    """

    datasets: dict[str, list[dict]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    logs: dict[str, list[dict]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # more manifest fields (timings, the model's path, ...)


@dataclass(frozen=True)
class StageDef:
    """One pipeline stage, declared once (fusechat.pipeline.STAGES lists them in order)."""

    name: str
    work: Callable[["StageRun"], Outputs]
    settings: Callable  # recipe -> the part of it the result depends on (fusechat.recipe.*_settings)
    reads: tuple[str, ...] = ()  # stages that must have finished; their outputs are this stage's input
    # Of the stages read, the only outputs this one depends on ("build/sft"): a change to the read
    # stage's other outputs (the DPO pairs) then leaves this stage current.
    only: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()  # stages read when they have finished (eval, report)
    external: Callable | None = None  # recipe -> fingerprint of inputs outside the run folder (prompt files)
    distributed: bool = False  # runs in every process of `accelerate launch`; the main one writes
    parts: bool = False  # its shards can be shared out among K processes (`--part i/K`), e.g. over nodes


class Processes:
    """One process, or the processes of `accelerate launch` (for distributed stages)."""

    def __init__(self, distributed: bool):
        self.state = None
        if distributed:
            from accelerate import PartialState

            from fusechat.hardware import has_gpu

            self.state = PartialState(cpu=not has_gpu())  # gloo on a CPU

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()


class PartDone(Exception):
    """A `--part` process finished its share; the message says what is left (not an error)."""


@dataclass
class StageRun:
    """What a stage's work function gets: its recipe, its folders, its inputs and a progress bar."""

    folder: "RunFolder"
    name: str
    recipe: object
    settings: dict  # the part of the recipe this stage's result depends on
    input_fingerprint: str  # the output fingerprints of the stages it reads
    inputs: tuple[str, ...] = ()  # the stages it declared (reads + uses): the only ones it may open
    progress: object = field(default_factory=NullProgress)
    is_main: bool = True
    part: tuple[int, int] | None = None  # (i, K): this process does the i-th of K disjoint shares (1-based)

    def mine(self, n: int) -> bool:
        """Is the n-th work unit (shards numbered in the stage's own fixed order) this process's?"""
        return self.part is None or n % self.part[1] == self.part[0] - 1

    @property
    def key(self) -> dict:
        """Resume shards are kept only under the same key."""
        return {"config_hash": config_hash(self.settings), "input_fingerprint": self.input_fingerprint}

    def is_done(self) -> bool:
        return self.folder.is_current(self.name, self.settings, self.input_fingerprint)

    @property
    def dir(self) -> Path:
        return self.folder.stage_dir(self.name)

    @property
    def watched(self) -> bool:
        """Whether a progress bar is shown (libraries with their own bars, e.g. transformers', follow it)."""
        return not isinstance(self.progress, NullProgress)

    @property
    def work_dir(self) -> Path:
        return self.dir / "shards"

    def read(self, stage: str, name: str) -> list[dict]:
        return self.folder.records(self._declared(stage), name)

    def manifest(self, stage: str) -> dict | None:
        return self.folder.manifest(self._declared(stage))

    def model(self, stage: str) -> str:
        return self.folder.model(self._declared(stage))

    def _declared(self, stage: str) -> str:
        # An undeclared input would be missing from the input fingerprint: its changes would go unseen.
        if stage not in self.inputs:
            raise RuntimeError(f"stage '{self.name}' reads '{stage}' without declaring it in its StageDef")
        return stage

    def shard_path(self, key: str) -> Path:
        return inside(self.work_dir, f"{key}.jsonl")

    def has_shard(self, key: str) -> bool:
        return self.shard_path(key).exists()

    def write_shard(self, key: str, records: list[dict]) -> None:
        """The records, then a last line with their count and digest: a shard cut short (even at a line
        boundary) or edited is told from a whole one."""
        body = jsonl_text(records).encode("utf-8")
        footer = {SHARD_FOOTER: {"records": len(records), "sha256": hashlib.sha256(body).hexdigest()}}
        write_atomic(self.shard_path(key), body.decode("utf-8") + json.dumps(footer) + "\n")

    def read_shard(self, key: str) -> list[dict]:
        path = self.shard_path(key)
        data = path.read_bytes()
        body, _, last = data.rstrip(b"\n").rpartition(b"\n")
        body = body + b"\n" if body else b""
        try:
            footer = json.loads(last)[SHARD_FOOTER]
        except (ValueError, TypeError, KeyError):
            raise FusechatError(f"{path}: a damaged resume shard (its last line, the record count, is missing): "
                                f"delete it and rerun, that part is redone") from None
        records = list(parse_jsonl(body.splitlines(keepends=True), path))
        if footer.get("sha256") != hashlib.sha256(body).hexdigest() or footer.get("records") != len(records):
            raise FusechatError(f"{path}: a damaged resume shard ({len(records)} records, {footer.get('records')} "
                                f"written, or changed since): delete it and rerun, that part is redone")
        return records

    def prepare_work_dir(self) -> None:
        """Keep the work area of an interrupted run only if it was made with the same settings and input."""
        marker = self.work_dir / "shards.json"
        if marker.exists() and _json_or_none(marker) != self.key:
            shutil.rmtree(self.work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(marker, json.dumps(self.key))


def is_card(name: str) -> bool:
    """A card inside a stage's model folder (`model/README.md`) is documentation that later stages fill in
    (eval adds its results): outside the fingerprint and the intactness check, unlike the weights. A stage's
    own top-level README.md (the build's dataset card) is an output like any other."""
    return Path(name).name == "README.md" and "/" in str(name)


class RunFolder:
    """A run's folder: stage manifests, outputs, and running a stage only when it is not current."""

    def __init__(self, path: str | Path, shared: dict[str, "RunFolder"] | None = None):
        self.path = Path(path)
        # Stages this run reads from another run folder (a study's variants share the reference's
        # samples and scores, and any stage another variant already made with the same settings).
        self.shared = dict(shared or {})
        if self.path.exists() and not self.path.is_dir():
            raise FusechatError(f"{self.path}: the run folder is a file; set run_dir to a folder")

    def stage_dir(self, stage: str) -> Path:
        if stage in self.shared:
            return self.shared[stage].stage_dir(stage)
        return self.path / stage

    def manifest(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "manifest.json"
        if not path.exists():
            return None
        manifest = _json_or_none(path)
        if not isinstance(manifest, dict) or "output_fingerprint" not in manifest:
            # Written atomically by us, so damage came from outside: say so rather than guess.
            raise FusechatError(f"{path}: damaged (not a stage manifest); delete it and rerun to redo stage '{stage}'")
        return manifest

    def finished(self, stage: str) -> dict:
        manifest = self.manifest(stage)
        if manifest is None:
            raise FusechatError(f"{self.stage_dir(stage)}: stage '{stage}' has not finished; run `fusechat {stage}` first")
        return manifest

    def records(self, stage: str, name: str) -> list[dict]:
        """The records of a finished stage's output `name`, refused in one line unless they are the bytes the
        stage wrote (the size and digest its manifest recorded)."""
        manifest, path = self.finished(stage), self._output(stage, name)
        data = path.read_bytes()
        expected = (manifest.get("output_fingerprints") or {}).get(name)  # absent in manifests before 0.1
        if expected and hashlib.sha256(data).hexdigest()[:16] != expected:
            raise self._damaged(stage, path, "its content differs from what the stage wrote")
        return list(parse_jsonl(data.split(b"\n"), path))

    def iter_records(self, stage: str, name: str):
        """The records of a finished stage's output `name`, one at a time (its size checked, not its digest)."""
        self.finished(stage)
        return iter_jsonl(self._output(stage, name))

    def _output(self, stage: str, name: str) -> Path:
        path = self.stage_dir(stage) / f"{name}.jsonl"
        if not path.is_file():
            raise FusechatError(f"{path}: missing (deleted?); rerun `fusechat {stage}` to make it again")
        self.check_intact(stage)
        return path

    def check_intact(self, stage: str) -> None:
        """Every output of a finished stage has the size its manifest recorded; else one line saying what to redo."""
        for name, size in (self.finished(stage).get("outputs") or {}).items():
            path = self.stage_dir(stage) / name
            if is_card(name):
                continue
            if not path.is_file():
                raise self._damaged(stage, path, "it is missing")
            if path.stat().st_size != size:
                raise self._damaged(stage, path, f"it has {path.stat().st_size} bytes, the stage wrote {size}")

    def _damaged(self, stage: str, path: Path, why: str) -> FusechatError:
        return FusechatError(f"{path}: changed since stage '{stage}' finished ({why}); delete {self.stage_dir(stage)} "
                             f"and rerun `fusechat {stage}` (or `fusechat run`) to make it again")

    def model(self, stage: str) -> str:
        """The model folder a finished training stage wrote (refused if a file of it changed size since)."""
        self.check_intact(stage)
        return self.finished(stage)["model"]

    def input_fingerprint(self, stage: StageDef, recipe) -> str:
        for s in stage.reads:  # a stage never works from inputs damaged since they were made
            self.check_intact(s)
        parts = [self._fingerprint(s, self.finished(s), stage.only) for s in stage.reads]
        parts += [f"{s}={m['output_fingerprint']}" for s in stage.uses if (m := self.manifest(s))]
        if stage.external is not None and (outside := stage.external(recipe)):
            parts.append(outside)  # empty when there is nothing outside: older run folders stay current
        return ":".join(parts) or "none"

    @staticmethod
    def _fingerprint(stage: str, manifest: dict, only: tuple[str, ...]) -> str:
        names = [o.split("/", 1)[1] for o in only if o.startswith(stage + "/")]
        per_output = manifest.get("output_fingerprints") or {}
        if names and all(n in per_output for n in names):
            return "+".join(f"{stage}/{n}={per_output[n]}" for n in names)
        return manifest["output_fingerprint"]  # the whole stage (also manifests from before per-output ones)

    def is_current(self, stage: str, settings: dict, input_fingerprint: str) -> bool:
        m = self.manifest(stage)
        if m is None or m["input_fingerprint"] != input_fingerprint:
            return False
        if m["config_hash"] != config_hash(settings) and not same_settings(m.get("config"), settings):
            return False
        for name, size in (m.get("outputs") or {}).items():  # a deleted or truncated output is not current
            if is_card(name):
                continue
            path = self.stage_dir(stage) / name
            if not path.is_file() or path.stat().st_size != size:
                return False
            # a dataset's JSONL has its Arrow copy beside it (files a stage makes, in folders, have none)
            if name.endswith(".jsonl") and "/" not in name and not (self.stage_dir(stage) / name[: -len(".jsonl")]).is_dir():
                return False
        return True

    def run(self, stage: StageDef, recipe, force: bool = False, progress=None, part: tuple[int, int] | None = None,
            elsewhere: Callable[[], None] | None = None) -> dict:
        """Run `stage` unless it is current (or `force`); return its manifest (`skipped: True` when current).
        With `part` (i, K), do only this process's share of the work units and write no manifest: the stage is
        finished by a run without `part` once every part has finished (it then redoes nothing). `elsewhere`
        runs the stage in other processes (`accelerate launch`), which write the manifest."""
        if stage.name in self.shared:
            raise RuntimeError(f"stage '{stage.name}' of {self.path} is shared from {self.shared[stage.name].path}")
        run = StageRun(self, stage.name, recipe, stage.settings(recipe), self.input_fingerprint(stage, recipe),
                       stage.reads + stage.uses, part=part)
        if run.is_done() and not force:
            return self.manifest(stage.name) | {"skipped": True}
        if part is not None and (force or not stage.parts):
            raise FusechatError(f"stage '{stage.name}': --part " + ("and --force do not go together" if force
                                                                 else "is for the stages cut into shards by source (sample)"))
        if elsewhere is not None:
            elsewhere()
            return self.finished(stage.name)
        processes = Processes(stage.distributed)
        run.is_main = processes.is_main
        run.progress = progress if progress is not None and processes.is_main else NullProgress()
        started = time.time()
        if processes.is_main:
            run.prepare_work_dir()
        processes.wait()
        try:
            outputs = stage.work(run)
        except PartDone as done:
            return {"part_done": str(done)}
        manifest = {}
        if processes.is_main:
            manifest = self.write(stage.name, outputs, run.settings, run.input_fingerprint, started)
        processes.wait()
        return manifest

    def write(self, stage: str, out: Outputs, settings: dict | None = None, input_fingerprint: str = "none",
              started: float | None = None) -> dict:
        """Write a stage's outputs, then its manifest (last, atomically), then drop its work area."""
        import datasets

        datasets.disable_progress_bars()  # our own progress bars are enough
        folder = self.stage_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").unlink(missing_ok=True)  # from here until the end the stage reads unfinished
        digest, sizes, per_output = hashlib.sha256(), {}, {}
        for name, records in (out.datasets | out.logs).items():
            inside(folder, name)
            text = jsonl_text(records)
            if name in out.datasets:
                digest.update(name.encode() + b"\0" + text.encode())
                per_output[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
            write_atomic(folder / f"{name}.jsonl", text)
            sizes[f"{name}.jsonl"] = (folder / f"{name}.jsonl").stat().st_size
            tmp = folder / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            datasets.Dataset.from_list(records).save_to_disk(str(tmp))
            shutil.rmtree(folder / name, ignore_errors=True)
            os.replace(tmp, folder / name)
        for name, made in sorted(out.files.items()):
            target = inside(folder, name)
            if Path(made).resolve() != target.resolve():
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(made, target)
            own = hashlib.sha256()
            for path in sorted(target.rglob("*")) if target.is_dir() else [target]:
                rel = str(path.relative_to(folder))
                if path.is_file() and not is_card(rel):
                    digest.update(rel.encode() + b"\0" + file_digest(path).encode())
                    own.update(rel.encode() + b"\0" + file_digest(path).encode())
                    sizes[rel] = path.stat().st_size
            per_output[name] = own.hexdigest()[:16]
        settings = {} if settings is None else settings
        manifest = {
            "stage": stage,
            "config_hash": config_hash(settings),
            "config": settings,
            "input_fingerprint": input_fingerprint,
            "output_fingerprint": digest.hexdigest()[:16],
            "output_fingerprints": per_output,
            "outputs": sizes,
            "counts": out.counts,
            "seconds": round(time.time() - (started or time.time()), 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": library_versions(),
            "hardware": describe(),  # what "seconds" was measured on
            **out.extra,
        }
        write_atomic(folder / "manifest.json", json.dumps(manifest, indent=2, default=str))
        shutil.rmtree(folder / "shards", ignore_errors=True)
        return manifest

"""Stage 2, sample: N responses per prompt from every source model.

Input: `run/prompts/prompts`. Output: `run/sample/samples`, one record per response
(records.Sample). Work is cut into shards of prompts per source; a killed run resumes at the
first unfinished shard and never repeats or loses a sample.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from fusechat.backends.base import Generation, Request
from fusechat.backends.factory import open_backend
from fusechat.readers import files_digest
from fusechat.recipe import Source
from fusechat.records import Prompt, Sample, from_dict, stable_id, to_dict
from fusechat.runfolder import Outputs, PartDone, StageRun, write_atomic


def sample_seed(base: int, prompt_id: str, source: str, index: int) -> int:
    return int(stable_id(str(base), prompt_id, source, str(index))[:8], 16) & 0x7FFFFFFF


def shard_plan(prompts: list[Prompt], source: Source, size: int) -> list[tuple[str, list[Prompt]]]:
    """Deterministic shards for one source: its prompts sorted by length (less padding), cut in runs."""
    mine = sorted((p for p in prompts if source.samples_for(p.domain) > 0), key=lambda p: (len(p.prompt), p.id))
    return [
        (f"{source.name}-{i // size:05d}", mine[i : i + size])
        for i in range(0, len(mine), size)
    ]


def in_flight_groups(todo: list[tuple[str, list[Prompt]]], source: Source) -> list[list[tuple[str, list[Prompt]]]]:
    """Consecutive shards put together until they hold `in_flight` requests (one shard each when unset, but
    for vLLM). Under vLLM, a server or a dataset each request stands alone, so the samples do not depend
    on the grouping; transformers batches what it is given, so there a grouping changes batches."""
    limit = source.in_flight or (4096 if source.backend == "vllm" else 0)
    groups, current, size = [], [], 0
    for key, chunk in todo:
        n = sum(source.samples_for(p.domain) for p in chunk)
        if current and size + n > limit:
            groups.append(current)
            current, size = [], 0
        current.append((key, chunk))
        size += n
    return groups + [current] if current else groups


def sample_shard(backend, source: Source, prompts: list[Prompt], seed: int) -> list[dict]:
    requests, keys = [], []
    for p in prompts:
        for k in range(source.samples_for(p.domain)):
            requests.append(Request(p.messages(), sample_seed(seed, p.id, source.name, k)))
            keys.append((p, k))
    generations: list[Generation] = backend.generate(requests, source.sampling)
    return [
        to_dict(Sample(
            prompt_id=p.id, domain=p.domain, source=source.name, sample_index=k, seed=g.seed,
            text=g.text, prompt_tokens=g.prompt_tokens, completion_tokens=g.completion_tokens,
            finish_reason=g.finish_reason, error=g.error,
        ))
        for (p, k), g in zip(keys, generations)
    ]


def sample(run: StageRun) -> Outputs:
    """Every source's shards; with `run.part` (i, K) only every K-th shard (all sources' shards numbered in
    one fixed order), so K processes on any nodes that share the run folder fill it together; a run without
    a part then merges them (sampling only what is still missing)."""
    recipe = run.recipe
    prompts = [from_dict(Prompt, r, f"prompt {r.get('id')}") for r in run.read("prompts", "prompts")]
    seed = recipe.seed
    plans = {s.name: shard_plan(prompts, s, recipe.shard_size) for s in recipe.sources}
    numbered = [(s, key, chunk) for s in recipe.sources for key, chunk in plans[s.name]]
    mine = {key for n, (_, key, _) in enumerate(numbered) if run.mine(n)}
    total = sum(s.samples_for(p.domain) for s, key, chunk in numbered if key in mine for p in chunk)
    task = run.progress.add_task("sample", total=total)
    timings = {}
    for source in recipe.sources:
        todo = [(key, chunk) for key, chunk in plans[source.name] if key in mine and not run.has_shard(key)]
        done = sum(source.samples_for(p.domain) for key, chunk in plans[source.name] if key in mine and run.has_shard(key)
                   for p in chunk)
        run.progress.update(task, advance=done, description=f"sample {source.name}")
        if not todo:
            continue
        with open_backend(source, ctx_per_slot=source.sampling.max_new_tokens + 2048) as backend:
            started, tokens = time.time(), 0
            for group in in_flight_groups(todo, source):
                records = sample_shard(backend, source, [p for _, chunk in group for p in chunk], seed)
                for key, chunk in group:  # each shard written whole: a kill loses at most the group in flight
                    ids = {p.id for p in chunk}
                    run.write_shard(key, [r for r in records if r["prompt_id"] in ids])
                tokens += sum(r["completion_tokens"] for r in records)
                run.progress.update(task, advance=len(records))
        seconds = time.time() - started
        timings[source.name] = {"seconds": round(seconds, 2), "completion_tokens": tokens,
                                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "backend": source.backend}
    if run.part is not None:
        _keep_timings(run, timings)
        missing = [key for _, key, _ in numbered if not run.has_shard(key)]
        i, k = run.part
        raise PartDone(f"part {i}/{k} done: {len(mine)} of {len(numbered)} shards are its share; "
                       + (f"{len(missing)} of other parts' are still missing" if missing else
                          "every shard is there: `fusechat sample` (or `fusechat run`) merges them, sampling nothing again"))
    timings = _merged_timings(run, timings)

    records = [r for s in recipe.sources for key, _ in plans[s.name] for r in run.read_shard(key)]
    counts = {
        "samples": len(records),
        "by_source": dict(Counter(r["source"] for r in records)),
        "finish_reason": dict(Counter(r["finish_reason"] for r in records)),
    }
    return Outputs({"samples": records}, counts, extra={"timings": timings})


def _keep_timings(run: StageRun, timings: dict) -> None:
    """A part's speeds, kept in the work area for the merge's manifest (the plan reads speeds there)."""
    if timings:
        write_atomic(run.work_dir / f"timings-part-{run.part[0]}-of-{run.part[1]}-{time.time_ns()}.json", json.dumps(timings))


def _merged_timings(run: StageRun, timings: dict) -> dict:
    """This process's speeds, else the parts': their tokens and seconds summed per source."""
    if timings:
        return timings
    merged: dict = {}
    for path in sorted(run.work_dir.glob("timings-part-*.json")):
        for name, t in json.loads(path.read_text()).items():
            m = merged.setdefault(name, {"seconds": 0.0, "completion_tokens": 0, "backend": t["backend"]})
            m["seconds"] = round(m["seconds"] + t["seconds"], 2)
            m["completion_tokens"] += t["completion_tokens"]
    for m in merged.values():
        m["tokens_per_s"] = round(m["completion_tokens"] / max(m["seconds"], 1e-9), 1)
    return merged


def responses_fingerprint(recipe) -> str:
    """The contents of local response files and folders of `backend: dataset` sources (a hub dataset is
    named by its settings): an edited file resamples."""
    names = [s.responses.dataset for s in recipe.sources if s.responses]
    return files_digest(names) if names else ""

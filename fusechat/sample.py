"""Stage 2, sample: N responses per prompt from every source model.

Input: `run/prompts/prompts`. Output: `run/sample/samples`, one record per response
(records.Sample). Work is cut into shards of prompts per source; a killed run resumes at the
first unfinished shard and never repeats or loses a sample.
"""

from __future__ import annotations

import time
from collections import Counter

from fusechat.backends.base import Generation, Request
from fusechat.backends.factory import open_backend
from fusechat.readers import files_digest
from fusechat.recipe import Source
from fusechat.records import Prompt, Sample, from_dict, stable_id, to_dict
from fusechat.runfolder import Outputs, StageRun


def sample_seed(base: int, prompt_id: str, source: str, index: int) -> int:
    return int(stable_id(str(base), prompt_id, source, str(index))[:8], 16) & 0x7FFFFFFF


def shard_plan(prompts: list[Prompt], source: Source, size: int) -> list[tuple[str, list[Prompt]]]:
    """Deterministic shards for one source: its prompts sorted by length (less padding), cut in runs."""
    mine = sorted((p for p in prompts if source.samples_for(p.domain) > 0), key=lambda p: (len(p.prompt), p.id))
    return [
        (f"{source.name}-{i // size:05d}", mine[i : i + size])
        for i in range(0, len(mine), size)
    ]


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
    recipe = run.recipe
    prompts = [from_dict(Prompt, r, f"prompt {r.get('id')}") for r in run.read("prompts", "prompts")]
    seed = recipe.seed
    plans = {s.name: shard_plan(prompts, s, recipe.shard_size) for s in recipe.sources}
    total = sum(s.samples_for(p.domain) for s in recipe.sources for _, chunk in plans[s.name] for p in chunk)
    task = run.progress.add_task("sample", total=total)
    timings = {}
    for source in recipe.sources:
        todo = [(key, chunk) for key, chunk in plans[source.name] if not run.has_shard(key)]
        done = sum(source.samples_for(p.domain) for key, chunk in plans[source.name] if run.has_shard(key) for p in chunk)
        run.progress.update(task, advance=done, description=f"sample {source.name}")
        if not todo:
            continue
        with open_backend(source, ctx_per_slot=source.sampling.max_new_tokens + 2048) as backend:
            started, tokens = time.time(), 0
            for key, chunk in todo:
                records = sample_shard(backend, source, chunk, seed)
                run.write_shard(key, records)
                tokens += sum(r["completion_tokens"] for r in records)
                run.progress.update(task, advance=len(records))
        seconds = time.time() - started
        timings[source.name] = {"seconds": round(seconds, 2), "completion_tokens": tokens,
                                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "backend": source.backend}

    records = [r for s in recipe.sources for key, _ in plans[s.name] for r in run.read_shard(key)]
    counts = {
        "samples": len(records),
        "by_source": dict(Counter(r["source"] for r in records)),
        "finish_reason": dict(Counter(r["finish_reason"] for r in records)),
    }
    return Outputs({"samples": records}, counts, extra={"timings": timings})


def responses_fingerprint(recipe) -> str:
    """The contents of local response files and folders of `backend: dataset` sources (a hub dataset is
    named by its settings): an edited file resamples."""
    names = [s.responses.dataset for s in recipe.sources if s.responses]
    return files_digest(names) if names else ""

"""Stage 2, sample: N responses per prompt from every source model.

Input: `run/prompts/prompts`. Output: `run/sample/samples`, one record per response
(records.Sample). Work is cut into shards of prompts per source; a killed run resumes at the
first unfinished shard and never repeats or loses a sample.
"""

from __future__ import annotations

import time
from collections import Counter

from fusechat import models
from fusechat.recipe import Recipe, Source
from fusechat.records import Prompt, Sample, from_dict, stable_id, to_dict
from fusechat.runfolder import Stage, load_output
from fusechat.sample.backend import Generation, Request

def open_backend(source: Source, ctx_per_slot: int):
    """Load a source's model in its backend (picked by a plain match on the recipe's string)."""
    match source.backend:
        case "llamacpp":
            from fusechat.sample.llamacpp import LlamaCppBackend

            return LlamaCppBackend(models.resolve(source.model).gguf_path(), source.chat_template, source.batch_size,
                                   source.threads, ctx_per_slot)
        case "transformers":
            from fusechat.sample.hf import TransformersBackend

            return TransformersBackend(models.resolve(source.model).hf_path(), source.chat_template, source.dtype,
                                       source.batch_size, source.threads)
        case "openai":  # `model` is the name the server knows the model by
            from fusechat.sample.openai_api import OpenAIBackend

            return OpenAIBackend(source.endpoint, source.model, source.batch_size, source.api_key_env,
                                 source.request_timeout_s or 300.0, 8 if source.max_retries is None else source.max_retries)
        case "vllm":
            from fusechat.sample.vllm import VLLMBackend

            return VLLMBackend(models.resolve(source.model).hf_path(), source.chat_template, source.dtype,
                               source.tensor_parallel_size or 1, ctx_per_slot)


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


def run_sample(recipe: Recipe, force: bool = False, progress=None) -> dict:
    rows, fingerprint = load_output(recipe.run_path, "prompts", "prompts")
    prompts = [from_dict(Prompt, r, f"prompt {r.get('id')}") for r in rows]
    seed = recipe.seed
    config = {"sources": [s.model_dump() for s in recipe.sources], "seed": seed, "shard_size": recipe.shard_size}
    stage = Stage(recipe.run_path, "sample", config, fingerprint)
    if stage.is_done() and not force:
        return stage.manifest() | {"skipped": True}
    stage.begin()

    plans = {s.name: shard_plan(prompts, s, recipe.shard_size) for s in recipe.sources}
    total = sum(s.samples_for(p.domain) for s in recipe.sources for _, chunk in plans[s.name] for p in chunk)
    task = progress.add_task("sample", total=total) if progress else None
    timings = {}
    for source in recipe.sources:
        todo = [(key, chunk) for key, chunk in plans[source.name] if not stage.has_shard(key)]
        done = sum(source.samples_for(p.domain) for key, chunk in plans[source.name] if stage.has_shard(key) for p in chunk)
        if progress:
            progress.update(task, advance=done, description=f"sample {source.name}")
        if not todo:
            continue
        max_new = source.sampling.max_new_tokens
        backend = open_backend(source, ctx_per_slot=max_new + 2048)
        started, tokens = time.time(), 0
        try:
            for key, chunk in todo:
                records = sample_shard(backend, source, chunk, seed)
                stage.write_shard(key, records)
                tokens += sum(r["completion_tokens"] for r in records)
                if progress:
                    progress.update(task, advance=len(records))
        finally:
            backend.close()
        seconds = time.time() - started
        timings[source.name] = {"seconds": round(seconds, 2), "completion_tokens": tokens,
                                "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "backend": source.backend}

    records = [r for s in recipe.sources for key, _ in plans[s.name] for r in stage.read_shard(key)]
    counts = {
        "samples": len(records),
        "by_source": dict(Counter(r["source"] for r in records)),
        "finish_reason": dict(Counter(r["finish_reason"] for r in records)),
    }
    return stage.finish({"samples": records}, counts, timings=timings)

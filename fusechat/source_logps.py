"""Each source's log-probabilities of every DPO pair (opt-in: `build.source_logps: true`).

The fusion objectives that followed FuseChat-3.0 weigh a pair by what the source models make of it
(WRPO, InfiFPO, FuseRL); InfiFPO's data contract carries it as `fuse_chosen_logps` /
`fuse_rejected_logps` (summed over the answer's tokens) and `fuse_mean_*` (per token), one entry per
source. fusechat stores them on each pair as `source_logps: {source: {chosen, rejected, mean_chosen,
mean_rejected}}`, and `fusechat export-data --format infifpo` writes InfiFPO's fields.

Each source reads the pair through its own tokenizer and chat template, with the same tokenisation and
log-prob code DPO trains with (fusechat.sequences) and the same `dpo.max_length` window, so a source's
numbers describe the text the target is trained on. Sources are loaded one at a time with transformers
(a GGUF through its converted folder); an endpoint (`backend: openai`) or a dataset has no weights here
and is left out, said in the build's counts. No library computes this (TRL's DPOTrainer computes the
trained model's own reference log-probs only), hence this module.
"""

from __future__ import annotations

import torch

from fusechat import FusechatError
from fusechat.hardware import release_memory
from fusechat.models import resolve
from fusechat.sequences import collate, sequence_logps, tokenize_pairs

BATCH_PAIRS = 8  # pairs a forward pass; log-probs do not depend on it (each row is masked on its own)


def has_weights(source) -> bool:
    return source.backend not in ("openai", "dataset")


def pair_logps(model_path: str, rows: list[dict], max_length: int, on_batch=None) -> list[dict]:
    """{chosen, rejected, mean_chosen, mean_rejected} for every pair in `rows`, by the model at `model_path`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gpu = torch.cuda.is_available()
    try:  # exact fp32 on a CPU; bf16 over every GPU on a cluster (a 70B source holds no other way)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if gpu else torch.float32,
                                                     device_map="auto" if gpu else None).eval()
    except Exception as e:  # transformers raises many types; the user needs one line
        raise FusechatError(f"source '{model_path}' will not load for build.source_logps "
                            f"({str(e).splitlines()[0][:200]})") from None
    if not tokenizer.chat_template:
        raise FusechatError(f"{model_path}: the tokenizer has no chat template, so build.source_logps cannot render a pair")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    try:
        for start in range(0, len(rows), BATCH_PAIRS):
            pairs = tokenize_pairs(rows[start : start + BATCH_PAIRS], tokenizer, max_length)
            with torch.no_grad():
                logps, lengths = sequence_logps(model, collate(pairs, pad), bf16=False)
            n = len(pairs)
            for c, r, lc, lr in zip(logps[:n].tolist(), logps[n:].tolist(), lengths[:n].tolist(), lengths[n:].tolist()):
                out.append({"chosen": c, "rejected": r, "mean_chosen": c / max(lc, 1), "mean_rejected": r / max(lr, 1)})
            if on_batch:
                on_batch(n)
    finally:
        del model
        release_memory()
    return out


def add_source_logps(run, rows: list[dict], sources, max_length: int) -> dict:
    """Put every source's log-probs on each pair of `rows` (in place), one shard per source so a killed
    build redoes only the sources it had not finished. Returns the counts the build reports."""
    with_weights = [s for s in sources if has_weights(s)]
    task = run.progress.add_task("source log-probs", total=len(rows) * len(with_weights))
    for source in with_weights:
        key = f"logps-{source.name}"
        if not run.has_shard(key):
            found = pair_logps(resolve(source.model).hf_path(), rows, max_length,
                               lambda n: run.progress.update(task, advance=n))
            run.write_shard(key, [{"prompt_id": r["prompt_id"], **f} for r, f in zip(rows, found)])
        else:
            run.progress.update(task, advance=len(rows))
        by_id = {f["prompt_id"]: f for f in run.read_shard(key)}
        for r in rows:
            r.setdefault("source_logps", {})[source.name] = {k: v for k, v in by_id[r["prompt_id"]].items()
                                                             if k != "prompt_id"}
    return {"sources": [s.name for s in with_weights],
            "left_out": [f"{s.name} ({s.backend}: no weights here)" for s in sources if not has_weights(s)]}

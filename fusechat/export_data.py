"""`fusechat export-data RUN --format F`: the build's SFT set and DPO pairs as other trainers read them.

- trl: `sft.jsonl` ({"messages"}) and `dpo.jsonl` ({"prompt", "chosen", "rejected"}, message lists):
  TRL's conversational formats, which is what the build writes, less our bookkeeping fields.
- sharegpt: `sft.json` ({"conversations": [{"from": "human" | "gpt" | "system", "value"}]}) and
  `dpo.json` (the prompt's conversation plus "chosen" / "rejected" {"from": "gpt", "value"}).
- llama-factory: the sharegpt files plus `dataset_info.json` naming them `fusechat_sft` and
  `fusechat_dpo` (ranking), so `dataset_dir: OUT` and `dataset: fusechat_sft` train on them.
- openrlhf: `sft.jsonl` ({"messages"}: `--input_key messages --apply_chat_template`) and `dpo.jsonl`
  ({"chosen", "rejected"}, each the whole conversation: `--chosen_key chosen --rejected_key rejected
  --apply_chat_template`, OpenRLHF's layout when no prompt key is given).
- infifpo: the openrlhf files, each pair with every source's log-probs in InfiFPO's fields
  (`fuse_chosen_logps`, `fuse_rejected_logps`, `fuse_mean_chosen_logps`, `fuse_mean_rejected_logps`: one
  entry per source, in the order `fuse_sources` names); needs a build with `build.source_logps: true`.
  InfiFPO's `ref_*` fields are the trained model's own log-probs, which its trainer (like fusechat's
  dpo stage) computes at the start.

Each format is a few lines of re-keying, documented by its project (LLaMA-Factory's data/README,
OpenRLHF's datasets); no library converts between them, so this module does.
"""

from __future__ import annotations

import json
from pathlib import Path

from fusechat import FusechatError
from fusechat.runfolder import jsonl_text, read_jsonl, write_atomic

FORMATS = ("trl", "sharegpt", "llama-factory", "openrlhf", "infifpo")
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def sharegpt(messages: list[dict]) -> list[dict]:
    return [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in messages]


def convert(sft: list[dict], dpo: list[dict], fmt: str) -> dict[str, list[dict]]:
    """File name -> rows, for one format."""
    if fmt == "trl":
        return {"sft.jsonl": [{"messages": r["messages"]} for r in sft],
                "dpo.jsonl": [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in dpo]}
    if fmt in ("sharegpt", "llama-factory"):
        return {"sft.json": [{"conversations": sharegpt(r["messages"])} for r in sft],
                "dpo.json": [{"conversations": sharegpt(r["prompt"]), "chosen": sharegpt(r["chosen"])[-1],
                              "rejected": sharegpt(r["rejected"])[-1]} for r in dpo]}
    if fmt == "openrlhf":
        return {"sft.jsonl": [{"messages": r["messages"]} for r in sft],
                "dpo.jsonl": [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]} for r in dpo]}
    if fmt == "infifpo":
        return {"sft.jsonl": [{"messages": r["messages"]} for r in sft], "dpo.jsonl": [infifpo(r, i) for i, r in enumerate(dpo)]}
    raise FusechatError(f"--format: one of {', '.join(FORMATS)}, got '{fmt}'")


def infifpo(pair: dict, line: int) -> dict:
    if not pair.get("source_logps"):
        raise FusechatError(f"dpo.jsonl:{line + 1}: no source log-probs; build with `build.source_logps: true` "
                            "(--set build.source_logps=true) for --format infifpo")
    names = list(pair["source_logps"])
    row = {"chosen": pair["prompt"] + pair["chosen"], "rejected": pair["prompt"] + pair["rejected"], "fuse_sources": names}
    for ours, theirs in (("chosen", "fuse_chosen_logps"), ("rejected", "fuse_rejected_logps"),
                         ("mean_chosen", "fuse_mean_chosen_logps"), ("mean_rejected", "fuse_mean_rejected_logps")):
        row[theirs] = [pair["source_logps"][n][ours] for n in names]
    return row


def llama_factory_info() -> dict:
    """dataset_info.json entries for the sharegpt files (its default tags: from/value, human/gpt/system)."""
    return {"fusechat_sft": {"file_name": "sft.json", "formatting": "sharegpt", "columns": {"messages": "conversations"}},
            "fusechat_dpo": {"file_name": "dpo.json", "formatting": "sharegpt", "ranking": True,
                             "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}}


def export_data(build_dir: Path, out: Path, fmt: str) -> list[Path]:
    """Write the build's SFT set and pairs in format `fmt` under `out`; returns the files written."""
    sources = {name: build_dir / f"{name}.jsonl" for name in ("sft", "dpo")}
    for path in sources.values():
        if not path.is_file():
            raise FusechatError(f"{path}: missing; run `fusechat build` first")
    files = convert(read_jsonl(sources["sft"]), read_jsonl(sources["dpo"]), fmt)
    written = []
    for name, rows in files.items():
        text = jsonl_text(rows) if name.endswith(".jsonl") else json.dumps(rows, ensure_ascii=False, indent=1)
        write_atomic(out / name, text)
        written.append(out / name)
    if fmt == "llama-factory":
        write_atomic(out / "dataset_info.json", json.dumps(llama_factory_info(), indent=1))
        written.append(out / "dataset_info.json")
    return written

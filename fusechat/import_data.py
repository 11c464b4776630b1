"""Start at build from SFT and DPO data made elsewhere (`data:` in a recipe): FuseChat-3.0's released
sets (FuseAI/FuseChat-3.0-SFT-Data, FuseAI/FuseChat-3.0-DPO-Data) or any set in the same formats, so a
user trains and evaluates on the paper's own data with fusechat. The prompts, sample and score stages
do not run; this build stage reads the sets through `datasets.load_dataset` (a hub id, a local folder
or file take the same path) and writes what the build writes, so sft, dpo, eval, export-data and the
cards work unchanged.

Accepted rows (the formats TRL, LLaMA-Factory and the FuseChat-3.0 releases use):
- SFT: `messages` (role/content, the last one the assistant's), or ShareGPT's `conversations`
  (from/value), or `prompt` + `completion`, or Alpaca's `instruction` (+ `input`) + `output`;
- DPO: `chosen` / `rejected` as whole conversations (the prompt is their shared start), or with a
  separate `prompt`; each side a message list or a string.
A row that fits none of them is refused by its place (file and row), never skipped.
The domain of a row comes from `data.domain_column` (values mapped by `data.domains`; a value that is
already one of ours is kept), else every row is `instruction`.
"""

from __future__ import annotations

from collections import Counter

from fusechat import FusechatError
from fusechat.cards import dataset_card
from fusechat.readers import dataset_rows, files_digest
from fusechat.records import DOMAINS, stable_id
from fusechat.runfolder import Outputs, StageRun, library_versions, write_atomic

SHAREGPT = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _messages(value, where: str, key: str) -> list[dict]:
    """A conversation as role/content messages, from our format or ShareGPT's."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if not isinstance(value, list) or not value:
        raise FusechatError(f"{where}: `{key}` must be a non-empty list of messages or a string")
    out = []
    for m in value:
        if isinstance(m, dict) and "role" in m and isinstance(m.get("content"), str):
            out.append({"role": m["role"], "content": m["content"]})
        elif isinstance(m, dict) and m.get("from") in SHAREGPT and isinstance(m.get("value"), str):
            out.append({"role": SHAREGPT[m["from"]], "content": m["value"]})
        else:
            raise FusechatError(f"{where}: `{key}` holds a message without role/content (or from/value)")
    return out


def _prompt(value, where: str) -> list[dict]:
    return [{"role": "user", "content": value}] if isinstance(value, str) else _messages(value, where, "prompt")


def sft_example(row: dict, where: str) -> list[dict]:
    row = {k: v for k, v in row.items() if v is not None}  # a column another row has reads as None here
    if "messages" in row or "conversations" in row:
        key = "messages" if "messages" in row else "conversations"
        messages = _messages(row[key], where, key)
    elif "prompt" in row and "completion" in row:
        completion = row["completion"]
        messages = _prompt(row["prompt"], where) + (_messages(completion, where, "completion"))
    elif "instruction" in row and "output" in row:
        text = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": row["output"]}]
    else:
        raise FusechatError(f"{where}: an SFT row needs `messages`, `conversations`, `prompt`+`completion` "
                            f"or `instruction`+`output` (it has: {', '.join(row)})")
    if messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
        raise FusechatError(f"{where}: an SFT conversation must have a user turn and end with the assistant's")
    return messages


def dpo_pair(row: dict, where: str) -> tuple[list[dict], list[dict], list[dict]]:
    row = {k: v for k, v in row.items() if v is not None}
    if "chosen" not in row or "rejected" not in row:
        raise FusechatError(f"{where}: a DPO row needs `chosen` and `rejected` (it has: {', '.join(row)})")
    chosen, rejected = _messages(row["chosen"], where, "chosen"), _messages(row["rejected"], where, "rejected")
    if len(chosen) > 1 and len(rejected) > 1:  # whole conversations (a prompt key beside them is a copy): the prompt is what they share
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    elif row.get("prompt"):
        prompt = _prompt(row["prompt"], where)
    else:
        raise FusechatError(f"{where}: a DPO row needs a `prompt`, or `chosen` and `rejected` as whole conversations")
    if not prompt or prompt[-1]["role"] != "user":
        raise FusechatError(f"{where}: a DPO pair's prompt must end with a user turn")
    if len(chosen) != 1 or len(rejected) != 1 or chosen[0]["role"] != "assistant" or rejected[0]["role"] != "assistant":
        raise FusechatError(f"{where}: `chosen` and `rejected` must each end the prompt with one assistant answer")
    if chosen == rejected:
        raise FusechatError(f"{where}: `chosen` and `rejected` are the same answer (a pair teaches nothing)")
    return prompt, chosen, rejected


def _domain(row: dict, where: str, column: str | None, mapping: dict[str, str]) -> str:
    if column is None:
        return "instruction"
    if column not in row:
        raise FusechatError(f"{where}: no column '{column}' (data.domain_column)")
    value = str(row[column])
    domain = mapping.get(value, value)
    return domain if domain in DOMAINS else "instruction"


def data_rows(cfg, kind: str):
    """(where, row) of the `data:` section's `kind` set ("sft" or "dpo"): its split, its first `limit` rows."""
    return dataset_rows(cfg.sft if kind == "sft" else cfg.dpo, split=cfg.split, limit=cfg.limit)


def import_build(run: StageRun) -> Outputs:
    """The build stage of a recipe with `data:`: the sets re-keyed into the build's own rows."""
    cfg = run.recipe.data
    sft, dpo = [], []
    for where, row in data_rows(cfg, "sft") if cfg.sft else []:
        messages = sft_example(row, where)
        sft.append({"domain": _domain(row, where, cfg.domain_column, cfg.domains), "messages": messages,
                    "prompt_id": stable_id(*(m["content"] for m in messages[:-1])), "reward": None, "source": "imported"})
    for where, row in data_rows(cfg, "dpo") if cfg.dpo else []:
        prompt, chosen, rejected = dpo_pair(row, where)
        dpo.append({"domain": _domain(row, where, cfg.domain_column, cfg.domains), "prompt": prompt, "chosen": chosen,
                    "rejected": rejected, "chosen_reward": None, "rejected_reward": None,
                    "prompt_id": stable_id(*(m["content"] for m in prompt)), "source": "imported"})
    if not sft and not dpo:
        raise FusechatError(f"data: {cfg.sft or cfg.dpo} holds no rows")
    counts = {"sft": dict(Counter(r["domain"] for r in sft)), "dpo": dict(Counter(r["domain"] for r in dpo)),
              "dropped": {}, "imported_from": {"sft": cfg.sft, "dpo": cfg.dpo}}
    card = run.work_dir / "README.md"
    write_atomic(card, dataset_card(run.recipe, counts, None, library_versions()))
    return Outputs({"sft": sft, "dpo": dpo}, counts, files={"README.md": card})


def data_fingerprint(recipe) -> str:
    """Local data files are inputs: an edited file rebuilds (a hub id is pinned by its name and split)."""
    if recipe.data is None:
        return ""
    return files_digest([p for p in (recipe.data.sft, recipe.data.dpo) if p])

"""Stage 4, build: the SFT set and the DPO pairs, exactly as method.md §4.

Each prompt is used once: as one SFT example, as one DPO pair, or dropped with a counted reason.
- instruction: seeded 40:60 split; SFT = best response over all sources; DPO = one source's
  best vs its worst, reward gap inside the window (several valid: the highest chosen wins).
- math / code / instruction prompts with verifiable constraints: per source, its best correct vs its worst incorrect inside the window -> DPO;
  otherwise the best correct response overall -> SFT; no correct response -> dropped.
- chinese: SFT only, the single response.
Ties in reward are broken by source order (`build.tie_break`, else the recipe's), then by sample index.

Input: `run/prompts/prompts`, `run/score/scored`. Output: `run/build/sft` (`messages`) and
`run/build/dpo` (`prompt`/`chosen`/`rejected` as message lists): TRL's conversational formats.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from fusechat import FusechatError
from fusechat.analysis import source_table
from fusechat.recipe import BuildConfig
from fusechat.records import DPOPair, Prompt, SFTExample, from_dict, to_dict
from fusechat.source_logps import add_source_logps
from fusechat.cards import dataset_card
from fusechat.runfolder import Outputs, StageRun, library_versions, write_atomic

EPS = 1e-9  # the window is inclusive: 0.1 - 0.09 must count as 0.01


@dataclass
class BuildResult:
    sft: list[dict] = field(default_factory=list)
    dpo: list[dict] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)  # "domain/reason" -> prompts
    dropped_prompts: list[dict] = field(default_factory=list)  # each dropped prompt and its reason (the report's viewer)
    skipped_samples: Counter = field(default_factory=Counter)  # "reason" -> samples


def _nan(reward) -> bool:
    return isinstance(reward, float) and math.isnan(reward)


def _reward(s: dict) -> float:
    return s["reward"] if s["reward"] is not None else 0.0


class Ranker:
    """Orders samples: higher reward first; ties by source order, then sample index. An unscored sample
    (no reward) is taken only when no scored one is there, as best or as worst: its reward is unknown, not 0."""

    def __init__(self, source_order: list[str]):
        self.rank = {name: i for i, name in enumerate(source_order)}

    def best(self, samples: list[dict]) -> dict | None:
        return min(samples, key=lambda s: (s["reward"] is None, -_reward(s), self.rank[s["source"]], s["sample_index"]),
                   default=None)

    def worst(self, samples: list[dict]) -> dict | None:
        return min(samples, key=lambda s: (s["reward"] is None, _reward(s), self.rank[s["source"]], s["sample_index"]),
                   default=None)


def pair_is_valid(chosen: dict, rejected: dict, domain: str, cfg: BuildConfig, by_correctness: bool) -> bool:
    """Is (chosen, rejected) a usable preference? `by_correctness`: math/code, where correct beats incorrect."""
    if chosen is rejected:
        return False
    if chosen["reward"] is None or rejected["reward"] is None:
        return by_correctness  # no reward: correctness alone is the preference (instruction has none)
    gap = chosen["reward"] - rejected["reward"]
    if cfg.gap_window is not None and domain in cfg.window_domains:
        low, high = cfg.gap_window
        return low - EPS <= gap <= high + EPS
    return by_correctness or gap > EPS  # no window: any strict preference


def select_pair(groups: list[list[dict]], domain: str, cfg: BuildConfig, ranker: Ranker, by_correctness: bool):
    """The best valid (chosen, rejected) over candidate groups (one group per source, or one for all)."""
    candidates = []
    for group in groups:
        if by_correctness:
            chosen = ranker.best([s for s in group if s["correct"] is True and s["usable"]])
            rejected = ranker.worst([s for s in group if s["correct"] is False])
        else:
            usable = [s for s in group if s["usable"]]
            chosen, rejected = ranker.best(usable), ranker.worst(usable)
        if chosen is not None and rejected is not None and pair_is_valid(chosen, rejected, domain, cfg, by_correctness):
            candidates.append((chosen, rejected))
    if not candidates:
        return None
    return min(candidates, key=lambda cr: (-_reward(cr[0]), ranker.rank[cr[0]["source"]], cr[0]["sample_index"]))


def _sft(prompt: Prompt, s: dict) -> dict:
    return to_dict(SFTExample(
        messages=prompt.messages() + [{"role": "assistant", "content": s["text"]}],
        prompt_id=prompt.id, domain=prompt.domain, source=s["source"], reward=s["reward"],
    ))


def _dpo(prompt: Prompt, chosen: dict, rejected: dict) -> dict:
    source = chosen["source"] if chosen["source"] == rejected["source"] else f"{chosen['source']}+{rejected['source']}"
    return to_dict(DPOPair(
        prompt=prompt.messages(),
        chosen=[{"role": "assistant", "content": chosen["text"]}],
        rejected=[{"role": "assistant", "content": rejected["text"]}],
        prompt_id=prompt.id, domain=prompt.domain, source=source,
        chosen_reward=chosen["reward"], rejected_reward=rejected["reward"],
    ))


def build_datasets(prompts: list[Prompt], scored: list[dict], cfg: BuildConfig, source_order: list[str],
                   sft_fraction: float = 0.4, split_seed: int = 0) -> BuildResult:
    keep = set(cfg.sources or source_order) - set(cfg.exclude_sources)
    order = [s for s in source_order if s in keep]
    ranker = Ranker(order)
    result = BuildResult()
    by_prompt = defaultdict(list)
    for s in scored:
        if s["source"] not in keep:
            continue
        s = dict(s)
        if _nan(s["reward"]):  # a reward model's NaN: this sample only
            result.skipped_samples["nan_reward"] += 1
            continue
        reason = ("sampling_error" if s["finish_reason"] == "error" else "empty" if not s["text"].strip()
                  else "truncated" if cfg.drop_truncated and s["finish_reason"] == "length" else "")
        if reason:
            result.skipped_samples[reason] += 1
        s["usable"] = not reason
        if s["finish_reason"] != "error" and s["text"].strip():
            by_prompt[s["prompt_id"]].append(s)

    def groups_of(samples):
        return [[s for s in samples if s["source"] == name] for name in order] if cfg.pairing == "same-source" else [samples]

    dpo_ids = None  # instruction_split "pairs": the open instruction prompts that go to DPO
    if cfg.instruction_split == "pairs":
        open_ids = sorted(p.id for p in prompts if p.domain == "instruction" and not p.constraints)
        paired = [i for i in open_ids if select_pair(groups_of(by_prompt.get(i, [])), "instruction", cfg, ranker, False)]
        random.Random(split_seed).shuffle(paired)
        dpo_ids = set(paired[: round(len(open_ids) * (1 - sft_fraction))])

    for prompt in prompts:
        samples = by_prompt.get(prompt.id, [])
        domain = prompt.domain
        def drop(reason: str, prompt=prompt, domain=domain) -> None:
            result.dropped.update({f"{domain}/{reason}": 1})
            result.dropped_prompts.append({"prompt_id": prompt.id, "domain": domain, "reason": reason,
                                           "prompt": prompt.prompt})
        usable = [s for s in samples if s["usable"]]
        groups = groups_of(samples)
        if not samples:
            drop("no_responses")
        elif domain == "chinese":
            first = min(usable, key=lambda s: (ranker.rank[s["source"]], s["sample_index"]), default=None)
            result.sft.append(_sft(prompt, first)) if first else drop("no_usable_response")
        elif domain == "instruction" and not prompt.constraints:
            split = prompt.split if dpo_ids is None else "dpo" if prompt.id in dpo_ids else "sft"
            if split == "sft":
                best = ranker.best(usable)
                result.sft.append(_sft(prompt, best)) if best else drop("no_usable_response")
            else:
                pair = select_pair(groups, domain, cfg, ranker, by_correctness=False)
                result.dpo.append(_dpo(prompt, *pair)) if pair else drop("no_pair_in_window")
        else:  # math, code, instruction with verifiable constraints
            if any(s["correct"] is None for s in samples):
                drop("unparseable_gold")
                continue
            pair = select_pair(groups, domain, cfg, ranker, by_correctness=True)
            if pair:
                result.dpo.append(_dpo(prompt, *pair))
                continue
            best = ranker.best([s for s in usable if s["correct"]])
            if best:
                result.sft.append(_sft(prompt, best))
            else:
                drop({"math": "no_correct", "code": "all_failed"}.get(domain, "constraints_broken"))
    return result


def check_scored(records: list[dict], path, prompt_ids: set[str], sources: set[str]) -> None:
    """Scored records are ours, but users edit and merge them: refuse a bad one by its line, and one that
    names a prompt or source this run does not have (it would be built silently, or dropped)."""
    for lineno, r in enumerate(records, 1):
        for key in ("prompt_id", "source", "domain", "text", "reward", "correct"):
            if key not in r:
                raise FusechatError(f"{path}:{lineno}: scored record has no `{key}`")
        if r["prompt_id"] not in prompt_ids:
            raise FusechatError(f"{path}:{lineno}: scored record names prompt {r['prompt_id']!r:.60}, which is not in this "
                                f"run's prompts (scored for another prompt set? rerun `fusechat score --force`)")
        if r["source"] not in sources:
            raise FusechatError(f"{path}:{lineno}: scored record names source {r['source']!r:.60}, which is not in the "
                                f"recipe's sources ({', '.join(sorted(sources))})")
        reward = r["reward"]  # a NaN is a number here: build skips that sample and counts it
        if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))):
            raise FusechatError(f"{path}:{lineno}: `reward` must be a number or null, got {reward!r:.40}")
        if r["correct"] not in (None, True, False):
            raise FusechatError(f"{path}:{lineno}: `correct` must be true, false or null, got {r['correct']!r:.40}")


def build(run: StageRun) -> Outputs:
    recipe = run.recipe
    prompts = [from_dict(Prompt, r, f"prompt {r.get('id')}") for r in run.read("prompts", "prompts")]
    order = recipe.build.tie_break or [s.name for s in recipe.sources]
    keep = set(recipe.build.sources or order) - set(recipe.build.exclude_sources)
    scored = run.read("score", "scored")
    check_scored(scored, run.folder.stage_dir("score") / "scored.jsonl", {p.id for p in prompts},
                 {s.name for s in recipe.sources})
    result = build_datasets(prompts, scored, recipe.build, order, recipe.prompts.sft_fraction, recipe.prompts.split_seed)
    counts = {
        "sft": dict(Counter(r["domain"] for r in result.sft)),
        "dpo": dict(Counter(r["domain"] for r in result.dpo)),
        "dropped": dict(result.dropped),
        "skipped_samples": dict(result.skipped_samples),
        "sft_sources": dict(Counter(f"{r['domain']}/{r['source']}" for r in result.sft)),
        "dpo_sources": dict(Counter(f"{r['domain']}/{r['source']}" for r in result.dpo)),
        "source_table": source_table([r for r in scored if r["source"] in keep and not _nan(r["reward"])], result.sft, result.dpo,
                                     [s for s in order if s in keep]),
    }
    if recipe.build.source_logps and result.dpo:  # opt-in: every source reads every pair (fusechat.source_logps)
        counts["source_logps"] = add_source_logps(run, result.dpo, recipe.sources, recipe.dpo.max_length)
    # The dataset card (README.md) travels with the data: `fusechat publish` pushes the folder as it is.
    card = run.work_dir / "README.md"
    write_atomic(card, dataset_card(recipe, counts, (run.manifest("score") or {}).get("counts"), library_versions()))
    return Outputs({"sft": result.sft, "dpo": result.dpo, "dropped": result.dropped_prompts}, counts,
                   files={"README.md": card})

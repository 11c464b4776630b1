"""What the data says about the sources and the reward: two tables computed from plain records.

- `source_table` (build manifest, report): per domain and source, how many samples it gave, how
  often they were correct, their mean reward, and its share of the SFT answers and of the DPO pairs'
  chosen responses; per domain, the "any source correct" oracle against each source alone.
- `reward_bias` (score manifest, report): per source, the reward's mean and spread and its
  correlation with response length; the same correlation across sources; how often the best-rewarded
  answer of a prompt is also its longest; and the chosen/rejected length ratio of the pairs that
  same-source and cross-source pairing would make. A reward that mostly measures length, or that
  favours one source's style, shows here: that is the case for pairing within a source (method.md §4).

Lengths are in characters: token counts differ between the sources' tokenizers. Each table's Markdown
(`source_markdown`, `bias_markdown`) lives beside it, for the reports and the dataset card.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from fusechat.markdown import fmt, md_table
from fusechat.stats import paired_bootstrap

def _mean(xs):
    return round(statistics.fmean(xs), 4) if xs else None


def _corr(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation; None when either side is constant or there are fewer than 3 points."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return round(statistics.correlation(xs, ys), 4)


def has_check(record: dict) -> bool:
    return record["correct"] is not None


def source_table(scored: list[dict], sft: list[dict], dpo: list[dict], sources: list[str]) -> dict:
    """{"rows": [per domain and source], "oracle": {domain: {"any": rate, source: rate}}}."""
    rows = []
    by = defaultdict(list)
    for s in scored:
        by[(s["domain"], s["source"])].append(s)
    sft_by = defaultdict(lambda: defaultdict(int))
    for r in sft:
        sft_by[r["domain"]][r["source"]] += 1
    dpo_by = defaultdict(lambda: defaultdict(int))
    for r in dpo:
        dpo_by[r["domain"]][r["source"].split("+")[0]] += 1  # cross-source pairs are "chosen+rejected"
    domains = sorted({d for d, _ in by})
    for domain in domains:
        n_sft, n_dpo = sum(sft_by[domain].values()), sum(dpo_by[domain].values())
        for source in sources:
            samples = by.get((domain, source), [])
            if not samples:
                continue
            checked = [s["correct"] for s in samples if has_check(s)]
            rewards = [s["reward"] for s in samples if s["reward"] is not None]
            rows.append({
                "domain": domain, "source": source, "samples": len(samples),
                "correct_rate": _mean([float(c) for c in checked]),
                "mean_reward": _mean(rewards),
                "sft_share": round(sft_by[domain][source] / n_sft, 4) if n_sft else None,
                "dpo_share": round(dpo_by[domain][source] / n_dpo, 4) if n_dpo else None,
            })
    return {"rows": rows, "oracle": oracle(scored, sources)}


def training_lengths(sft: list[dict], dpo: list[dict]) -> dict[str, dict]:
    """Per domain, the median answer length (characters) of the SFT answers and of DPO's chosen and
    rejected ones. DPO starts from the SFT model: chosen answers in another style (math SFT answers that
    are one line from one source, pairs that are paragraphs from another) pull it toward that style."""
    def last(messages):
        return messages[-1]["content"] if isinstance(messages, list) and messages else ""

    out: dict[str, dict] = {}
    for domain in sorted({r["domain"] for r in sft} | {r["domain"] for r in dpo}):
        s = [len(last(r["messages"])) for r in sft if r["domain"] == domain]
        c = [len(last(r["chosen"])) for r in dpo if r["domain"] == domain]
        rej = [len(last(r["rejected"])) for r in dpo if r["domain"] == domain]
        out[domain] = {"sft": len(s), "sft_median": statistics.median(s) if s else None, "pairs": len(c),
                       "chosen_median": statistics.median(c) if c else None,
                       "rejected_median": statistics.median(rej) if rej else None}
    return out


def oracle(scored: list[dict], sources: list[str]) -> dict:
    """Per checked domain: the share of prompts some source answered correctly, and each source's own."""
    solved = defaultdict(lambda: defaultdict(set))  # domain -> source -> prompt ids solved
    asked = defaultdict(set)
    for s in scored:
        if not has_check(s):
            continue
        asked[s["domain"]].add(s["prompt_id"])
        if s["correct"]:
            solved[s["domain"]][s["source"]].add(s["prompt_id"])
    out = {}
    for domain, prompts in sorted(asked.items()):
        n = len(prompts)
        row = {"prompts": n, "any": round(len(set().union(*solved[domain].values())) / n, 4)}
        row |= {source: round(len(solved[domain][source]) / n, 4) for source in sources}
        out[domain] = row
    return out


def _length_ratio(pairs: list[tuple[dict, dict]]) -> dict:
    ratios = [len(c["text"]) / max(1, len(r["text"])) for c, r in pairs]
    return {"pairs": len(ratios), "median_ratio": round(statistics.median(ratios), 4) if ratios else None,
            "chosen_longer": _mean([float(x > 1) for x in ratios])}


def reward_bias(scored: list[dict], sources: list[str]) -> dict:
    """The reward's relation to length and to the source, from the records that have one."""
    rewarded = [s for s in scored if s["reward"] is not None and s["text"].strip()]
    per_source = []
    for source in sources:
        mine = [s for s in rewarded if s["source"] == source]
        if not mine:
            continue
        rewards = [s["reward"] for s in mine]
        per_source.append({
            "source": source, "n": len(mine), "mean": _mean(rewards),
            "sd": round(statistics.pstdev(rewards), 4), "mean_length": _mean([len(s["text"]) for s in mine]),
            "length_corr": _corr([len(s["text"]) for s in mine], rewards),
        })
    by_prompt = defaultdict(list)
    for s in rewarded:
        by_prompt[s["prompt_id"]].append(s)
    best_is_longest, chance, same, cross = [], [], [], []
    for samples in by_prompt.values():
        key = lambda s: (s["reward"], -sources.index(s["source"]) if s["source"] in sources else 0, -s["sample_index"])  # noqa: E731
        if len({s["source"] for s in samples}) >= 2:
            best = max(samples, key=key)
            best_is_longest.append(float(len(best["text"]) == max(len(s["text"]) for s in samples)))
            chance.append(1 / len(samples))
            worst = min(samples, key=key)
            if best["reward"] > worst["reward"]:
                cross.append((best, worst))
        for source in {s["source"] for s in samples}:
            group = [s for s in samples if s["source"] == source]
            best, worst = max(group, key=key), min(group, key=key)
            if best["reward"] > worst["reward"]:
                same.append((best, worst))
    return {
        "rewarded": len(rewarded),
        "per_source": per_source,
        "length_corr_all": _corr([len(s["text"]) for s in rewarded], [s["reward"] for s in rewarded]),
        "best_is_longest": {"prompts": len(best_is_longest), "rate": _mean(best_is_longest), "chance": _mean(chance)},
        "same_source_pairs": _length_ratio(same),
        "cross_source_pairs": _length_ratio(cross),
        # Our judge grades one answer at a time (P(Yes)): there is no answer order to swap, so it has no
        # position bias to measure. A pairwise judge would report its flip rate here.
        "position_flip": None,
    }


def source_markdown(table: dict) -> str:
    rows = [[r["domain"], r["source"], r["samples"], fmt(r["correct_rate"]), fmt(r["mean_reward"], 3), fmt(r["sft_share"]),
             fmt(r["dpo_share"])] for r in table["rows"]]
    text = md_table(["domain", "source", "samples", "correct rate", "mean reward", "share of SFT answers",
                      "share of DPO chosen"], rows)
    if table.get("oracle"):
        sources = [k for k in next(iter(table["oracle"].values())) if k not in ("prompts", "any")]
        text += "\n\nPrompts solved by at least one sample (the \"any source\" oracle) vs each source alone:\n\n"
        text += md_table(["domain", "prompts", "any source"] + sources,
                          [[d, o["prompts"], fmt(o["any"])] + [fmt(o[s]) for s in sources] for d, o in table["oracle"].items()])
    return text


def bias_markdown(bias: dict) -> str:
    if not bias.get("rewarded"):
        return "No response has a reward in this run."
    text = md_table(["source", "rewarded", "mean", "sd", "mean length (chars)", "corr(reward, length)"],
                     [[s["source"], s["n"], fmt(s["mean"], 3), fmt(s["sd"], 3), fmt(s["mean_length"], 0), fmt(s["length_corr"])]
                      for s in bias["per_source"]])
    b, same, cross = bias["best_is_longest"], bias["same_source_pairs"], bias["cross_source_pairs"]
    text += (f"\n\n- corr(reward, length) over all sources: {fmt(bias['length_corr_all'])}"
             f"\n- the best-rewarded answer is also the longest in {fmt(b['rate'])} of {b['prompts']} prompts "
             f"answered by several sources (chance: {fmt(b['chance'])})"
             f"\n- chosen/rejected length, median ratio: same-source pairs {fmt(same['median_ratio'])} "
             f"(chosen longer in {fmt(same['chosen_longer'])} of {same['pairs']}), cross-source pairs "
             f"{fmt(cross['median_ratio'])} (chosen longer in {fmt(cross['chosen_longer'])} of {cross['pairs']})"
             f"\n- position bias: {'flip rate ' + fmt(bias['position_flip']) if bias.get('position_flip') is not None else 'not applicable: the judge grades one answer at a time (P(Yes)), so there is no answer order to swap'}")
    return text


# ---- did fusion pay? -----------------------------------------------------------------------------------

# The run's steps: what SFT did to the base, what DPO did after SFT, and the whole fusion.
STEPS = (("sft", "base", "SFT - base"), ("sft+dpo", "sft", "DPO step"), ("sft+dpo", "base", "fused - base"))


def step_verdict(low: float, high: float, n: int) -> str:
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return f"undecided at n = {n}"


def paired(a: dict[str, float], b: dict[str, float], weigh=None) -> dict:
    """mean(a) - mean(b) on the items both have, with the paired bootstrap 95% interval and a verdict;
    `weigh(ids)`: those items' weights, for a benchmark whose score is a weighted mean (None: alike)."""
    keys = sorted(a.keys() & b.keys())
    w = weigh(keys) if weigh and keys else None
    diff, low, high = paired_bootstrap([a[k] for k in keys], [b[k] for k in keys], weights=[w[k] for k in keys] if w else None)
    return {"n": len(keys), "diff": diff, "ci_low": low, "ci_high": high,
            "verdict": step_verdict(low, high, len(keys)) if keys else "no common items"}


def by_model(items: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """(benchmark, model) -> {item id: score}, from the eval stage's items (unscored ones left out)."""
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for r in items:
        if r.get("score") is not None:
            out[(r["benchmark"], r["model"])][r["id"]] = float(r["score"])
    return out


def fusion_table(items: list[dict], win_rates: set[str] = frozenset(), item_weights=None) -> list[dict]:
    """Per benchmark: each model's mean and each step's paired difference (STEPS). A win rate judged against
    the base (0.5 a tie) has no base scores, so its steps from the base are the win rate - 0.5; one judged
    against a fixed baseline (the set's own) pairs the base's win rate like any score.
    `item_weights(bench, {id: group})`: weights for a benchmark whose score is a weighted mean of its items
    (fusechat.benchmarks.item_weights), so its means and steps are the benchmark's own score's."""
    scores = by_model(items)
    groups = {(r["benchmark"], r["id"]): r["group"] for r in items if r.get("group") is not None}
    rows = []
    for bench in dict.fromkeys(r["benchmark"] for r in items):
        def weigh(ids, bench=bench):
            return item_weights(bench, {i: groups[(bench, i)] for i in ids if (bench, i) in groups}) if item_weights else None

        means = {}
        for (b, m), v in scores.items():
            if b == bench and v:
                w = weigh(list(v))
                means[m] = sum(w[k] * x for k, x in v.items()) / sum(w.values()) if w else statistics.fmean(v.values())
        steps = {}
        for better, worse, name in STEPS:
            a = scores.get((bench, better))
            b = scores.get((bench, worse))
            if a and not b and bench in win_rates and worse == "base":  # judged against the base itself: a tie
                b = {k: 0.5 for k in a}
            if a and b:
                steps[name] = paired(a, b, weigh)
        rows.append({"benchmark": bench, "means": means, "steps": steps})
    return rows


def fusion_sentence(rows: list[dict]) -> str:
    """One sentence: on how many benchmarks the fused model beat, lost to, or tied with the base."""
    fused = {r["benchmark"]: r["steps"]["fused - base"] for r in rows if "fused - base" in r["steps"]}
    if not fused:
        return "No benchmark has both the base and the fused (SFT+DPO) model's answers: nothing to compare yet."
    groups = defaultdict(list)
    for bench, step in fused.items():
        groups[step["verdict"].split(" at ")[0]].append(bench)
    parts = [f"{kind} on {len(groups[kind])} ({', '.join(groups[kind])})" for kind in ("better", "worse", "undecided")
             if groups[kind]]
    return (f"Did fusion pay? The fused model (SFT+DPO) against the base target, paired on the same items "
            f"({len(fused)} benchmark(s)): " + "; ".join(parts) + ".")


def fusion_markdown(rows: list[dict], label=lambda bench: bench, paper: dict[str, str] | None = None) -> str:
    """The paired table; `paper` (benchmark -> the paper's "base → SFT → SFT+DPO", %) adds its column."""
    def cell(step):
        if step is None:
            return "-"
        return f"{step['diff']:+.3f} [{step['ci_low']:+.3f}, {step['ci_high']:+.3f}] {step['verdict']}"

    table = [[label(r["benchmark"]), *(fmt(r["means"].get(m), 3) for m in ("base", "sft", "sft+dpo")),
              *(cell(r["steps"].get(name)) for _, _, name in STEPS), *([paper.get(r["benchmark"], "-")] if paper else [])]
             for r in rows]
    return md_table(["benchmark", "base", "SFT", "SFT+DPO", *(f"{name} (95% CI)" for _, _, name in STEPS),
                     *(["the paper: base → SFT → SFT+DPO (%; MT-Bench and AlignBench 1-10)"] if paper else [])], table)


def compare_runs(items_a: list[dict], items_b: list[dict]) -> list[dict]:
    """Two runs evaluated on the same items: per benchmark and model both have, mean A - mean B, paired."""
    a, b = by_model(items_a), by_model(items_b)
    rows = []
    for key in [k for k in a if k in b]:
        common = a[key].keys() & b[key].keys()
        if not common:
            continue
        rows.append({"benchmark": key[0], "model": key[1], "a": statistics.fmean(a[key][i] for i in common),
                     "b": statistics.fmean(b[key][i] for i in common)} | paired(a[key], b[key]))
    return rows

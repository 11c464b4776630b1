"""The study report: every variant against the reference on the same items, and a verdict per claim.

`compare` pairs two models' scores item by item (fusechat.stats: paired bootstrap 95%
interval of the difference; McNemar's exact test where scores are pass/fail). A claim "A beats B on
X" is *supported* when the interval lies above zero, *contradicted* when it lies below, and
*undecided at this sample size* otherwise. Written as Markdown and HTML with one plot
(`study/differences.png`), next to the source and reward-bias tables of the reference run.
"""

from __future__ import annotations

import json
from pathlib import Path

from fusechat import benchmarks
from fusechat.analysis import bias_markdown, source_markdown
from fusechat.markdown import fmt, md_table, to_html
from fusechat.hardware import measured_on
from fusechat.stats import detectable_difference, mcnemar, seeded_bootstrap, wilson
from fusechat.runfolder import write_atomic

def compare(better: dict, worse: dict, benchmark: str, resamples: int = 2000) -> dict:
    """Paired difference better - worse. Each side maps a training seed to that run's
    {(benchmark, item id): score} (seed None: not trained, the base).

    Two trained models are compared at the seeds both ran, seed against seed (same batch order; for a
    variant that shares the reference's data it is the same model); the base against every seed of the
    other. With several seeds the seeds are resampled too (stats.seeded_bootstrap)."""
    if None in better or None in worse or not better.keys() & worse.keys():
        seeds_b, seeds_w, paired = sorted(better, key=str), sorted(worse, key=str), False
    else:
        seeds_b = seeds_w = sorted(better.keys() & worse.keys(), key=str)
        paired = True
    runs = [better[s] for s in seeds_b] + [worse[s] for s in seeds_w]
    keys = sorted(k for k in set.intersection(*(set(run) for run in runs)) if k[0] == benchmark)
    a = [[better[s][k] for k in keys] for s in seeds_b]
    b = [[worse[s][k] for k in keys] for s in seeds_w]
    diff, low, high = seeded_bootstrap(a, b, resamples, pair_seeds=paired)
    row = {"benchmark": benchmark, "n": len(keys), "seeds": [seeds_b, seeds_w], "diff": diff, "ci_low": low,
           "ci_high": high, "verdict": verdict(low, high) if keys else "no items"}
    if keys and len(a) == len(b) == 1 and set(a[0]) | set(b[0]) <= {0.0, 1.0}:
        row["only_better"], row["only_worse"], row["mcnemar_p"] = mcnemar(a[0], b[0])
    return row


def verdict(low: float, high: float) -> str:
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "undecided"


def within_noise(row: dict, noise: float | None) -> dict:
    """The row with the seed noise attached; a decided verdict inside the noise becomes 'within seed noise'."""
    if noise is None:
        return row
    row = row | {"seed_noise": noise}
    if row["verdict"] in ("supported", "contradicted") and abs(row["diff"]) <= noise:
        row["verdict"] = "within seed noise"
    return row


def seed_spread(items: dict[str, dict], benches: list[str]) -> dict[str, float]:
    """Per benchmark, the largest difference between two training seeds of one variant: the training noise."""
    spread: dict[str, float] = {}
    for runs in items.values():
        for bench in benches:
            means = [mean_score(run, bench) for run in runs.values()]
            means = [m for m in means if m is not None]
            if len(means) > 1:
                spread[bench] = max(spread.get(bench, 0.0), max(means) - min(means))
    return spread


def mean_score(run: dict, bench: str) -> float | None:
    vals = [v for (b, _), v in run.items() if b == bench]
    return sum(vals) / len(vals) if vals else None


def claim_sentence(claim, rows: list[dict]) -> tuple[str, str]:
    """(overall verdict, one sentence) for a claim from its per-benchmark rows."""
    verdicts = {r["verdict"] for r in rows}
    if verdicts == {"supported"}:
        overall = "supported"
    elif "contradicted" in verdicts:
        overall = "contradicted" if "supported" not in verdicts else "mixed"
    elif "supported" in verdicts:
        overall = "partly supported"
    elif "within seed noise" in verdicts:
        overall = "undecided: within seed noise"
    else:
        overall = "undecided at this sample size"
    parts = [f"{r['verdict']} on {benchmarks.short_label(r['benchmark'])} ({r['diff']:+.3f} [{r['ci_low']:+.3f}, "
             f"{r['ci_high']:+.3f}], n={r['n']}" + (f", seeds {seeds_text(r)}" if "seeds" in r else "")
             + (f", seed noise {r['seed_noise']:.3f}" if "seed_noise" in r else "") + ")" for r in rows]
    return overall, f"{claim.claim}: {overall} — " + "; ".join(parts) + "."


def seeds_text(row: dict) -> str:
    """'0,1 vs 0,1', '0 vs 0', '0,1 vs —' (— : the untrained base)."""
    side = lambda seeds: ",".join("—" if s is None else str(s) for s in seeds)  # noqa: E731
    return f"{side(row['seeds'][0])} vs {side(row['seeds'][1])}"


def study_tables(study, items: dict) -> dict:
    """Scores, differences from the reference, and claims, as plain data (also written as JSON).

    `items[model]` maps a training seed (None for the untrained base) to that run's
    {(benchmark, item id): score}; a plain run is one at seed 0 (None for "base"). A model's score is the
    mean over its seeds. Where a trained model ran at a single seed, its interval knows nothing of
    training noise: if a variant ran at several seeds, a difference no larger than their spread is
    reported as within seed noise."""
    items = {m: (runs if not runs or not isinstance(next(iter(runs)), tuple) else {None if m == "base" else 0: runs})
             for m, runs in items.items()}
    benches = sorted({b for runs in items.values() for run in runs.values() for b, _ in run})
    reference = items[study.reference]
    noise = seed_spread(items, benches)

    def noise_for(bench: str, row: dict) -> float | None:
        single = any(len(seeds) == 1 and seeds != [None] for seeds in row["seeds"])
        return noise.get(bench) if single else None

    def pair(better: str, worse: str, bench: str) -> dict:
        row = compare(items[better], items[worse], bench, study.resamples)
        return within_noise(row, noise_for(bench, row))

    scores, diffs = [], []
    for model, runs in items.items():
        for bench in benches:
            per_seed = [mean_score(run, bench) for run in runs.values()]
            if None in per_seed:
                continue
            vals = [v for (b, _), v in next(iter(runs.values())).items() if b == bench]
            n, mean = len(vals), sum(per_seed) / len(per_seed)
            binary = len(runs) == 1 and set(vals) <= {0.0, 1.0}
            low, high = wilson(sum(vals), n) if binary else (float("nan"), float("nan"))
            scores.append({"model": model, "benchmark": bench, "score": mean, "ci_low": low, "ci_high": high, "n": n,
                           "seed_scores": per_seed})
            if model != study.reference:
                diffs.append({"model": model} | pair(model, study.reference, bench))
    claims = []
    for c in study.claims:
        if c.better not in items or c.worse not in items:
            claims.append({"claim": c.claim, "better": c.better, "worse": c.worse, "verdict": "not run yet",
                           "sentence": f"{c.claim}: not run yet.", "rows": []})
            continue
        rows = [pair(c.better, c.worse, b) for b in c.benchmarks]
        overall, sentence = claim_sentence(c, rows)
        claims.append({"claim": c.claim, "better": c.better, "worse": c.worse, "verdict": overall,
                       "sentence": sentence, "rows": rows})
    seeded = {m: len(runs) for m, runs in items.items() if len(runs) > 1}
    return {"benchmarks": benches, "scores": scores, "differences": diffs, "claims": claims,
            "seed_noise": noise, "seeded": seeded, "sizing": sizing(items, study.reference, benches)}


def sizing(items: dict[str, dict], reference: str, benches: list[str]) -> dict[str, dict]:
    """Per benchmark, from the reference's (seed-mean) per-item differences from the base: the smallest
    difference these items detect with 80% power, and the items a 5-point difference would need."""
    if "base" not in items:
        return {}
    out = {}
    for bench in benches:
        runs = list(items[reference].values()) + list(items["base"].values())
        keys = sorted(k for k in set.intersection(*(set(run) for run in runs)) if k[0] == bench)
        if len(keys) < 2:
            continue
        diffs = [sum(run[k] for run in items[reference].values()) / len(items[reference])
                 - sum(run[k] for run in items["base"].values()) / len(items["base"]) for k in keys]
        mde, needed = detectable_difference(diffs)
        out[bench] = {"n": len(keys), "detectable_80": mde, "items_for_0.05": needed}
    return out


def plot_differences(tables: dict, reference: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = tables["benchmarks"]
    fig, axes = plt.subplots(1, len(benches), figsize=(4.2 * len(benches), 0.45 * len({d["model"] for d in tables["differences"]}) + 1.6),
                             sharey=True, squeeze=False)
    models = sorted({d["model"] for d in tables["differences"]})
    for ax, bench in zip(axes[0], benches):
        rows = {d["model"]: d for d in tables["differences"] if d["benchmark"] == bench}
        for y, m in enumerate(models):
            d = rows.get(m)
            if d is None or d["n"] == 0:
                continue
            colour = {"supported": "tab:green", "contradicted": "tab:red"}.get(d["verdict"], "tab:gray")
            ax.errorbar(d["diff"], y, xerr=[[d["diff"] - d["ci_low"]], [d["ci_high"] - d["diff"]]], fmt="o", color=colour, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"variant − {reference}", fontsize=8)
        ax.set_title(f"{benchmarks.short_label(bench)} (n={max((r['n'] for r in rows.values()), default=0)})", fontsize=9)
        ax.set_yticks(range(len(models)), models, fontsize=8)
    fig.suptitle(f"difference from '{reference}' (paired bootstrap 95% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(study, tables: dict, times: list[dict], source: dict | None, bias: dict | None) -> str:
    ref = study.reference
    seeded = tables.get("seeded") or {}
    out = [f"# Study `{study.name}`: does fusion pay?", "",
           f"Every model answers the first n items of the same benchmarks; a difference pairs the items both answered "
           f"(bootstrap 95% interval, "
           f"{study.resamples} resamples, items drawn jointly) and pass/fail benchmarks also get McNemar's exact test. "
           f"'base' is the target before training; every other row is a variant's final model. Reference: `{ref}`.", "",
           "## Claims", ""]
    out += [f"- **{c['verdict']}** — {c['sentence']}" for c in tables["claims"]] or ["(no claims listed)"]
    if seeded:
        trained = ", ".join(f"`{m}` at {k} seeds" for m, k in seeded.items())
        spread = "; ".join(f"{benchmarks.short_label(b)} {v:.3f}" for b, v in tables["seed_noise"].items())
        out += ["", f"Training noise: {trained} (the seed orders the training batches). A model's score is the mean "
                f"over its seeds, and an interval involving one resamples its seeds as well as the items, so it "
                f"covers how training went (crudely, with this few seeds). The largest difference between two seeds of "
                f"one variant: {spread}. A variant trained at one seed has no such cover: its difference, when no "
                "larger than that spread, is reported as *within seed noise* whatever its interval says."]
    if tables.get("sizing"):
        out += ["", "Sizing (from the per-item differences between `" + ref + "` and the base, 5% level, 80% power): "
                + "; ".join(f"{benchmarks.short_label(b)}: n={s['n']} detects {s['detectable_80']:.3f}, a 0.05 difference needs "
                            f"~{s['items_for_0.05']} items" for b, s in tables["sizing"].items()) + "."]
    if tables.get("pending"):
        out += ["", f"Variants still to run: {', '.join(tables['pending'])} (this report is rewritten after each variant)."]
    out += ["", "## Scores (95% Wilson interval; for a model trained at several seeds, the mean and each seed's score)", ""]
    models = list(dict.fromkeys(s["model"] for s in tables["scores"]))
    by = {(s["model"], s["benchmark"]): s for s in tables["scores"]}
    rows = []
    for m in models:
        row = [m]
        for b in tables["benchmarks"]:
            s = by.get((m, b))
            if s is None:
                row.append("—")
            elif len(s.get("seed_scores", [])) > 1:
                row.append(f"{s['score']:.3f} (seeds: {', '.join(f'{v:.3f}' for v in s['seed_scores'])}) (n={s['n']})")
            else:
                row.append(f"{s['score']:.3f} [{fmt(s['ci_low'], 3)}, {fmt(s['ci_high'], 3)}] (n={s['n']})")
        rows.append(row)
    out.append(md_table(["model"] + [benchmarks.short_label(b) for b in tables["benchmarks"]], rows))
    if tables.get("answer_length"):
        lengths = tables["answer_length"]
        out += ["", "Mean answer length (characters; over seeds):", "",
                md_table(["model"] + [benchmarks.short_label(b) for b in tables["benchmarks"]],
                         [[m] + [fmt(lengths[m].get(b), 0) for b in tables["benchmarks"]] for m in models if m in lengths])]
    out += ["", f"## Differences from `{ref}` (paired)", "", "Two trained models meet at the training seeds both "
            "ran (seed against seed); the base meets every seed of the other.", "", "![differences](differences.png)", ""]
    rows = []
    for d in tables["differences"]:
        mc = f"{d['only_better']}/{d['only_worse']}, p={d['mcnemar_p']:.3g}" if "mcnemar_p" in d else "—"
        side = {"supported": "above 0", "contradicted": "below 0"}.get(d["verdict"], "includes 0")
        if d["verdict"] == "within seed noise":
            side = f"{'above' if d['diff'] > 0 else 'below'} 0, within seed noise"
        rows.append([d["model"], benchmarks.short_label(d["benchmark"]), f"{d['diff']:+.3f}",
                     f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]", f"{d['ci_high'] - d['ci_low']:.3f}", mc, d["n"],
                     seeds_text(d), side])
    out.append(md_table(["model", "benchmark", "diff", "95% CI", "CI width", "McNemar (model-only / ref-only wins)", "n",
                          "seeds", "interval"], rows))
    out += ["", "## Wall time per stage and variant (seconds; '= X': made by variant X, not redone)", ""]
    stages = [k for k in times[0] if k != "variant"] if times else []
    own = [sum(t[s] for s in stages if isinstance(t[s], (int, float))) for t in times]
    out.append(md_table(["variant"] + stages + ["own total"],
                         [[t["variant"]] + [fmt(t[s], 1) for s in stages] + [fmt(float(o), 1)] for t, o in zip(times, own)]))
    out += ["", f"The whole study: {sum(own) / 60:.1f} minutes of stage time{measured_on(tables.get('hardware') or {})}."]
    if source:
        out += ["", f"## Source contribution (`{ref}` build)", "", source_markdown(source)]
    if tables.get("training_length"):
        out += ["", f"Training answers (`{ref}` build), median length in characters: DPO starts from the SFT model, "
                "and chosen answers in another style than the SFT answers pull it toward that style.", "",
                md_table(["domain", "SFT answers", "median", "DPO pairs", "chosen median", "rejected median"],
                         [[d, v["sft"], fmt(v["sft_median"], 0), v["pairs"], fmt(v["chosen_median"], 0),
                           fmt(v["rejected_median"], 0)] for d, v in tables["training_length"].items()])]
    if bias:
        out += ["", "## Reward bias (score stage)", "", bias_markdown(bias)]
    return "\n".join(out) + "\n"


def write_study_report(study, tables: dict, times: list[dict], source: dict | None, bias: dict | None) -> tuple[Path, bool]:
    """Write report.md, report.html, tables.json and the plot under `study_dir/report`; (md path, changed?)."""
    out = study.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(study, tables, times, source, bias)
    md = out / "report.md"
    if md.exists() and md.read_text(encoding="utf-8") == text and (out / "differences.png").exists():
        return md, False
    plot_differences(tables, study.reference, out / "differences.png")
    write_atomic(out / "tables.json", json.dumps(tables | {"stage_times": times}, indent=2, default=str))
    write_atomic(out / "report.html", to_html(text, study.name))
    write_atomic(md, text)
    return md, True

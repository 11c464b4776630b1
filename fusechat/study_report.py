"""The study report: every variant against the reference on the same items, and a verdict per claim.

`compare` pairs two models' scores item by item (fusechat.evaluate.stats: paired bootstrap 95%
interval of the difference; McNemar's exact test where scores are pass/fail). A claim "A beats B on
X" is *supported* when the interval lies above zero, *contradicted* when it lies below, and
*undecided at this sample size* otherwise. Written as Markdown and HTML with one plot
(`study/differences.png`), next to the source and reward-bias tables of the reference run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from fusechat.analysis import fmt
from fusechat.evaluate.stats import mcnemar, paired_bootstrap, wilson
from fusechat.runfolder import write_atomic

LABELS = {"math": "held-out math", "constraints": "constraint accuracy", "humaneval": "HumanEval pass@1",
          "mtbench": "MT-Bench win rate", "alpaca_eval": "AlpacaEval 2 win rate", "arena_hard": "Arena-Hard win rate"}


def compare(better: dict, worse: dict, benchmark: str, resamples: int = 2000) -> dict:
    """Paired difference better - worse on the items both were scored on."""
    keys = sorted(k for k in better.keys() & worse.keys() if k[0] == benchmark)
    a, b = [better[k] for k in keys], [worse[k] for k in keys]
    diff, low, high = paired_bootstrap(a, b, resamples)
    row = {"benchmark": benchmark, "n": len(keys), "diff": diff, "ci_low": low, "ci_high": high,
           "verdict": verdict(low, high) if keys else "no items"}
    if keys and set(a) | set(b) <= {0.0, 1.0}:
        row["only_better"], row["only_worse"], row["mcnemar_p"] = mcnemar(a, b)
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
    parts = [f"{r['verdict']} on {LABELS.get(r['benchmark'], r['benchmark'])} ({r['diff']:+.3f} [{r['ci_low']:+.3f}, "
             f"{r['ci_high']:+.3f}], n={r['n']}" + (f", seed noise {r['seed_noise']:.3f}" if "seed_noise" in r else "")
             + ")" for r in rows]
    return overall, f"{claim.claim}: {overall} — " + "; ".join(parts) + "."


def study_tables(study, items: dict[str, dict]) -> dict:
    """Scores, differences from the reference, and claims, as plain data (also written as JSON)."""
    benchmarks = sorted({b for scores in items.values() for b, _ in scores})
    reference = items[study.reference]
    scores, diffs = [], []
    for model, mine in items.items():
        for bench in benchmarks:
            vals = [v for (b, _), v in mine.items() if b == bench]
            if not vals:
                continue
            n, mean = len(vals), sum(vals) / len(vals)
            low, high = wilson(sum(vals), n) if set(vals) <= {0.0, 1.0} else (float("nan"), float("nan"))
            scores.append({"model": model, "benchmark": bench, "score": mean, "ci_low": low, "ci_high": high, "n": n})
            if model != study.reference:
                diffs.append({"model": model} | compare(mine, reference, bench, study.resamples))
    # Seed noise: the largest |difference| between the reference and a rerun of it with another training
    # seed (already among the differences above); a difference no larger could be the seed alone.
    noise: dict[str, float] = {}
    for d in diffs:
        if d["model"] in getattr(study, "replicates", []):
            noise[d["benchmark"]] = max(noise.get(d["benchmark"], 0.0), abs(d["diff"]))
    claims = []
    for c in study.claims:
        if c.better not in items or c.worse not in items:
            claims.append({"claim": c.claim, "better": c.better, "worse": c.worse, "verdict": "not run yet",
                           "sentence": f"{c.claim}: not run yet.", "rows": []})
            continue
        rows = [within_noise(compare(items[c.better], items[c.worse], b, study.resamples), noise.get(b))
                for b in c.benchmarks]
        overall, sentence = claim_sentence(c, rows)
        claims.append({"claim": c.claim, "better": c.better, "worse": c.worse, "verdict": overall,
                       "sentence": sentence, "rows": rows})
    return {"benchmarks": benchmarks, "scores": scores, "differences": diffs, "claims": claims,
            "seed_noise": noise}


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
        ax.set_title(f"{LABELS.get(bench, bench)} (n={max((r['n'] for r in rows.values()), default=0)})", fontsize=9)
        ax.set_yticks(range(len(models)), models, fontsize=8)
    fig.suptitle(f"difference from '{reference}' (paired bootstrap 95% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(study, tables: dict, times: list[dict], source: dict | None, bias: dict | None) -> str:
    ref = study.reference
    out = [f"# Study `{study.name}`: does fusion pay?", "",
           f"Every model is evaluated on the same items; differences are paired (bootstrap 95% interval, "
           f"{study.resamples} resamples, items drawn jointly) and pass/fail benchmarks also get McNemar's exact test. "
           f"'base' is the target before training; every other row is a variant's final model. Reference: `{ref}`.", "",
           "## Claims", ""]
    out += [f"- **{c['verdict']}** — {c['sentence']}" for c in tables["claims"]] or ["(no claims listed)"]
    if tables.get("seed_noise"):
        spread = "; ".join(f"{LABELS.get(b, b)} {v:.3f}" for b, v in tables["seed_noise"].items())
        out += ["", f"Training noise ({', '.join(study.replicates)}: `{ref}` again with another training seed): the "
                f"largest difference between them is {spread}. The intervals cover which items were drawn, not how "
                "training went; a difference no larger than this is reported as *within seed noise*."]
    if tables.get("pending"):
        out += ["", f"Variants still to run: {', '.join(tables['pending'])} (this report is rewritten after each variant)."]
    out += ["", "## Scores (95% Wilson interval)", ""]
    models = list(dict.fromkeys(s["model"] for s in tables["scores"]))
    by = {(s["model"], s["benchmark"]): s for s in tables["scores"]}
    rows = []
    for m in models:
        row = [m]
        for b in tables["benchmarks"]:
            s = by.get((m, b))
            row.append(f"{s['score']:.3f} [{fmt(s['ci_low'], 3)}, {fmt(s['ci_high'], 3)}] (n={s['n']})" if s else "—")
        rows.append(row)
    out.append(md_table(["model"] + [LABELS.get(b, b) for b in tables["benchmarks"]], rows))
    out += ["", f"## Differences from `{ref}` (paired)", "", "![differences](differences.png)", ""]
    rows = []
    for d in tables["differences"]:
        mc = f"{d['only_better']}/{d['only_worse']}, p={d['mcnemar_p']:.3g}" if "mcnemar_p" in d else "—"
        rows.append([d["model"], LABELS.get(d["benchmark"], d["benchmark"]), f"{d['diff']:+.3f}",
                     f"[{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]", f"{d['ci_high'] - d['ci_low']:.3f}", mc, d["n"],
                     {"supported": "above 0", "contradicted": "below 0"}.get(d["verdict"], "includes 0")])
    out.append(md_table(["model", "benchmark", "diff", "95% CI", "CI width", "McNemar (model-only / ref-only wins)", "n",
                          "interval"], rows))
    out += ["", "## Wall time per stage and variant (seconds; '= X': made by variant X, not redone)", ""]
    stages = [k for k in times[0] if k != "variant"] if times else []
    own = [sum(t[s] for s in stages if isinstance(t[s], (int, float))) for t in times]
    out.append(md_table(["variant"] + stages + ["own total"],
                         [[t["variant"]] + [fmt(t[s], 1) for s in stages] + [fmt(float(o), 1)] for t, o in zip(times, own)]))
    out += ["", f"The whole study: {sum(own) / 60:.1f} minutes of stage time."]
    if source:
        out += ["", f"## Source contribution (`{ref}` build)", "", source_markdown(source)]
    if bias:
        out += ["", "## Reward bias (score stage)", "", bias_markdown(bias)]
    return "\n".join(out) + "\n"


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


def to_html(markdown_text: str, title: str) -> str:
    """A small Markdown subset (headings, lists, tables, the image) as one page beside its plot."""
    style = "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body>{markdown_body(markdown_text)}</body></html>\n")


def markdown_body(markdown_text: str) -> str:
    """HTML for the Markdown we write ourselves: headings, bullet lists, pipe tables, one image."""
    body, in_table = [], False
    for line in markdown_text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cells) + "</tr>")
                continue
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("!["):
            body.append('<img src="differences.png" style="max-width:100%">')
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:]).replace('**', '')}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    return "".join(body)

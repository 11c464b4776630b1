"""Stage 8, report: one self-contained HTML page (plots inlined) and a Markdown summary.

It leads with the answer: did fusion pay? One sentence and one table per benchmark, base -> SFT ->
SFT+DPO, each step's paired difference on the run's own eval items with its 95% interval and a verdict
(fusechat.analysis.fusion_table). Then the evaluation plot, what each stage made (in words; the JSON
stays in the manifests), the source and reward-bias tables, score distributions, the pairs' gaps and
who supplied the data, training curves (one quantity per axis), and, folded, the resolved recipe and
library versions. Output: `run/report/report.html`, `run/report/report.md`, `run/report/*.png`. Like
every stage it reruns only when a stage it reads has new output.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections import Counter, defaultdict

import yaml

from fusechat import benchmarks
from fusechat.benchmarks.paper import paper_column
from fusechat.cards import hub_id
from fusechat.recipe import eval_judge
from fusechat.analysis import STEPS, bias_markdown, fusion_markdown, fusion_sentence, fusion_table, source_markdown
from fusechat.hardware import measured_on
from fusechat.markdown import fmt, markdown_body
from fusechat.records import STAGE_ORDER
from fusechat.runfolder import Outputs, StageRun, write_atomic
from fusechat.viewer import (disagreement_rows, dpo_rows, dropped_rows, eval_rows, sample_rows, sft_rows,
                             viewer_html, write_viewer)

REPORTED = STAGE_ORDER[: STAGE_ORDER.index("report")]  # every stage before this one, in order


def _read(run: StageRun, stage: str, name: str) -> list[dict]:
    return run.read(stage, name) if run.manifest(stage) else []


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scores(scored: list[dict]):
    plt = _figure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    rewards = defaultdict(list)
    correct = defaultdict(list)
    for s in scored:
        if s["reward"] is not None:
            rewards[f"{s['source']} / {s['domain']}"].append(s["reward"])
        if s["correct"] is not None:
            correct[(s["domain"], s["source"])].append(float(s["correct"]))
    for label, values in sorted(rewards.items()):
        left.hist(values, bins=20, alpha=0.55, label=label)
    left.set_title("reward of every sample")
    left.set_xlabel("reward")
    left.set_ylabel("samples")
    left.legend(fontsize=7)
    keys = sorted(correct)
    right.bar([f"{d}\n{s}" for d, s in keys], [sum(v) / len(v) for v in (correct[k] for k in keys)], color="tab:green")
    right.set_ylim(0, 1)
    right.set_ylabel("share of samples")
    right.set_title("share of samples correct (math) / passing (code)")
    right.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


def plot_pairs(dpo: list[dict], sft: list[dict]):
    plt = _figure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    gaps = [p["chosen_reward"] - p["rejected_reward"] for p in dpo if p["chosen_reward"] is not None and p["rejected_reward"] is not None]
    left.hist(gaps, bins=20, color="tab:purple")
    left.set_title(f"reward gap of the {len(gaps)} DPO pairs with rewards")
    left.set_xlabel("r(chosen) - r(rejected)")
    left.set_ylabel("pairs")
    supplied = Counter((f"{kind}/{r['domain']}", r["source"]) for kind, rows in (("SFT", sft), ("DPO", dpo)) for r in rows)
    groups = sorted({g for g, _ in supplied})
    sources = sorted({s for _, s in supplied})
    bottom = [0] * len(groups)
    for source in sources:
        values = [supplied[(g, source)] for g in groups]
        right.bar(groups, values, bottom=bottom, label=source)
        bottom = [b + v for b, v in zip(bottom, values)]
    right.set_title("which source supplied the training data")
    right.set_ylabel("SFT examples / DPO pairs")
    right.tick_params(axis="x", labelsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_training(sft_log: list[dict], dpo_log: list[dict]):
    """Loss curves and the DPO margins, one quantity per axis (the summed margin is tens of times the
    length-normalised one: on one axis the latter is a flat line)."""
    plt = _figure()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    steps = [e for e in sft_log if "loss" in e]
    panels = [(axes[0], steps, "loss", "SFT loss", "loss (mean per token)", "tab:blue"),
              (axes[1], dpo_log, "loss", "DPO loss", "loss (mean per pair)", "tab:red"),
              (axes[2], dpo_log, "margin_summed", "DPO margin, summed", "log-ratio margin (summed)", "tab:purple"),
              (axes[3], dpo_log, "margin_normalised", "DPO margin, per token", "log-ratio margin / tokens", "tab:green")]
    for ax, log, key, title, ylabel, colour in panels:
        ax.plot([e["step"] for e in log if key in e], [e[key] for e in log if key in e], marker=".", color=colour)
        ax.set_title(title, fontsize=11)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("optimizer step")
    fig.tight_layout()
    return fig


MODEL_COLOURS = {"base": "tab:gray", "sft": "tab:blue", "sft+dpo": "tab:orange"}


def plot_eval(results: list[dict]):
    plt = _figure()
    benches = list(dict.fromkeys(r["benchmark"] for r in results))
    fig, axes = plt.subplots(1, len(benches), figsize=(4.2 * len(benches), 4.2), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        rows = [r for r in results if r["benchmark"] == bench]
        scores = [r["score"] for r in rows]
        errors = [[s - r["ci_low"] for s, r in zip(scores, rows)], [r["ci_high"] - s for s, r in zip(scores, rows)]]
        colours = [MODEL_COLOURS.get(r["model"], "tab:green") for r in rows]
        ax.bar([r["model"] for r in rows], scores, yerr=errors, capsize=6, color=colours)
        ax.set_ylim(0, 1)
        ax.set_title(textwrap.fill(rows[0]["label"], 32), fontsize=11)
        ax.set_ylabel("win rate against base" if benchmarks.is_win_rate(bench) else "share correct")
        if benchmarks.is_win_rate(bench):  # 0.5 is a tie
            ax.axhline(0.5, color="black", lw=0.8, ls="--")
    fig.tight_layout()
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _figure().close(fig)
    return buffer.getvalue()


def eval_table(results: list[dict]) -> list[str]:
    lines = ["| benchmark | model | score | 95% CI | n |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['model']} | {r['score']:.3f} | [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['n']} |")
    return lines


def short_counts(counts: dict) -> dict:
    """A stage's counts without the tables that get their own section."""
    return {k: v for k, v in counts.items() if k not in ("source_table", "reward_bias")}


def _number(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def counts_line(counts: dict, most: int = 12) -> str:
    """A stage's counts as one line of words ("examples 42, steps 6; sft: math 12, code 3"); nested tables
    and long lists are left to their own sections and to the manifest."""
    plain, nested = [], []
    for key, value in short_counts(counts).items():
        name = key.replace("_", " ")
        if isinstance(value, (int, float, str)) and len(str(value)) < 80:
            plain.append(f"{name} {_number(value)}")
        elif isinstance(value, dict) and value and len(value) <= most and all(
                isinstance(v, (int, float)) for v in value.values()):
            nested.append(f"{name}: " + ", ".join(f"{k} {_number(v)}" for k, v in value.items()))
    return "; ".join([", ".join(plain)] * bool(plain) + nested)


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def judge_is_source(recipe) -> list[str]:
    """A sentence for every judge that is also one of the sources: its grades may favour answers like its own
    (self-preference), and the target was trained on that source's answers."""
    sources = {}
    for source in recipe.sources:
        for name in {source.model, hub_id(source.model)} - {None}:
            sources[name] = source.name
    cfg = recipe.eval
    judges = [("MT-Bench (win rate)", eval_judge(recipe) if cfg.mtbench else None),
              ("the judged sets", cfg.pairwise_judge.model if cfg.pairwise_judge and cfg.judged else None),
              ("MT-Bench (1-10)", cfg.mtbench_graded.judge.model if cfg.mtbench_graded else None),
              ("AlignBench", cfg.alignbench.judge.model if cfg.alignbench else None)]
    return [f"Judge of {what}: {judge} is also source '{sources[judge]}': it may favour answers like its own, "
            "and the target learned from its answers." for what, judge in judges if judge in sources]


def fusion_html(rows: list[dict], labels: dict[str, str], paper: dict[str, str] | None = None) -> str:
    """The paired table as HTML, each step's cell coloured by its verdict; the paper's row for the same target
    (`paper`: benchmark -> "base → SFT → SFT+DPO" in %) in a last column where it reports one."""
    colours = {"better": "#d8f0d8", "worse": "#f6d5d5"}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("benchmark", "base", "SFT", "SFT+DPO",
                                                         *(f"{name} (95% CI)" for _, _, name in STEPS),
                                                         *(["the paper: base → SFT → SFT+DPO (%; MT-Bench and AlignBench 1-10)"] if paper else [])))
    out = [f"<table class='answer'><tr>{head}</tr>"]
    for r in rows:
        cells = [f"<td>{html.escape(labels.get(r['benchmark'], r['benchmark']))}</td>"]
        cells += [f"<td>{fmt(r['means'].get(m), 3)}</td>" for m in ("base", "sft", "sft+dpo")]
        for _, _, name in STEPS:
            step = r["steps"].get(name)
            if step is None:
                cells.append("<td>-</td>")
                continue
            colour = colours.get(step["verdict"], "#f3f3f3")
            cells.append(f"<td style='background:{colour}'>{step['diff']:+.3f} [{step['ci_low']:+.3f}, {step['ci_high']:+.3f}]"
                         f"<br><b>{html.escape(step['verdict'])}</b></td>")
        if paper:
            cells.append(f"<td>{html.escape(paper.get(r['benchmark'], '-'))}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    return "".join(out) + "</table>"


def report(run: StageRun) -> Outputs:
    recipe, out = run.recipe, run.work_dir
    scored, sft, dpo = _read(run, "score", "scored"), _read(run, "build", "sft"), _read(run, "build", "dpo")
    sft_log, dpo_log, results = _read(run, "sft", "log"), _read(run, "dpo", "log"), _read(run, "eval", "results")
    items = _read(run, "eval", "items")
    figures = {}
    if results:
        figures["eval"] = ("Evaluation: each model's score (error bars: 95% CI)", plot_eval(results))
    if scored:
        figures["scores"] = ("Scores per source and domain", plot_scores(scored))
    if sft or dpo:
        figures["data"] = ("Training data: pair gaps and who supplied it", plot_pairs(dpo, sft))
    if sft_log or dpo_log:
        figures["training"] = ("Training curves", plot_training(sft_log, dpo_log))
    pngs = {key: _png(fig) for key, (_, fig) in figures.items()}

    def figure(key: str) -> None:
        title = figures[key][0]
        (out / f"{key}.png").write_bytes(pngs[key])
        md.extend(["", f"## {title}", "", f"![{title}]({key}.png)"])
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                    f"src='data:image/png;base64,{base64.b64encode(pngs[key]).decode()}'>")

    md = [f"# fusechat report: {recipe.name}", ""]
    body = [f"<h1>fusechat report: {html.escape(recipe.name)}</h1>"]
    # The answer first: did fusion pay, benchmark by benchmark, paired on the run's own items
    if items:
        labels = {r["benchmark"]: r["label"] for r in results}
        rows = fusion_table(items, {b for b in labels if benchmarks.is_win_rate(b)}, benchmarks.item_weights)
        sentence = fusion_sentence(rows)
        note = ("Each step is a paired difference on the items both models answered (bootstrap 95% interval); "
                "*better* / *worse* when the interval excludes 0. Win rates judged against the base itself have "
                "no base score: their steps from the base are the win rate - 0.5.")
        paper = {b: v for b, v in paper_column(hub_id(recipe.target.model) if recipe.target else None).items()
                 if any(r["benchmark"] == b for r in rows)}
        flags = judge_is_source(recipe)
        note += "".join(f" {flag}" for flag in flags)
        md += [sentence, "", fusion_markdown(rows, lambda b: labels.get(b, b), paper), "", note]
        body += [f"<p class='answer'>{html.escape(sentence)}</p>", fusion_html(rows, labels, paper),
                 f"<p class='note'>{html.escape(note).replace('*better*', '<i>better</i>').replace('*worse*', '<i>worse</i>')}</p>"]
    elif results or run.manifest("dpo"):
        md.append("The evaluation has no per-item answers yet: run `fusechat eval` for the paired table.")
        body.append("<p>The evaluation has no per-item answers yet: run <code>fusechat eval</code> for the paired table.</p>")
    if "eval" in figures:
        figure("eval")

    stages = [(s, run.manifest(s)) for s in REPORTED]
    md += ["", "## What each stage did", "", "| stage | time | what it made |", "|---|---|---|"]
    body.append("<h2>What each stage did</h2><table><tr><th>stage</th><th>time</th><th>what it made</th></tr>")
    for name, m in stages:
        if m:
            line = counts_line(m["counts"])
            md.append(f"| {name} | {human_seconds(m['seconds'])} | {line} |")
            body.append(f"<tr><td>{name}</td><td>{human_seconds(m['seconds'])}</td><td>{html.escape(line)}</td></tr>")
    body.append("</table>")
    machines = Counter(m.get("hardware", "not recorded") for _, m in stages if m)
    if machines:
        line = f"Times{measured_on(machines)}. Every count is in the stage's manifest.json."
        md += ["", line]
        body.append(f"<p>{html.escape(line)}</p>")
    if results:
        md += ["", "## Evaluation", "", *eval_table(results)]
        body.append("<h2>Evaluation: each model alone</h2><table><tr><th>benchmark</th><th>model</th><th>score</th>"
                    "<th>95% CI</th><th>n</th></tr>")
        for r in results:
            body.append(f"<tr><td>{html.escape(r['label'])}</td><td>{html.escape(r['model'])}</td><td>{r['score']:.3f}</td>"
                        f"<td>[{r['ci_low']:.3f}, {r['ci_high']:.3f}]</td><td>{r['n']}</td></tr>")
        body.append("</table>")
    analyses = []
    if (m := run.manifest("build")) and m["counts"].get("source_table"):
        analyses.append(("## Source contribution\n\n" + source_markdown(m["counts"]["source_table"])))
    if (m := run.manifest("score")) and m["counts"].get("reward_bias"):
        analyses.append(("## Reward bias\n\n" + bias_markdown(m["counts"]["reward_bias"])))
    for text in analyses:
        md += ["", text]
        body.append(markdown_body(text))
    for key in ("scores", "data", "training"):
        if key in figures:
            figure(key)
    files = {f"{key}.png": out / f"{key}.png" for key in figures}

    # The data viewer: every row, paged, from small files beside the page
    samples = scored or _read(run, "sample", "samples")
    prompts = {r["id"]: r["prompt"] for r in _read(run, "prompts", "prompts")} if samples else {}
    built = run.manifest("build") or {}
    dropped = _read(run, "build", "dropped") if "dropped.jsonl" in (built.get("outputs") or {}) else []
    index = write_viewer(out / "viewer", {
        "samples": sample_rows(samples, prompts), "sft": sft_rows(sft), "dpo": dpo_rows(dpo),
        "dropped": dropped_rows(dropped), "eval": eval_rows(items), "disagree": disagreement_rows(items)})
    body.append(viewer_html(index, "viewer"))
    if index:
        md += ["", "## The data", "", "Open report.html for the data viewer (samples, SFT examples, DPO pairs, dropped "
               "prompts, eval answers, base vs fused)."]
        files["viewer"] = out / "viewer"

    # What produced it, folded away: the recipe as resolved, and the libraries' versions
    resolved = yaml.safe_dump(recipe.model_dump(mode="json", exclude_unset=True), sort_keys=False, allow_unicode=True)
    versions = next((m["versions"] for _, m in reversed(stages) if m and m.get("versions")), {})
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items())
    md += ["", "## Recipe and versions", "", "```yaml", resolved.rstrip(), "```", "", version_text]
    body.append(f"<details><summary>Recipe (as resolved) and library versions</summary><pre>{html.escape(resolved)}</pre>"
                f"<p>{html.escape(version_text)}</p></details>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
             "p.answer{font-size:18px;font-weight:600}p.note{font-size:12px;color:#555}"
             "img{max-width:100%;border:1px solid #eee}code,pre{font-size:12px}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>fusechat report: {html.escape(recipe.name)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    write_atomic(out / "report.html", page)
    write_atomic(out / "report.md", "\n".join(md) + "\n")
    files |= {"report.html": out / "report.html", "report.md": out / "report.md"}
    return Outputs(counts={"figures": len(figures), "html": str(run.dir / "report.html")}, files=files)

"""Stage 8, report: one self-contained HTML page (plots inlined) and a Markdown summary.

Reads whatever stages have finished in the run folder: score distributions per source and
domain, the DPO pair-gap histogram, which source supplied the SFT examples and pairs, each source's
contribution and the reward's bias (fusechat.analysis), training
curves (loss, summed and length-normalised margins), and the evaluation table with 95% CIs.
Output: `run/report/report.html`, `run/report/report.md`, `run/report/*.png`. Like every stage it
reruns only when a stage it reads has new output.
"""

from __future__ import annotations

import base64
import html
import io
import json
import textwrap
from collections import Counter, defaultdict

from fusechat import benchmarks
from fusechat.analysis import bias_markdown, source_markdown
from fusechat.hardware import measured_on
from fusechat.markdown import markdown_body
from fusechat.records import STAGE_ORDER
from fusechat.runfolder import Outputs, StageRun, write_atomic

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
    left.legend(fontsize=7)
    keys = sorted(correct)
    right.bar([f"{d}\n{s}" for d, s in keys], [sum(v) / len(v) for v in (correct[k] for k in keys)], color="tab:green")
    right.set_ylim(0, 1)
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
    supplied = Counter((f"{kind}/{r['domain']}", r["source"]) for kind, rows in (("SFT", sft), ("DPO", dpo)) for r in rows)
    groups = sorted({g for g, _ in supplied})
    sources = sorted({s for _, s in supplied})
    bottom = [0] * len(groups)
    for source in sources:
        values = [supplied[(g, source)] for g in groups]
        right.bar(groups, values, bottom=bottom, label=source)
        bottom = [b + v for b, v in zip(bottom, values)]
    right.set_title("which source supplied the training data")
    right.tick_params(axis="x", labelsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_training(sft_log: list[dict], dpo_log: list[dict]):
    plt = _figure()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    steps = [e for e in sft_log if "loss" in e]
    axes[0].plot([e["step"] for e in steps], [e["loss"] for e in steps], marker=".")
    axes[0].set_title("SFT loss")
    axes[1].plot([e["step"] for e in dpo_log], [e["loss"] for e in dpo_log], marker=".", color="tab:red")
    axes[1].set_title("DPO loss")
    axes[2].plot([e["step"] for e in dpo_log], [e["margin_summed"] for e in dpo_log], label="summed log-ratio margin")
    axes[2].plot([e["step"] for e in dpo_log], [e["margin_normalised"] for e in dpo_log], label="length-normalised margin")
    axes[2].set_title("DPO margins")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("optimizer step")
    fig.tight_layout()
    return fig


MODEL_COLOURS = {"base": "tab:gray", "sft": "tab:blue", "sft+dpo": "tab:orange"}


def plot_eval(results: list[dict]):
    plt = _figure()
    benches = list(dict.fromkeys(r["benchmark"] for r in results))
    fig, axes = plt.subplots(1, len(benches), figsize=(4.2 * len(benches), 3.6), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        rows = [r for r in results if r["benchmark"] == bench]
        scores = [r["score"] for r in rows]
        errors = [[s - r["ci_low"] for s, r in zip(scores, rows)], [r["ci_high"] - s for s, r in zip(scores, rows)]]
        colours = [MODEL_COLOURS.get(r["model"], "tab:green") for r in rows]
        ax.bar([r["model"] for r in rows], scores, yerr=errors, capsize=6, color=colours)
        ax.set_ylim(0, 1)
        ax.set_title(textwrap.fill(rows[0]["label"], 40), fontsize=9)
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


def report(run: StageRun) -> Outputs:
    recipe, out = run.recipe, run.work_dir
    scored, sft, dpo = _read(run, "score", "scored"), _read(run, "build", "sft"), _read(run, "build", "dpo")
    sft_log, dpo_log, results = _read(run, "sft", "log"), _read(run, "dpo", "log"), _read(run, "eval", "results")
    figures = {}
    if scored:
        figures["scores"] = ("Scores per source and domain", plot_scores(scored))
    if sft or dpo:
        figures["data"] = ("Training data: pair gaps and who supplied it", plot_pairs(dpo, sft))
    if sft_log or dpo_log:
        figures["training"] = ("Training curves", plot_training(sft_log, dpo_log))
    if results:
        figures["eval"] = ("Evaluation (error bars: 95% CI)", plot_eval(results))

    md = [f"# fusechat report: {recipe.name}", ""]
    body = [f"<h1>fusechat report: {html.escape(recipe.name)}</h1>"]
    stages = [(s, run.manifest(s)) for s in REPORTED]
    md += ["| stage | seconds | counts |", "|---|---|---|"]
    body.append("<table><tr><th>stage</th><th>seconds</th><th>counts</th></tr>")
    for name, m in stages:
        if m:
            counts = json.dumps(short_counts(m["counts"]), ensure_ascii=False)
            md.append(f"| {name} | {m['seconds']} | `{counts}` |")
            body.append(f"<tr><td>{name}</td><td>{m['seconds']}</td><td><code>{html.escape(counts)}</code></td></tr>")
    body.append("</table>")
    machines = Counter(m.get("hardware", "not recorded") for _, m in stages if m)
    if machines:
        line = f"Seconds{measured_on(machines)}."
        md += ["", line]
        body.append(f"<p>{html.escape(line)}</p>")
    if results:
        md += ["", "## Evaluation", "", *eval_table(results)]
        body.append("<h2>Evaluation</h2><table><tr><th>benchmark</th><th>model</th><th>score</th><th>95% CI</th><th>n</th></tr>")
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
    files = {}
    for key, (title, fig) in figures.items():
        png = _png(fig)
        (out / f"{key}.png").write_bytes(png)
        files[f"{key}.png"] = out / f"{key}.png"
        md += ["", f"## {title}", "", f"![{title}]({key}.png)"]
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
             "img{max-width:100%;border:1px solid #eee}code{font-size:12px}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>fusechat report: {html.escape(recipe.name)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    write_atomic(out / "report.html", page)
    write_atomic(out / "report.md", "\n".join(md) + "\n")
    files |= {"report.html": out / "report.html", "report.md": out / "report.md"}
    return Outputs(counts={"figures": len(figures), "html": str(run.dir / "report.html")}, files=files)

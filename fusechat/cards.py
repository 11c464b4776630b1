"""Dataset and model cards (README.md with YAML metadata), as the Hugging Face hub reads them.

The metadata comes from huggingface_hub's own card classes (DatasetCardData, ModelCardData,
EvalResult), so the hub's viewer and model-index parse what we write; the text is ours. Cards hold
no timestamps: a stage rerun with the same result writes the same bytes (its fingerprint holds).
"""

from __future__ import annotations

from pathlib import Path

from fusechat import __version__, benchmarks
from fusechat.analysis import bias_markdown, source_markdown
from fusechat.catalog import CATALOG
from fusechat.markdown import md_table
from fusechat.recipe import Recipe

TAGS = ["fusechat", "model-fusion", "fusechat-3.0"]


def _front(data) -> str:
    return f"---\n{data.to_yaml()}\n---\n"


def sources_table(recipe: Recipe) -> str:
    rows = [[s.name, s.model, s.backend, s.sampling.temperature, s.sampling.top_p, s.sampling.max_new_tokens,
             ", ".join(f"{d} {s.samples_for(d)}" for d in sorted({p.domain for p in recipe.prompts.sets}))]
            for s in recipe.sources]
    return md_table(["source", "model", "backend", "temperature", "top-p", "max new tokens", "samples per prompt"], rows)


def scoring_lines(recipe: Recipe, versions: dict) -> list[str]:
    reward = recipe.score.reward
    judged = {"none": "none", "judge": f"judge `{reward.model}` (P(Yes) grade)",
              "reward-model": f"reward model `{reward.model}`"}[reward.kind]
    if reward.kind != "none":
        judged += f" on {', '.join(reward.domains)}" + (" (only responses the build can rank)" if reward.only_ranked else
                                                        " (only responses that passed their check)" if reward.only_correct else "")
    return [f"- math: gold-answer check with math-verify {versions.get('math-verify', '')}".rstrip(),
            "- code: the prompt's tests, run in fusechat's sandbox",
            "- instruction constraints: IFEval's checkers (if-verifiable)",
            f"- reward: {judged}",
            f"- pairs: {recipe.build.pairing}, reward-gap window {recipe.build.gap_window}"]


def dataset_card(recipe: Recipe, counts: dict, score_counts: dict | None, versions: dict) -> str:
    """The build's card: where the data came from, how it was judged, what it holds and what was dropped."""
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(tags=TAGS + ["dpo", "sft"], task_categories=["text-generation"], configs=[
        {"config_name": "sft", "data_files": "sft.jsonl"}, {"config_name": "dpo", "data_files": "dpo.jsonl"}])
    domains = sorted(set(counts["sft"]) | set(counts["dpo"]) | {k.split("/")[0] for k in counts["dropped"]})
    if recipe.data is not None:  # started at build from sets made elsewhere (fusechat.import_data)
        sets = ", ".join(f"`{name}`" for name in (recipe.data.sft, recipe.data.dpo) if name)
        body = [f"# {recipe.name}: SFT and DPO data imported from {sets}", "",
                f"Re-keyed by fusechat {__version__} into TRL's formats (`sft`: `messages`; `dpo`: `prompt`/`chosen`/"
                f"`rejected`), split `{recipe.data.split}`" + (f", first {recipe.data.limit} rows of each set" if recipe.data.limit
                                                                 else "") + ". No sampling or scoring was done here.",
                "", "## Contents", ""]
    else:
        body = [f"# {recipe.name}: SFT and DPO data fused from {len(recipe.sources)} source models", "",
                f"Made with fusechat {__version__} (FuseChat-3.0's implicit model fusion, arXiv 2503.04222): every prompt "
                "was answered by each source, the answers were checked and scored, and each prompt became one SFT "
                "example (`sft`, TRL's `messages`) or one preference pair (`dpo`, TRL's `prompt`/`chosen`/`rejected`).",
                "", "## Sources", "", sources_table(recipe), "", "## Scoring", "", *scoring_lines(recipe, versions),
                "", "## Contents", ""]
    body.append(md_table(["domain", "SFT examples", "DPO pairs", "prompts dropped"],
                         [[d, counts["sft"].get(d, 0), counts["dpo"].get(d, 0),
                           sum(n for k, n in counts["dropped"].items() if k.startswith(d + "/"))] for d in domains]))
    if counts["dropped"]:
        body += ["", "Why prompts were dropped:", "",
                 md_table(["domain/reason", "prompts"], [[k, n] for k, n in sorted(counts["dropped"].items())])]
    if counts.get("skipped_samples"):
        body += ["", "Responses never used: " + ", ".join(f"{n} {k}" for k, n in sorted(counts["skipped_samples"].items())) + "."]
    if counts.get("source_table"):
        body += ["", "## Source contribution", "", source_markdown(counts["source_table"])]
    if score_counts and score_counts.get("reward_bias"):
        body += ["", "## Reward bias", "", bias_markdown(score_counts["reward_bias"])]
    body += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    return _front(data) + "\n" + "\n".join(body) + "\n"


def hub_id(model: str) -> str | None:
    """The hub id a card's `base_model` must be: the catalog model's upstream repository, a hub id as given,
    none for a local folder or file (the hub refuses a card whose base_model is not a repository)."""
    if model in CATALOG:
        return CATALOG[model].hub_id or None
    if model.count("/") == 1 and not Path(model).expanduser().exists() and not model.startswith((".", "/", "~")):
        return model
    return None


# A fine-tuned model keeps its base model's license: the hub's license ids for the targets fusechat ships
# recipes for (method.md §6) and the catalog's; any other base gets "other" and a sentence saying so.
LICENSES = {"meta-llama/Llama-3.1": "llama3.1", "meta-llama/Llama-3.2": "llama3.2", "google/gemma-2": "gemma",
            "google/gemma-3": "gemma", "Qwen/Qwen2.5-7B": "apache-2.0", "Qwen/Qwen2.5-Coder-0.5B": "apache-2.0",
            "Qwen/Qwen2.5-Coder-1.5B": "apache-2.0", "HuggingFaceTB/SmolLM2": "apache-2.0"}


def base_license(base: str | None) -> str:
    return next((lic for prefix, lic in LICENSES.items() if (base or "").startswith(prefix)), "other")


def model_card(recipe: Recipe, stage: str, base_model: str, results: list[dict] | None = None,
               dataset_repo: str | None = None, location: str | None = None) -> str:
    """A trained model's card: what it was trained from and how, its license and how to load it (from
    `location`: a hub repo or a folder; default the stage's model folder); the eval table and model-index
    when given."""
    from huggingface_hub import EvalResult, ModelCardData

    name = f"{recipe.name}-{stage}"
    model = "sft+dpo" if stage == "dpo" else "sft"
    mine = [r for r in results or [] if r["model"] == model]
    base = hub_id(base_model)
    data = ModelCardData(base_model=base, license=base_license(base), library_name="transformers", tags=TAGS + [stage],
                         datasets=[dataset_repo] if dataset_repo else None, model_name=name, eval_results=[
                             EvalResult(task_type="text-generation", dataset_type=f"fusechat/{r['benchmark']}",
                                        dataset_name=r["label"], metric_type="win_rate" if benchmarks.is_win_rate(r["benchmark"]) else "accuracy",
                                        metric_value=round(r["score"], 4)) for r in mine] or None)
    cfg = recipe.sft if stage == "sft" else recipe.dpo
    settings = [["epochs", cfg.epochs], ["learning rate", cfg.learning_rate], ["batch (per process)", cfg.batch_size],
                ["global batch", cfg.global_batch_size or f"{cfg.batch_size} x {cfg.grad_accum} x processes"],
                ["max length", cfg.max_length], ["scheduler", f"{cfg.scheduler}, warmup {cfg.warmup_ratio}"],
                ["LoRA", f"r {cfg.lora.r}" if cfg.lora else "no (full fine-tuning)"]]
    if stage == "dpo":
        settings += [["loss", recipe.dpo.loss], ["beta", recipe.dpo.beta]]
    sources = ", ".join(f"`{s.model}`" for s in recipe.sources) or "the answers in " + ", ".join(
        f"`{n}`" for n in (recipe.data.sft, recipe.data.dpo) if n)
    body = [f"# {name}", "",
            f"`{base_model}` fused from {sources} with fusechat {__version__} (FuseChat-3.0's implicit model fusion): "
            + ("supervised fine-tuning on the sources' best answers." if stage == "sft" else
               "supervised fine-tuning on the sources' best answers, then preference optimisation on pairs from the same source."),
            "", "## Training", "", md_table(["setting", "value"], settings)]
    if mine:
        body += ["", "## Evaluation", "", "Greedy decoding; 95% intervals (Wilson, or bootstrap for win rates); "
                 "the base model's scores are on the same items.", "",
                 md_table(["benchmark", "model", "score", "95% CI", "n"],
                           [[r["label"], r["model"], f"{r['score']:.3f}", f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", r["n"]]
                            for r in results if r["model"] in ("base", model)])]
    else:
        body += ["", "## Evaluation", "", "Not evaluated yet: `fusechat eval` writes the table here."]
    location = location or f"{recipe.run_path}/{stage}/model"
    body += ["", "## Use", "", "```python", "from transformers import pipeline", "",
             f'chat = pipeline("text-generation", model="{location}")',
             'reply = chat([{"role": "user", "content": "What is 17 * 23?"}], max_new_tokens=256)',
             'print(reply[0]["generated_text"][-1]["content"])', "```",
             "", "## License", "",
             (f"The base model's license (`{data.license}`) applies; the training data holds the source models' "
              "answers, so their terms of use apply to it too." if data.license != "other" else
              "The base model's license applies (not one fusechat knows: check it before publishing); the training "
              "data holds the source models' answers, so their terms of use apply to it too.")]
    return _front(data) + "\n" + "\n".join(body) + "\n"

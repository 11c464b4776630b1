"""Standard benchmarks through lm-evaluation-harness (`eval.harness: [task, ...]`).

lm-eval is the runner the field compares models with, so its task definitions, prompts, few-shot
settings and metrics are used as they are; fusechat only calls `lm_eval.simple_evaluate` on each model
of the run (transformers on CPU, vLLM where it is installed and a GPU is there) and files its numbers
beside its own: a score, lm-eval's standard error as a 95% interval (score ± 1.96 SE), the sample
count, and every per-item score (so a study can pair them like its own benchmarks).

Code-execution tasks (humaneval, mbpp) run the model's code outside fusechat's sandbox, so they are
refused by the recipe check: fusechat's own HumanEval runs in the sandbox (`eval.humaneval`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

from fusechat import FusechatError
from fusechat.hardware import has_gpu
from fusechat.recipe import EvalConfig

# fusechat's own task files: the paper's protocol (0-shot chain of thought, 2048 tokens) for GSM8K, MATH,
# AMC23 and MMLU-Pro (tasks/utils.py says why); always on lm-eval's include path.
TASKS_DIR = Path(__file__).parent / "tasks"
# The tasks the paper recipes name, as their task files define them: (items, generated tokens at most; 0 for
# a log-likelihood task, one forward pass a choice). For the plan only.
TASK_SIZES = {"gsm8k": (1319, 256), "minerva_math": (5000, 256), "mmlu_pro": (12032, 2048),
              "gpqa_diamond_zeroshot": (198, 0), "ifeval": (541, 1280), "fusechat_gsm8k": (1319, 2048),
              "fusechat_math": (5000, 2048), "fusechat_amc23": (40, 2048), "fusechat_mmlu_pro": (12032, 2048),
              "gpqa_diamond_cot_zeroshot": (198, 2048), "mmlu_redux_generative": (5700, 2048),
              "fusechat_mmlu_redux": (5700, 2048)}


@functools.lru_cache(maxsize=4)
def task_manager(include: str | None, tasks: tuple[str, ...] = ()):
    """lm-eval's task index with fusechat's task files (and the user's, which win), built once a process:
    indexing lm-eval's thousands of stock task files takes seconds, so where fusechat's and the user's
    files hold every task asked for (`tasks`), only they are indexed."""
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR)] + ([include] if include else [])
    own = TaskManager(include_path=paths, include_defaults=False)
    return own if all(t in own.all_tasks for t in tasks) else TaskManager(include_path=paths)


def run_harness(path: str, cfg: EvalConfig) -> tuple[list[dict], list[dict]]:
    """lm-eval on one model folder: (one summary row per task and metric, one row per item)."""
    try:
        import lm_eval
    except ImportError:
        raise FusechatError("eval.harness needs lm-evaluation-harness: pip install lm-eval") from None
    backend = "vllm" if has_gpu() and importlib.util.find_spec("vllm") else "hf"
    model_args = {"pretrained": path, "dtype": "auto" if cfg.dtype == "auto" else cfg.dtype}
    if backend == "hf":
        model_args["device"] = "cuda" if has_gpu() else "cpu"
    try:
        out = lm_eval.simple_evaluate(
            model=backend, model_args=model_args, tasks=list(cfg.harness), batch_size=cfg.batch_size,
            limit=cfg.harness_limit,
            task_manager=task_manager(cfg.harness_include, tuple(cfg.harness)),
            apply_chat_template=cfg.harness_chat_template, log_samples=True, bootstrap_iters=1000,
            random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    except (KeyError, ValueError) as e:  # unknown task names and bad task files surface as these
        raise FusechatError(f"eval.harness: lm-eval refused the tasks {cfg.harness} ({str(e)[:200]})") from None
    return summaries(out, cfg.harness), items(out, cfg.harness)


def _metric_keys(entry: dict) -> list[tuple[str, str]]:
    """(metric, filter) pairs of a task's result entry, e.g. ("exact_match", "strict-match")."""
    keys = []
    for key, value in entry.items():
        if "," in key and "_stderr" not in key and isinstance(value, (int, float)):
            metric, filt = key.split(",", 1)
            keys.append((metric, filt))
    return keys


def leaf_tasks(out: dict, task: str) -> list[str]:
    """The tasks that answer for `task`: itself, or the subtasks of a group (minerva_math, mmlu_pro), at any depth."""
    subtasks = (out.get("group_subtasks") or {}).get(task)
    return [leaf for sub in subtasks for leaf in leaf_tasks(out, sub)] if subtasks else [task]


def summaries(out: dict, tasks: list[str]) -> list[dict]:
    rows = []
    for task in tasks:
        entry = out["results"].get(task)
        if entry is None:
            continue
        counts = [(out.get("n-samples", {}).get(leaf) or {}).get("effective") for leaf in leaf_tasks(out, task)]
        n = sum(counts) if all(isinstance(c, int) for c in counts) else None
        for metric, filt in _metric_keys(entry):
            score = float(entry[f"{metric},{filt}"])
            se = entry.get(f"{metric}_stderr,{filt}")
            se = float(se) if isinstance(se, (int, float)) and math.isfinite(se) else float("nan")
            rows.append({"benchmark": f"harness:{task}", "metric": metric, "filter": filt, "score": score,
                         "ci_low": score - 1.96 * se, "ci_high": score + 1.96 * se, "n": n,
                         "label": f"{task} {metric}" + ("" if filt == "none" else f" ({filt})") + " (lm-eval)"})
    return rows


def items(out: dict, tasks: list[str]) -> list[dict]:
    """Per-item scores from lm-eval's logged samples: the first metric of each task (its headline). A group's
    items are its subtasks' (lm-eval logs samples per subtask only), filed under the group's name with the
    subtask in their id, so a study pairs them like any other benchmark's."""
    rows = []
    for task in tasks:
        for leaf in leaf_tasks(out, task):
            entry = out["results"].get(leaf)
            samples = out.get("samples", {}).get(leaf) or []
            if entry is None or not samples or not _metric_keys(entry):
                continue
            metric, _ = _metric_keys(entry)[0]
            for s in samples:
                if metric in s and isinstance(s[metric], (int, float)):
                    rows.append({"benchmark": f"harness:{task}", "id": f"{leaf}-{s['doc_id']}", "prompt": "",
                                 "response": str((s.get("filtered_resps") or [""])[0])[:2000],
                                 "gold": str(s.get("target", "")), "score": float(s[metric])})
    return rows

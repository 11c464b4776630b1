"""GPU readiness check: bf16 sampling (transformers backend), SFT and DPO steps through fusechat's own
stages on Qwen2.5-Coder-0.5B-Instruct; prints tokens/s and peak GPU memory as JSON lines.

    python scripts/gpu_check.py                                   # the hub model (needs internet once)
    python scripts/gpu_check.py --model path/to/folder            # any local save_pretrained folder
    python scripts/gpu_check.py --random-weights path/to/folder   # the folder's config and tokenizer,
                                                                  # random weights (machines with no hub)

Random weights change no speed or memory figure, but such a model never stops early, so every
sampled sequence runs to max_new_tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_peak():
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else 0.0


def say(**row):
    print(json.dumps(row), flush=True)
    out = os.environ.get("OUT")
    if out:
        with open(Path(out) / "gpu_check.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def random_model(config_dir: str, folder: Path) -> str:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir), dtype=torch.bfloat16)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(folder)
    return str(folder)


def prompts(n: int) -> list[str]:
    topics = ["sorting a list", "the water cycle", "prime numbers", "binary search", "photosynthesis", "recursion"]
    return [f"Question {i}: explain {topics[i % len(topics)]} and give an example with the number {i * 7 % 97}." for i in range(n)]


def check_sampling(model: str, batches: list[int], n: int, max_new_tokens: int) -> None:
    from fusechat.recipe import Sampling
    from fusechat.backends.base import Request
    from fusechat.backends.hf import TransformersBackend

    requests = [Request([{"role": "user", "content": p}], seed=i) for i, p in enumerate(prompts(n))]
    sampling = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=max_new_tokens)
    for batch in batches:
        backend = TransformersBackend(model, dtype="bfloat16", batch_size=batch)
        backend.generate(requests[:batch], Sampling(temperature=0, max_new_tokens=8))  # warm-up
        sync()
        reset_peak()
        start = time.perf_counter()
        out = backend.generate(requests, sampling)
        sync()
        seconds = time.perf_counter() - start
        tokens = sum(g.completion_tokens for g in out)
        say(check="sample", backend="transformers", dtype="bf16", batch=batch, sequences=n, tokens=tokens,
            seconds=round(seconds, 2), tok_s=round(tokens / seconds, 1),
            peak_gib=peak_gib())
        del backend
        torch.cuda.empty_cache() if torch.cuda.is_available() else None


def training_data(n: int):
    answer = " ".join(f"Step {k}: we reason about the problem carefully and check the result." for k in range(12))
    sft = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": answer}],
            "prompt_id": f"s{i}", "domain": "instruction", "source": "a", "reward": None} for i, p in enumerate(prompts(n))]
    dpo = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": answer[: len(answer) // 2]}], "prompt_id": f"d{i}",
            "domain": "instruction", "source": "a", "chosen_reward": None, "rejected_reward": None}
           for i, p in enumerate(prompts(n))]
    return sft, dpo


def check_training(model: str, n: int, batch: int, workdir: Path) -> None:
    import yaml

    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import Outputs, RunFolder

    recipe_file = workdir / "gpu.yaml"
    recipe_file.write_text(yaml.safe_dump({
        "name": "gpu-check", "run_dir": str(workdir / "run"),
        "prompts": {"sets": [{"domain": "instruction", "path": "unused.jsonl"}]},
        "sources": [{"name": "a", "model": model}], "target": {"model": model},
        "sft": {"epochs": 1, "batch_size": batch, "grad_accum": 1, "learning_rate": 1e-5, "max_length": 512, "save_steps": 10**6},
        "dpo": {"epochs": 1, "batch_size": batch, "grad_accum": 1, "learning_rate": 1e-6, "max_length": 512,
                "loss": "ln-dpo", "beta": 10, "save_steps": 10**6, "eval_fraction": 0.05}}))
    recipe = load_recipe(recipe_file)
    sft, dpo = training_data(n)
    RunFolder(recipe.run_path).write("build", Outputs({"sft": sft, "dpo": dpo}))
    for stage in ("sft", "dpo"):
        reset_peak()
        start = time.perf_counter()
        manifest = run_stage(stage, recipe)
        seconds = time.perf_counter() - start
        counts = manifest["counts"]
        row = {"check": stage, "examples": n, "batch": batch, "seconds": round(seconds, 2),
               "peak_gib": peak_gib(), "bf16": counts.get("bf16")}
        if stage == "sft":  # TRL logs the tokens it has seen and its own runtime
            log = RunFolder(recipe.run_path).records("sft", "log")
            tokens = max(float(e.get("num_tokens", 0)) for e in log)
            runtime = next(float(e["train_runtime"]) for e in log if "train_runtime" in e)
            row["samples_per_s"] = manifest.get("samples_per_s")
            row["tokens_per_s"] = round(tokens / runtime, 1)
        else:
            row["tokens_per_s"] = counts.get("tokens_per_s")
        say(**row)


def check_scale(model: str, n: int, max_new_tokens: int) -> None:
    """The real-scale paths: the plan's fit of a paper recipe on this node; vLLM (when installed) through
    fusechat's backend, tensor parallel chosen from the model's size; with several GPUs, the training
    check again under `accelerate launch` on all of them."""
    import subprocess
    import sys

    from fusechat.plan import make_plan
    from fusechat.recipe import Sampling, Source, builtin_recipe, load_recipe

    gpus = torch.cuda.device_count()
    gb = torch.cuda.get_device_properties(0).total_memory / 1e9 if gpus else 80.0
    plan = make_plan(load_recipe(builtin_recipe("paper-llama3.1-8b")), gpus, gb)
    say(check="plan paper-llama3.1-8b", gpus=gpus, gpu_gb=round(gb), fits=[f"{r.stage} {r.what}: {r.fit.where}"
        for r in plan.rows if r.fit], problems=plan.problems(), hours=round(plan.seconds / 3600, 1))
    try:
        import vllm  # noqa: F401
    except ImportError:
        say(check="vllm", skipped="vllm is not installed here")
    else:
        from fusechat.backends.base import Request
        from fusechat.backends.factory import open_backend

        source = Source(name="vllm-check", model=model, backend="vllm",
                        sampling=Sampling(temperature=0.7, max_new_tokens=max_new_tokens))
        with open_backend(source) as backend:
            started = time.time()
            out = backend.generate([Request([{"role": "user", "content": p}], i) for i, p in enumerate(prompts(n))],
                                   source.sampling)
            seconds = time.time() - started
        say(check="vllm sampling", sequences=n, tokens_per_s=round(sum(g.completion_tokens for g in out) / seconds, 1))
    if gpus > 1:
        result = subprocess.run(["accelerate", "launch", "--multi_gpu", "--num_processes", str(gpus), __file__,
                                 "--model", model, "--skip", "sample,scale"], capture_output=True, text=True)
        say(check=f"training on {gpus} GPUs (accelerate)", returncode=result.returncode,
            output=result.stdout.strip().splitlines()[-3:] or result.stderr.strip().splitlines()[-3:])
    else:
        say(check="multi-GPU training", skipped="one GPU here")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Qwen/Qwen2.5-Coder-0.5B-Instruct")
    parser.add_argument("--random-weights", metavar="CONFIG_DIR", help="config + tokenizer folder; weights are random")
    parser.add_argument("--batches", default="64,256", help="sampling batch sizes")
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--train-examples", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--skip", default="", help="comma list of: sample, train, scale")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run on the CPU (to try the script, not to measure)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        raise SystemExit("no CUDA device: this check is for GPU machines")
    if torch.cuda.is_available():
        say(check="device", gpu=torch.cuda.get_device_name(), torch=torch.__version__,
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    workdir = Path(tempfile.mkdtemp(prefix="fusechat-gpu-"))
    model = random_model(args.random_weights, workdir / "model") if args.random_weights else args.model
    if "sample" not in args.skip:
        check_sampling(model, [int(b) for b in args.batches.split(",")], args.sequences, args.max_new_tokens)
    if "train" not in args.skip:
        check_training(model, args.train_examples, args.train_batch, workdir)
    if "scale" not in args.skip:
        check_scale(model, min(args.sequences, 64), args.max_new_tokens)


if __name__ == "__main__":
    main()

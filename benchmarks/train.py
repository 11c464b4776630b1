"""Training speed and memory: TRL's trainers with their default configuration vs fusechat's training
stages as the CPU recipes configure them, on the same data and model, in one run.

    fusechat run                                   # once: makes runs/cpu-default/build (the data)
    python benchmarks/train.py                     # SmolLM2-135M-Instruct, one epoch each way
    python benchmarks/train.py --model tiny        # a tiny random model: a quick look

Every configuration runs in its own process (so peak RSS is its own) for one epoch over the run's
build-stage SFT set and DPO pairs. Tokens are counted once from the data (prompt + answer, chosen and
rejected), so tokens/s compare like with like. Achieved FLOP/s = 6 × parameters × tokens/s, against the
machine's measured matrix-multiply peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def model_path(name: str, workdir: Path) -> str:
    if name != "tiny":
        from fusechat.models import resolve

        return resolve(name).hf_path()
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = workdir / "tiny"
    if not folder.exists():
        tokenizer = AutoTokenizer.from_pretrained(model_path("smollm2-135m-instruct", workdir))
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def count_tokens(path: str, sft: list[dict], dpo: list[dict]) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    n = lambda messages: len(tok.apply_chat_template(messages, tokenize=True, return_dict=False))  # noqa: E731
    return {"sft": sum(n(r["messages"]) for r in sft),
            "dpo": sum(n(r["prompt"] + r["chosen"]) + n(r["prompt"] + r["rejected"]) for r in dpo)}


def worker(kind: str, path: str, data: Path, workdir: Path) -> dict:
    """One epoch of one configuration; returns its wall time (training only) and peak RSS."""
    import datasets
    import torch

    from fusechat.recipe import load_recipe

    rows = json.loads(data.read_text())
    recipe = load_recipe(ROOT / "recipes" / "cpu-default.yaml")
    start = time.perf_counter()
    if kind == "trl-sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(output_dir=str(workdir / kind), num_train_epochs=1, report_to=[], save_strategy="no",
                         use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
        trainer = SFTTrainer(model=path, args=args, train_dataset=datasets.Dataset.from_list(
            [{"messages": r["messages"]} for r in rows["sft"]]))
        start = time.perf_counter()
        trainer.train()
    elif kind == "trl-dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(output_dir=str(workdir / kind), num_train_epochs=1, report_to=[], save_strategy="no",
                         use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
        trainer = DPOTrainer(model=path, args=args, train_dataset=datasets.Dataset.from_list(
            [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows["dpo"]]))
        start = time.perf_counter()
        trainer.train()
    elif kind == "fusechat-sft":
        from fusechat.pipeline import run_stage
        from fusechat.runfolder import Stage

        cfg = recipe.sft.model_copy(update={"epochs": 1})
        recipe = recipe.model_copy(update={"run_dir": str(workdir / "run"), "sft": cfg,
                                           "target": recipe.target.model_copy(update={"model": path})})
        build = Stage(recipe.run_path, "build", {}, "bench")
        build.begin()
        build.finish({"sft": rows["sft"], "dpo": rows["dpo"]}, {})
        start = time.perf_counter()
        run_stage("sft", recipe)
    elif kind == "fusechat-dpo":
        from fusechat.train.common import load_model, load_tokenizer
        from fusechat.train.dpo import train_dpo

        cfg = recipe.dpo.model_copy(update={"epochs": 1})
        model, tokenizer = load_model(path, cfg), load_tokenizer(path)
        start = time.perf_counter()
        train_dpo(model, tokenizer, rows["dpo"], cfg, workdir / kind)
    else:
        raise SystemExit(f"unknown worker {kind}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="catalog name, HF folder, or 'tiny'")
    parser.add_argument("--run", default="runs/cpu-default", help="run folder whose build stage gives the data")
    parser.add_argument("--only", nargs="*", default=[], help="subset of trl-sft fusechat-sft trl-dpo fusechat-dpo")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # inside a child process
        print(json.dumps(worker(args.worker, args.model, Path(args.data), Path(args.workdir))))
        return

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from fusechat.runfolder import load_output
    from sampling import matmul_peak  # benchmarks/sampling.py, beside this script

    workdir = Path(tempfile.mkdtemp(prefix="fusechat-train-bench-"))
    path = model_path(args.model, workdir)
    sft, _ = load_output(Path(args.run), "build", "sft")
    dpo, _ = load_output(Path(args.run), "build", "dpo")
    data = workdir / "data.json"
    data.write_text(json.dumps({"sft": sft, "dpo": dpo}))
    tokens = count_tokens(path, sft, dpo)
    with torch.device("meta"):
        params = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path)).num_parameters()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"model {args.model} ({params / 1e6:.0f}M parameters); data {len(sft)} SFT examples ({tokens['sft']} tokens), "
          f"{len(dpo)} DPO pairs ({tokens['dpo']} tokens); matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s", flush=True)
    rows = {}
    for kind in args.only or ["trl-sft", "fusechat-sft", "trl-dpo", "fusechat-dpo"]:
        out = subprocess.run([sys.executable, __file__, "--worker", kind, "--model", path, "--data", str(data),
                              "--workdir", str(workdir)], capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(f"{kind} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        stage = kind.split("-")[1]
        row["tok_s"] = tokens[stage] / row["seconds"]
        row["flops_fraction_bf16_peak"] = 6 * params * row["tok_s"] / peaks["bf16"]
        rows[kind] = row
        print(f"  {kind}: epoch {row['seconds']:.1f}s, {row['tok_s']:.0f} tok/s, peak RSS {row['peak_rss_gib']:.2f} GiB",
              file=sys.stderr, flush=True)
    print("| stage | TRL defaults | fusechat | fusechat / TRL |\n|---|---|---|---|")
    for stage in ("sft", "dpo"):
        trl, ours = rows.get(f"trl-{stage}"), rows.get(f"fusechat-{stage}")
        if not (trl and ours):
            continue
        print(f"| {stage} epoch wall | {trl['seconds']:.1f} s | {ours['seconds']:.1f} s | {ours['seconds'] / trl['seconds']:.2f}× |")
        print(f"| {stage} tokens/s | {trl['tok_s']:.0f} | {ours['tok_s']:.0f} | {ours['tok_s'] / trl['tok_s']:.2f}× |")
        print(f"| {stage} peak RSS | {trl['peak_rss_gib']:.2f} GiB | {ours['peak_rss_gib']:.2f} GiB | "
              f"{ours['peak_rss_gib'] / trl['peak_rss_gib']:.2f}× |")
        print(f"| {stage} achieved FLOP/s / bf16 peak | {trl['flops_fraction_bf16_peak']:.1%} | "
              f"{ours['flops_fraction_bf16_peak']:.1%} | |")


if __name__ == "__main__":
    main()

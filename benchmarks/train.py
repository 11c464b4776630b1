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
import shutil
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


# Each lever of issue 5, switched off (or, for LoRA/compile, on) one at a time; the reference computed
# once is a fixed part of fusechat's DPO, so TRL's own switch for it measures that lever.
LEVERS = {
    "fusechat-sft": {
        "padded": "padding-free off: length-grouped padded batches",
        "padded-random": "padding-free and length grouping off: random padded batches",
        "fp32": "bf16 autocast off (fp32)",
        "checkpointing": "activation checkpointing on (TRL's default)",
        "threads1": "1 thread instead of all cores",
        "lora": "LoRA r=16 on all linear layers instead of full fine-tuning",
        "compile": "torch.compile on",
    },
    "fusechat-dpo": {
        "random-batches": "length grouping off: random batches",
        "one-forward": "micro-batches off: the whole batch in one forward",
        "forward-512": "forward passes of 512 tokens instead of 1024",
        "forward-4096": "forward passes of 4096 tokens instead of 1024",
        "full-logits": "logits for every position, not only the completions'",
        "fp32": "bf16 autocast off (fp32)",
        "lora": "LoRA r=16 on all linear layers instead of full fine-tuning",
    },
    "trl-dpo": {"precompute-ref": "reference log-probs computed once before training (no second model)"},
}


def worker(kind: str, path: str, data: Path, workdir: Path) -> dict:
    """One epoch of one configuration; returns its wall time (training only) and peak RSS."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM

    from fusechat.recipe import LoraConfig, load_recipe
    from fusechat.train import common, dpo_loop, sft
    from fusechat.train.common import load_model, load_tokenizer

    rows = json.loads(data.read_text())
    recipe = load_recipe(ROOT / "recipes" / "cpu-default.yaml")
    kind, _, lever = kind.partition(":")
    stage = kind.split("-")[1]
    cfg = getattr(recipe, stage).model_copy(update={
        "epochs": 1,
        **({"precision": "fp32"} if lever == "fp32" else {}),
        **({"lora": LoraConfig()} if lever == "lora" else {}),
        **({"threads": 1} if lever == "threads1" else {}),
        **({"activation_checkpointing": True} if lever == "checkpointing" else {}),
        **({"padding_free": False} if lever.startswith("padded") else {}),
        **({"max_tokens_per_forward": 10**9} if lever == "one-forward" else {}),
        **({"max_tokens_per_forward": int(lever.split("-")[1])} if lever.startswith("forward-") else {}),
        **({"length_grouping": False} if lever in ("random-batches", "padded-random") else {}),
        **({"completion_only_logits": False} if lever == "full-logits" else {}),
        **({"torch_compile": True} if lever == "compile" else {}),
    })
    # The clock starts with the model in memory (TRL's default loads fp32 weights, as fusechat does) and
    # stops when the epoch is over: trainer set-up, the data's tokenisation and the reference pass count.
    if kind.startswith("trl"):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        common_args = {"output_dir": str(workdir / kind), "num_train_epochs": 1, "report_to": [], "save_strategy": "no",
                       "use_cpu": not torch.cuda.is_available(), "disable_tqdm": True}
    else:
        model, tokenizer = load_model(path, cfg), load_tokenizer(path)
        if stage == "dpo" and cfg.lora:
            from peft import get_peft_model

            model = get_peft_model(model, common.lora_config(cfg))
    start = time.perf_counter()
    if kind == "trl-sft":
        from trl import SFTConfig, SFTTrainer

        SFTTrainer(model=model, args=SFTConfig(**common_args), train_dataset=datasets.Dataset.from_list(
            [{"messages": r["messages"]} for r in rows["sft"]])).train()
    elif kind == "trl-dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common_args, precompute_ref_log_probs=lever == "precompute-ref")
        DPOTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(
            [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows["dpo"]])).train()
    elif kind == "fusechat-sft":
        sft.train_sft(model, tokenizer, rows["sft"], cfg, workdir / f"{kind}-{lever}")
    elif kind == "fusechat-dpo":
        dpo_loop.train_dpo(model, tokenizer, rows["dpo"], cfg, workdir / f"{kind}-{lever}")
    else:
        raise SystemExit(f"unknown worker {kind}")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="catalog name, HF folder, or 'tiny'")
    parser.add_argument("--run", default="runs/cpu-default", help="run folder whose build stage gives the data")
    parser.add_argument("--only", nargs="*", default=[], help="subset of trl-sft fusechat-sft trl-dpo fusechat-dpo "
                        "(a lever: fusechat-dpo:full-logits)")
    parser.add_argument("--levers", action="store_true", help="also run fusechat with each lever switched, one at a time")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:  # inside a child process
        print(json.dumps(worker(args.worker, args.model, Path(args.data), Path(args.workdir))))
        return
    workdir = Path(tempfile.mkdtemp(prefix="fusechat-train-bench-"))
    try:
        compare(args, workdir)
    finally:  # every configuration's checkpoints: gigabytes
        shutil.rmtree(workdir, ignore_errors=True)


def compare(args, workdir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from fusechat.runfolder import RunFolder
    from sampling import matmul_peak  # benchmarks/sampling.py, beside this script

    path = model_path(args.model, workdir)
    sft, dpo = RunFolder(args.run).records("build", "sft"), RunFolder(args.run).records("build", "dpo")
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
    kinds = args.only or ["trl-sft", "fusechat-sft", "trl-dpo", "fusechat-dpo"]
    if args.levers:
        kinds += [f"{kind}:{lever}" for kind in LEVERS for lever in LEVERS[kind]]
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, "--worker", kind, "--model", path, "--data", str(data),
                              "--workdir", str(workdir)], capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            why = "killed (out of memory?)" if out.returncode == -9 else f"exit {out.returncode}"
            print(f"{kind} failed, {why}:\n{out.stderr[-2000:]}", file=sys.stderr)
            rows[kind] = {"failed": why}
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        stage = kind.partition(":")[0].split("-")[1]
        row["tok_s"] = tokens[stage] / row["seconds"]
        row["flops_fraction_bf16_peak"] = 6 * params * row["tok_s"] / peaks["bf16"]
        rows[kind] = row
        print(f"  {kind}: epoch {row['seconds']:.1f}s, {row['tok_s']:.0f} tok/s, peak RSS {row['peak_rss_gib']:.2f} GiB",
              file=sys.stderr, flush=True)
    print("| stage | TRL defaults | fusechat | fusechat / TRL |\n|---|---|---|---|")
    for stage in ("sft", "dpo"):
        trl, ours = rows.get(f"trl-{stage}"), rows.get(f"fusechat-{stage}")
        if not (trl and ours) or "failed" in trl or "failed" in ours:
            continue
        print(f"| {stage} epoch wall | {trl['seconds']:.1f} s | {ours['seconds']:.1f} s | {ours['seconds'] / trl['seconds']:.2f}× |")
        print(f"| {stage} tokens/s | {trl['tok_s']:.0f} | {ours['tok_s']:.0f} | {ours['tok_s'] / trl['tok_s']:.2f}× |")
        print(f"| {stage} peak RSS | {trl['peak_rss_gib']:.2f} GiB | {ours['peak_rss_gib']:.2f} GiB | "
              f"{ours['peak_rss_gib'] / trl['peak_rss_gib']:.2f}× |")
        print(f"| {stage} achieved FLOP/s / bf16 peak | {trl['flops_fraction_bf16_peak']:.1%} | "
              f"{ours['flops_fraction_bf16_peak']:.1%} | |")
    levers = [k for k in rows if ":" in k]
    if levers:
        print("\n| lever (one change to the default run) | tokens/s | vs default | peak RSS | vs default |\n|---|---|---|---|---|")
    for kind in levers:
        trainer, _, lever = kind.partition(":")
        row, base = rows[kind], rows.get(trainer, {})
        if "failed" in row:
            print(f"| {trainer}: {LEVERS[trainer][lever]} | {row['failed']} | | | |")
            continue
        vs = (lambda key: f"{row[key] / base[key]:.2f}×") if "tok_s" in base else (lambda key: "")  # noqa: B023
        print(f"| {trainer}: {LEVERS[trainer][lever]} | {row['tok_s']:.0f} | {vs('tok_s')} | {row['peak_rss_gib']:.2f} GiB | "
              f"{vs('peak_rss_gib')} |")


if __name__ == "__main__":
    main()

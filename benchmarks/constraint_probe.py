"""Training-side probe: how often a model keeps its constraint on *training* constraint prompts (never eval ones).

    python benchmarks/constraint_probe.py qwen2.5-coder-1.5b-instruct   # 24 prompts, temperature 0.7, llama.cpp
"""
import sys, time
from fusechat.constraints import make_prompts, check
from fusechat.recipe import Source, Sampling
from fusechat.backends.base import Request
from fusechat.backends.factory import open_backend
model = sys.argv[1]
rows = make_prompts(24, seed=99, split="train")
s = Sampling(temperature=0.7, top_p=0.8, max_new_tokens=320)
b = open_backend(Source(name="p", model=model, backend="llamacpp", batch_size=4, threads=1, sampling=s))
t = time.time()
gens = b.generate([Request([{"role": "user", "content": r["prompt"]}], i) for i, r in enumerate(rows)], s)
b.close()
kept = [check(g.text, r["constraints"], r["prompt"]) for g, r in zip(gens, rows)]
print(model, f"kept {sum(kept)}/{len(kept)}", f"{time.time()-t:.0f}s", sum(g.completion_tokens for g in gens), "tokens")

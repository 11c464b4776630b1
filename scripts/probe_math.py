"""Probe which reasoning-gym difficulty suits a recipe: greedy accuracy of catalog models via llama.cpp.

    python scripts/probe_math.py smollm2-135m-instruct qwen2.5-coder-0.5b-instruct [--n 24]
"""

import argparse
import time

from fusechat.catalog import prepare
from fusechat.packs import reasoning_gym_prompts
from fusechat.recipe import Sampling
from fusechat.backends.base import Request
from fusechat.backends.llamacpp import LlamaCppBackend
from fusechat.scorers.math import MathChecker

TASKS = [
    ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
    ("chain_sum", {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}),
    ("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}),
    ("basic_arithmetic", {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}),
]

parser = argparse.ArgumentParser()
parser.add_argument("models", nargs="+")
parser.add_argument("--n", type=int, default=24)
args = parser.parse_args()
checker = MathChecker()
for model in args.models:
    backend = LlamaCppBackend(prepare(model), slots=8, ctx_per_slot=1024)
    for task, options in TASKS:
        problems = reasoning_gym_prompts(task, args.n, 12345, options)
        started = time.time()
        requests = [Request([{"role": "user", "content": p["prompt"]}], 1) for p in problems]
        answers = backend.generate(requests, Sampling(temperature=0, max_new_tokens=256))
        solved = sum(bool(checker.check(a.text, p["answer"]).correct) for a, p in zip(answers, problems))
        print(f"{model} {task} {options}: {solved}/{args.n} in {time.time() - started:.0f}s", flush=True)
    backend.close()
checker.close()

"""`fusechat plan --calibrate`: measure this machine's speeds for the planner (fusechat.plan), with a few
of the recipe's own prompts, through the stages' own public functions (the prompt list, the backends,
the judge, the eval's answer generation, the training model loader). Cached in the calibration file
the planner reads; written atomically, so a killed calibration leaves the last good one.
"""

from __future__ import annotations

import json
import time

from fusechat import benchmarks
from fusechat.backends.base import Request
from fusechat.backends.factory import open_backend
from fusechat.evaluate import generate_answers
from fusechat.models import target_path
from fusechat.plan import calibrated, calibration_file, calibration_key
from fusechat.prompts import collect_prompts
from fusechat.recipe import Recipe
from fusechat.runfolder import write_atomic
from fusechat.scorers.judge import open_judge
from fusechat.train.common import load_model, use_bf16


def spread(items: list, k: int) -> list:
    """`k` items evenly spaced over the list (the first few prompts of a set can be its easiest)."""
    return items if len(items) <= k else [items[i * len(items) // k] for i in range(k)]


def calibrate(recipe: Recipe, per_domain: int = 4, say=print) -> None:
    """Measure this machine: each source answering a few of the recipe's own prompts as the sample stage
    asks (every prompt its `samples_per_prompt` times, all at once), for speed and answer and prompt
    lengths per domain; the judge on those real answers; the target's training and evaluation speed. Cached."""
    prompts, _ = collect_prompts(recipe) if recipe.prompts else ([], {})  # a `data:` recipe: the target only
    cal = calibrated()
    answers = []  # (prompt, answer) for the judge
    for source in recipe.sources:
        if source.backend in ("openai", "dataset"):
            continue
        chosen = [p for d in sorted({p.domain for p in prompts}) if source.samples_for(d)
                  for p in spread([q for q in prompts if q.domain == d], per_domain) for _ in range(source.samples_for(d))]
        requests = [Request([{"role": "user", "content": p.prompt}], i) for i, p in enumerate(chosen)]
        say(f"calibrating {source.name}: {len(requests)} answers")
        with open_backend(source) as backend:
            started = time.time()
            out = backend.generate(requests, source.sampling)
            seconds = time.time() - started
        tokens = sum(g.completion_tokens for g in out)
        cal[calibration_key("generate", source.model, source.backend, source.batch_size)] = {
            "tokens_per_s": round(tokens / seconds, 1), "measured": time.strftime("%Y-%m-%d")}
        lengths: dict[str, list[tuple[int, int, bool]]] = {}
        for g, p in zip(out, chosen):
            lengths.setdefault(p.domain, []).append((g.completion_tokens, g.prompt_tokens, g.finish_reason == "stop"))
            if p.domain in recipe.score.reward.domains and g.finish_reason == "stop":
                answers.append((p.prompt, g.text))
        for domain, values in lengths.items():
            cal[calibration_key("length", source.model, domain, source.sampling.max_new_tokens)] = {
                "tokens": sum(c for c, _, _ in values) / len(values), "prompt_tokens": sum(p for _, p, _ in values) / len(values),
                "finished": sum(f for _, _, f in values) / len(values)}
        write_atomic(calibration_file(), json.dumps(cal, indent=1))
    reward = recipe.score.reward
    if reward.kind == "judge" and recipe.prompts:
        sample = spread(answers, 6) or [(p.prompt, "A short answer of a few sentences. " * 8) for p in prompts[:6]]
        say(f"calibrating the judge {reward.model}: {len(sample)} judgments of the answers above")
        started = time.time()
        with open_judge(reward.model, reward.backend) as judge:
            judge.grade("Warm up.", "Yes.")
            load = time.time() - started
            started = time.time()
            judge.score(sample)
            per = (time.time() - started) / len(sample)
        cal[calibration_key("judge", reward.model, reward.backend, 1)] = {"seconds_per_item": round(per, 2),
                                                                          "load_s": round(load, 1)}
        write_atomic(calibration_file(), json.dumps(cal, indent=1))
    if recipe.target:
        calibrate_target(recipe, cal, say)
        write_atomic(calibration_file(), json.dumps(cal, indent=1))


def calibrate_target(recipe: Recipe, cal: dict, say) -> None:
    """The target's training speed (SFT steps; DPO at the same rate: its reference pass is precomputed and
    only completions get logits, so on the default run it trained at 142 tokens/s to SFT's 123) and its
    greedy evaluation speed and answer lengths."""
    import torch
    from transformers import AutoTokenizer

    path = target_path(recipe)
    cfg = recipe.sft
    say(f"calibrating the target {recipe.target.model}: 3 training steps, 16 evaluation answers a benchmark")
    model = load_model(path, cfg)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    length = min(cfg.max_length, 384)
    ids = torch.randint(0, model.config.vocab_size, (cfg.batch_size, length))
    times = []
    for _ in range(3):
        started = time.time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(cfg) and not torch.cuda.is_available()):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.time() - started)
    rate = cfg.batch_size * length / min(times[1:])  # the first step warms up
    del model, optimizer
    cal[calibration_key("sft", recipe.target.model, "train", cfg.batch_size)] = {"tokens_per_s": round(rate, 1)}
    cal[calibration_key("dpo", recipe.target.model, "train", cfg.batch_size)] = {"tokens_per_s": round(rate, 1)}

    ev = recipe.eval
    problems = {b: spread(items, 16) for b, items in benchmarks.problems(recipe).items()}
    started = time.time()
    answers = generate_answers(path, problems, recipe)  # as the stage does it: benchmarks of one length cap together
    seconds = time.time() - started
    tokenizer = AutoTokenizer.from_pretrained(path)
    lengths = {b: sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in texts) / max(len(texts), 1)
               for b, texts in answers.items()}
    tokens = sum(lengths[b] * len(problems[b]) for b in problems)
    # 16 answers a benchmark fill smaller batches than the evaluation's: a conservative speed
    cal[calibration_key("eval", recipe.target.model, "transformers", ev.batch_size)] = {
        "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "lengths": lengths}

"""A paper recipe end to end on this CPU with one source served over HTTP (every paper recipe as shipped:
tests/test_rehearse.py). Each model is replaced by a tiny random one of its own architecture family (with
SmolLM2's real tokenizer and chat template); everything a CPU can run is kept:
the global batch of 128 and the gradient accumulation it implies, every stage, the reward model, the
judge, one source served over HTTP by a local llama.cpp server (`backend: openai`). The vLLM sources
move to transformers by one override (`sources.*.backend=transformers`)."""

from __future__ import annotations

import json

import pytest

from fusechat.pipeline import run_all
from fusechat.plan import make_plan
from fusechat.recipe import builtin_recipe, load_recipe
from fusechat.runfolder import read_jsonl

pytestmark = pytest.mark.real  # one source is SmolLM2 from the catalog, served by llama.cpp

PAPER = ["paper-llama3.1-8b", "paper-llama3.2-1b", "paper-llama3.2-3b", "paper-qwen2.5-7b", "paper-gemma2-9b"]


def family(hub_id: str) -> str:
    name = hub_id.lower()
    return "gemma2" if "gemma" in name else "mistral" if "mistral" in name else "qwen2" if "qwen" in name else "llama"


@pytest.fixture(scope="module")
def tiny(smol_tokenizer_dir, tmp_path_factory):
    """family -> a 2-layer random model of that architecture (and "reward": a Llama sequence classifier)."""
    import torch
    from transformers import (AutoTokenizer, Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config,
                              AutoModelForCausalLM, LlamaForSequenceClassification)

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    configs = {"llama": LlamaConfig(**common), "qwen2": Qwen2Config(**common), "mistral": MistralConfig(**common),
               "gemma2": Gemma2Config(**common, head_dim=16)}
    folders = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        folders[name] = tmp_path_factory.mktemp(f"tiny-{name}")
        AutoModelForCausalLM.from_config(config).save_pretrained(folders[name])
        tokenizer.save_pretrained(folders[name])
    folders["reward"] = tmp_path_factory.mktemp("tiny-reward")
    LlamaForSequenceClassification(LlamaConfig(**common, num_labels=1, pad_token_id=tokenizer.pad_token_id)
                                   ).save_pretrained(folders["reward"])
    tokenizer.save_pretrained(folders["reward"])
    return folders


def prompt_files(folder) -> list[dict]:
    rows = {
        "instruction": [{"prompt": "Give one tip for sleeping well."}, {"prompt": "Name a colour of the sky."},
                        {"prompt": "Say hello politely."}],
        "math": [{"prompt": "What is 2 + 3?", "answer": "5"}, {"prompt": "What is 4 * 2?", "answer": "8"}],
        "code": [{"prompt": "Write a Python function sum_two(a, b) that returns a + b.", "tests": "assert sum_two(1, 2) == 3",
                  "entry_point": "sum_two"}],
        "chinese": [{"prompt": "用一句话介绍你自己。"}],
    }
    sets = []
    for domain, items in rows.items():
        path = folder / f"{domain}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items))
        sets.append({"domain": domain, "path": str(path)})
    return sets


@pytest.mark.parametrize("name", PAPER[:1])  # every paper recipe as shipped: tests/test_rehearse.py
def test_paper_recipe_end_to_end_with_tiny_models_of_its_families(name, tmp_path, tiny, server):
    paper = load_recipe(builtin_recipe(name))
    overrides = [f"run_dir={tmp_path / 'run'}", f"prompts.sets={json.dumps(prompt_files(tmp_path))}",
                 "sources.*.backend=transformers", "sources.*.sampling.max_new_tokens=12",
                 # random models never stop early: keep answers cut at 12 tokens, or nothing is left to train on
                 "build.drop_truncated=false",
                 f"score.reward.model={tiny['reward']}", "score.reward.trust_remote_code=false",
                 f"target.model={tiny[family(paper.target.model)]}",
                 "eval.humaneval=1", "eval.mtbench=1", "eval.constraints=1", "eval.max_new_tokens=12",
                 "eval.harness=[]",  # lm-eval's tasks come from the hub (tests/test_harness.py runs a local one)
                 "eval.judged=[]",  # AlpacaEval / Arena-Hard questions too (tests/test_judged.py reads local ones)
                 # EvalPlus's and LiveCodeBench's rows come from the hub (tests/test_evalplus.py and
                 # tests/test_livecodebench.py read local ones; the rehearsal makes fixtures)
                 "eval.humaneval_plus=0", "eval.mbpp_plus=0", "eval.livecodebench=null", "eval.backend=transformers",
                 # AlignBench's and LiveBench's too, and the judges are endpoints (tests/test_rehearse.py runs all 14)
                 "eval.alignbench=null", "eval.livebench=null", "eval.mtbench_graded=null", "eval.pairwise_judge=null",
                 f"eval.judge={tiny['qwen2']}", "eval.judge_backend=transformers"]
    overrides += [f"sources.{i}.model={tiny[family(s.model)]}" for i, s in enumerate(paper.sources)]
    # OpenMathInstruct-2's solutions: a local file in the dataset's own columns (problem, generated_solution)
    solutions = tmp_path / "openmath.jsonl"
    solutions.write_text("".join(json.dumps({"problem": p, "generated_solution": f"... so the answer is \\boxed{{{a}}}."})
                                 + "\n" for p, good in (("What is 2 + 3?", "5"), ("What is 4 * 2?", "8"))
                                 for a in [good] * 5 + ["7"] * 3))
    given = [i for i, s in enumerate(paper.sources) if s.backend == "dataset"]
    assert len(given) == 1
    overrides += [f"sources.{given[0]}.backend=dataset", f"sources.{given[0]}.responses.dataset={solutions}"]
    # a sampled source is served: a llama.cpp server on loopback, reached through the OpenAI API
    last = next(i for i, s in enumerate(paper.sources) if s.domains is None)
    overrides += [f"sources.{last}.backend=openai", f"sources.{last}.endpoint={server}", f"sources.{last}.model=smollm2"]
    recipe = load_recipe(builtin_recipe(name), overrides)
    assert recipe.sft.global_batch_size == recipe.dpo.global_batch_size == 128  # kept: 64 steps accumulated here

    plan = make_plan(recipe)  # what `fusechat run` prints first
    assert not plan.problems() and {r.stage for r in plan.rows} >= {"sample", "sft", "dpo", "eval"}

    manifests = run_all(recipe)
    samples = read_jsonl(recipe.run_path / "sample" / "samples.jsonl")
    want = sum(s.samples_for(d) * n for s in recipe.sources for d, n in
               {"instruction": 3, "math": 2, "code": 1, "chinese": 1}.items())
    assert len(samples) == want and {s["source"] for s in samples} == {s.name for s in recipe.sources}
    assert all(s["finish_reason"] != "error" for s in samples)
    assert manifests["sft"]["counts"]["examples"] > 0 and "dpo" in manifests
    results = read_jsonl(recipe.run_path / "eval" / "results.jsonl")
    assert {r["model"] for r in results} == {"base", "sft", "sft+dpo"}

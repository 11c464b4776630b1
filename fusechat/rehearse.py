"""`fusechat rehearse RECIPE`: the recipe exactly as shipped, every stage, on tiny stand-ins.

What a user runs before renting the nodes. Every part of the recipe is kept (its prompt sets with their
columns, filters and splits, its sources and their sampling, its reward model's class, its build rules,
its training settings with the global batch, its evaluation) except what cannot be had on this machine,
and each such replacement is one line of the rehearsal's notes:

- each model becomes a tiny random model of its architecture family (Llama, Qwen2, Mistral, Gemma2) with
  SmolLM2's tokenizer and chat template (shipped in `fusechat/standins/`: the only one every machine has
  offline); ArmoRM becomes a tiny ArmoRM with its state-dict names, other reward models a tiny classifier;
- each hub dataset becomes a small fixture in that dataset's real columns (a `save_to_disk` folder, so
  split names like OpenMathInstruct-2's `train_1M` work), each missing prompt file a small file;
- counts are divided by `scale` (prompts per set, evaluation items; at least one each);
- vLLM, llama.cpp and OpenAI-compatible sources are sampled with transformers (a GPU or a server is what
  the rehearsal cannot have); lm-eval's tasks run under their own names and protocols on local copies of
  their data (a task YAML that includes the real one, on the include path after it); the benchmarks'
  hub sets become fixtures in their layouts; judge endpoints become a local stand-in
  (fusechat/standin_judge.py) that answers in each benchmark's format;
- random models never stop, so answers are capped at `max_new_tokens` and cut answers are kept.

It ends with the plan's estimate for the real run beside what each stage took here.
"""

from __future__ import annotations

import copy
import gzip
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fusechat import FusechatError, standin_judge
from fusechat.plan import Plan, make_plan
from fusechat.recipe import Recipe, read_yaml_mapping, recipe_from_dict

TOKENIZER = Path(__file__).parent / "standins" / "smollm2-tokenizer"

# The columns of the datasets the shipped recipes name, so a fixture has the real layout (a row per item;
# PROMPT, ANSWER and the like are filled in per row).
LAYOUTS = {
    "openbmb/UltraFeedback": {"source": "evol_instruct", "instruction": "PROMPT", "models": [], "completions": []},
    "Magpie-Align/Magpie-Pro-DPO-100K-v0.1": {"uuid": "ID", "instruction": "PROMPT", "task_category": "Information seeking",
                                              "difficulty": "easy", "chosen": [], "rejected": []},
    "nvidia/HelpSteer2": {"prompt": "PROMPT", "response": "RESPONSE", "helpfulness": 3, "correctness": 3},
    "nvidia/OpenMathInstruct-2": {"problem": "PROMPT", "generated_solution": "SOLUTION", "expected_answer": "ANSWER",
                                  "problem_source": "augmented_math"},
    "llm-wizard/alpaca-gpt4-data-zh": {"instruction": "PROMPT", "input": "", "output": "RESPONSE"},
    "Magpie-Align/Magpie-Qwen2-Pro-200K-Chinese": {"uuid": "ID", "instruction": "PROMPT", "response": "RESPONSE"},
    "FuseAI/FuseChat-3.0-SFT-Data": {"messages": "CONVERSATION"},
    "FuseAI/FuseChat-3.0-DPO-Data": {"prompt": "PROMPT", "chosen": "CHOSEN", "rejected": "REJECTED"},
}
TOPICS = ["rivers", "tea", "birds", "autumn", "maps", "bread", "bridges", "music", "gardens", "trains", "clouds",
          "libraries", "forests", "kites", "lighthouses", "markets"]
SOLUTIONS_PER_PROBLEM = 8  # a dataset of responses holds several per problem (5 right, 3 wrong here)


@dataclass
class Rehearsal:
    recipe: Recipe  # what ran: the shipped recipe with its stand-ins
    plan: Plan  # the plan's estimate for the real run
    notes: list[str] = field(default_factory=list)  # what stood in for what, one line each
    manifests: dict = field(default_factory=dict)
    stop_judge: object = None  # stops the stand-in judge endpoint, where the recipe names judges

    def close(self) -> None:
        if self.stop_judge is not None:
            self.stop_judge()
            self.stop_judge = None


def unpack_tokenizer(folder: Path) -> Path:
    """SmolLM2's tokenizer and chat template, shipped gzipped in fusechat/standins/, as a plain folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER.iterdir():
        if f.suffix == ".gz":
            (folder / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        else:
            shutil.copy(f, folder / f.name)
    return folder


def family(model: str) -> str:
    name = model.lower()
    return "gemma2" if "gemma" in name else "mistral" if "mistral" in name else "qwen2" if "qwen" in name else "llama"


def prepare(path: str | Path, scale: int = 1000, max_new_tokens: int = 16, run_dir: str | Path | None = None,
            gpus: int = 8, gpu_gb: float = 80.0) -> Rehearsal:
    """The stand-in recipe (models, fixtures and folders made under the run folder), not yet run, and the
    plan of the real run on `gpus` GPUs of `gpu_gb` GB (the nodes it is meant for)."""
    path = Path(path)
    shipped = read_yaml_mapping(path)  # the strict loader: a duplicate key stops here
    real = recipe_from_dict(copy.deepcopy(shipped), str(path))
    if scale < 1:
        raise FusechatError(f"--scale {scale}: divide counts by 1 or more")
    data = copy.deepcopy(shipped)
    run = Path(run_dir or f"runs/rehearse-{real.name}")
    data["run_dir"] = str(run)
    work = run / "standins"
    work.mkdir(parents=True, exist_ok=True)
    try:
        plan = make_plan(real, gpus, gpu_gb)
    except FusechatError as e:  # the real data is not readable here: no estimate, said so
        plan = Plan(recipe=real.name, hardware=f"{gpus} GPUs of {gpu_gb:g} GB", notes=[str(e)])
    r = Rehearsal(recipe=real, plan=plan)
    if not plan.rows:
        r.notes.append(f"plan: no estimate for the real run ({'; '.join(plan.notes) or 'nothing to plan'})")
    models = _Models(work)
    fixtures = _Fixtures(work, scale)

    def scaled(n):
        return None if n is None else max(1, math.ceil(n / scale))

    for spec, raw in zip(real.prompts.sets if real.prompts else [], (data.get("prompts") or {}).get("sets", [])):
        if spec.n is not None:
            raw["n"] = scaled(spec.n)
        if spec.dataset:
            raw["dataset"] = str(fixtures.dataset(spec.dataset, spec.split or "train", spec.domain, scaled(spec.n) or 8,
                                                  spec.columns, spec.where))
        elif spec.path and not Path(spec.path).exists():
            raw["path"] = str(fixtures.prompt_file(spec.path, spec.domain, scaled(spec.n) or 8))
            r.notes.append(f"prompts: {spec.path} is not here; a {spec.domain} file of the same fields stands in")
    if real.data is not None:  # sets made elsewhere (FuseChat-3.0's own): fixtures in their columns
        for kind, count in (("sft", 94_539), ("dpo", 64_128)):
            if getattr(real.data, kind):
                data["data"][kind] = str(fixtures.dataset(getattr(real.data, kind), real.data.split, "instruction",
                                                          scaled(count), None, None))
    cut = set()
    for source, raw in zip(real.sources, data.get("sources", [])):
        if source.backend == "dataset":
            responses = source.responses
            raw["responses"]["dataset"] = str(fixtures.dataset(responses.dataset, responses.split or "train", "math",
                                                               None, responses.columns, None))
            continue
        raw["model"] = str(models.causal(family(source.model)))
        if source.backend in ("vllm", "llamacpp", "openai", "auto"):
            cut.add(source.backend)
            raw["backend"] = "transformers"
            raw.pop("endpoint", None)
            raw.pop("api_key_env", None)
            raw.pop("tensor_parallel_size", None)
        raw.setdefault("sampling", {})["max_new_tokens"] = min(max_new_tokens, source.sampling.max_new_tokens)
    if cut:
        r.notes.append(f"sources: {', '.join(sorted(cut))} sampled with transformers (the rehearsal has no GPU "
                       f"or server); a random model never stops: answers capped at {max_new_tokens} tokens")
    if real.sources:
        data.setdefault("build", {})["drop_truncated"] = False  # every stand-in answer is cut at the cap
    reward = real.score.reward if real.score else None
    if reward is not None and reward.kind == "reward-model":
        data["score"]["reward"]["model"] = str(models.reward(reward.model))
        data["score"]["reward"].pop("trust_remote_code", None)
        data["score"]["reward"]["precision"] = "fp32"  # tiny models: bf16 is slower and noisier
    elif reward is not None and reward.kind == "judge":
        data["score"]["reward"]["model"] = str(models.causal(family(reward.model)))
        data["score"]["reward"]["backend"] = "transformers"
    if real.target is not None:
        data["target"]["model"] = str(models.causal(family(real.target.model)))
    for stage in ("sft", "dpo"):
        if stage in data:
            data[stage]["precision"] = "fp32"
    if real.eval is not None and "eval" in data:
        judges = sorted({j.model for j in (real.eval.pairwise_judge if real.eval.judged else None,
                                           real.eval.mtbench_graded and real.eval.mtbench_graded.judge,
                                           real.eval.alignbench and real.eval.alignbench.judge) if j})
        judge_url = None
        if judges:  # endpoints the rehearsal cannot reach: a local stand-in answers in each benchmark's format
            judge_url, r.stop_judge = standin_judge.start(judges)
            r.notes.append(f"eval: the judge endpoints ({', '.join(judges)}) are a local stand-in that grades at random "
                           "in each benchmark's format (fusechat/standin_judge.py)")
        _eval(real, data["eval"], models, fixtures, scaled, max_new_tokens, r.notes, judge_url)
    r.recipe = recipe_from_dict(data, f"{path} (rehearsal)")
    return r


def _eval(real: Recipe, raw: dict, models, fixtures, scaled, max_new_tokens: int, notes: list[str],
          judge_url: str | None) -> None:
    ev = real.eval
    for name in ("humaneval", "mtbench", "constraints"):
        if getattr(ev, name):
            raw[name] = scaled(getattr(ev, name))
    if ev.math is not None:
        raw["math"] = (raw.get("math") or {}) | {"n": scaled(ev.math.n)}
    raw["max_new_tokens"] = min(max_new_tokens, ev.max_new_tokens)
    if ev.backend == "vllm":
        notes.append("eval: vllm answered with transformers")
        raw["backend"] = "transformers"
    if ev.judge:
        raw["judge"] = str(models.causal(family(ev.judge)))
        raw["judge_backend"] = "transformers"
    if ev.harness:  # each task under its own name and protocol, its data a local fixture in the hub set's layout
        folder, unknown = fixtures.lm_eval_tasks(ev.harness, max(2, scaled(100)), raw["max_new_tokens"])
        raw["harness"] = [t for t in ev.harness if t not in unknown]
        raw["harness_include"] = str(folder)
        notes.append("eval: lm-evaluation-harness tasks read local fixtures in their hub sets' layouts"
                     + (" (MMLU-redux: one subject of 57)" if set(ONE_SUBJECT) & set(ev.harness) else ""))
        if unknown:
            notes.append(f"eval: lm-evaluation-harness tasks without a fixture ({', '.join(unknown)}) read the hub: skipped")
    for spec, judged in zip(ev.judged, raw.get("judged", [])):
        judged["questions"] = str(fixtures.questions(spec.format, scaled(spec.n or 805)))
        judged.pop("split", None)
        if spec.baseline:  # the set's own baseline answers, as its tool ships them
            judged["baseline"] = str(fixtures.baseline(spec.format, scaled(spec.n or 805)))
    if ev.pairwise_judge is not None:
        raw["pairwise_judge"] = {"endpoint": judge_url, "model": ev.pairwise_judge.model}
    if ev.mtbench_graded is not None:
        raw["mtbench_graded"] = {"n": scaled(ev.mtbench_graded.n), "judge": {"endpoint": judge_url, "model": ev.mtbench_graded.judge.model}}
    if ev.alignbench is not None:  # AlignBench's repository layout: its data and rubric files
        n = scaled(ev.alignbench.n or 683)
        raw["alignbench"] = {"n": n, "data": str(fixtures.alignbench(n)),
                             "judge": {"endpoint": judge_url, "model": ev.alignbench.judge.model}}
    if ev.livebench is not None:  # the hub sets' rows, a few per scored task
        raw["livebench"] = (raw.get("livebench") or {}) | {
            "n": scaled(ev.livebench.n or 50), "data": fixtures.livebench(scaled(ev.livebench.n or 50), ev.livebench.release)}
    if ev.livecodebench is not None:  # code_generation_lite rows in the window, run in the sandbox
        n = scaled(ev.livecodebench.n or 300)
        raw["livecodebench"] = (raw.get("livecodebench") or {}) | {
            "n": n, "data": [str(fixtures.livecodebench(n, ev.livecodebench.start))]}
    for name in ("humaneval_plus", "mbpp_plus"):  # EvalPlus rows in the hub sets' layout, run in the sandbox
        if getattr(ev, name):
            raw[name] = scaled(getattr(ev, name))
            raw["evalplus_data"] = (raw.get("evalplus_data") or {}) | {name: str(fixtures.evalplus(name, raw[name]))}
    if ev.extra_models:
        raw["extra_models"] = {name: str(models.causal(family(m))) for name, m in ev.extra_models.items()}


def rehearse(path: str | Path, scale: int = 1000, max_new_tokens: int = 16, run_dir: str | Path | None = None,
             gpus: int = 8, gpu_gb: float = 80.0, progress=None, on_stage=None) -> Rehearsal:
    """Prepare the stand-ins and run every stage of the recipe on them."""
    from fusechat.pipeline import run_all

    r = prepare(path, scale, max_new_tokens, run_dir, gpus, gpu_gb)
    try:
        r.manifests = run_all(r.recipe, progress=progress, on_stage=on_stage)
    finally:
        r.close()
    return r


def comparison(r: Rehearsal) -> list[tuple[str, float | None, float | None]]:
    """(stage, the plan's seconds for the real run, the rehearsal's seconds) per stage."""
    planned: dict[str, float] = {}
    for row in r.plan.rows:
        if row.seconds is not None:
            planned[row.stage] = planned.get(row.stage, 0.0) + row.seconds
    return [(stage, planned.get(stage), m.get("seconds")) for stage, m in r.manifests.items()]


# ---- stand-in models ------------------------------------------------------------------------------------

class _Models:
    """Tiny random models, one per kind, made once under the rehearsal's folder."""

    def __init__(self, folder: Path):
        self.folder = folder / "models"

    def tokenizer(self):
        from transformers import AutoTokenizer

        plain = self.folder / "tokenizer"
        if not (plain / "tokenizer.json").exists():
            unpack_tokenizer(plain)
        return AutoTokenizer.from_pretrained(plain)

    def _common(self, tokenizer) -> dict:
        return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)

    def causal(self, kind: str) -> Path:
        folder = self.folder / kind
        if (folder / "config.json").exists():
            return folder
        import torch
        from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

        tokenizer = self.tokenizer()
        common = self._common(tokenizer)
        config = {"llama": LlamaConfig(**common), "qwen2": Qwen2Config(**common), "mistral": MistralConfig(**common),
                  "gemma2": Gemma2Config(**common, head_dim=16)}[kind]
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    def reward(self, model: str) -> Path:
        """A tiny ArmoRM (its config layout and state-dict names) when the recipe's is ArmoRM, else a tiny classifier."""
        import torch
        from transformers import LlamaConfig, LlamaForSequenceClassification

        armorm = "armorm" in model.lower()
        folder = self.folder / ("armorm" if armorm else "reward")
        if (folder / "config.json").exists():
            return folder
        tokenizer = self.tokenizer()
        torch.manual_seed(0)
        if not armorm:
            config = LlamaConfig(**self._common(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id)
            LlamaForSequenceClassification(config).save_pretrained(folder)
        else:
            from safetensors.torch import save_file

            from fusechat.scorers.armorm import ARCHITECTURE, ArmoRM

            config = LlamaConfig(**self._common(tokenizer), num_objectives=19, gating_hidden_dim=16, gating_n_hidden=3,
                                 gating_temperature=10)
            config.architectures = [ARCHITECTURE]
            model = ArmoRM(config)
            with torch.no_grad():
                model.reward_transform_matrix.add_(0.1 * torch.randn(19, 19))
            folder.mkdir(parents=True, exist_ok=True)
            config.save_pretrained(folder)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
        tokenizer.save_pretrained(folder)
        return folder


# ---- fixtures ---------------------------------------------------------------------------------------------

class _Fixtures:
    def __init__(self, folder: Path, scale: int):
        self.folder = folder / "data"
        self.scale = scale
        self.made: dict[tuple[str, str], Path] = {}

    def dataset(self, name: str, split: str, domain: str, n: int | None, columns: dict | None, where: dict | None) -> Path:
        """A save_to_disk folder with `split`, in `name`'s real columns (or the recipe's column map), holding
        enough rows for `n` prompts (twice as many, and several responses per math problem)."""
        import datasets

        key = (name, split)
        if key in self.made:
            return self.made[key]
        layout = dict(LAYOUTS.get(name) or {})
        for ours, theirs in (columns or {}).items():
            layout.setdefault(theirs, {"prompt": "PROMPT", "answer": "ANSWER", "response": "SOLUTION", "tests": "TESTS",
                                       "entry_point": "ENTRY", "id": "ID"}[ours])
        for column, value in (where or {}).items():
            layout[column] = value[0] if isinstance(value, list) else value
        if not layout:
            layout = {"instruction": "PROMPT", "input": "", "output": "RESPONSE"}
        count = max(2 * (n or 8), 16)
        rows = []
        for i in range(count):
            for k in range(SOLUTIONS_PER_PROBLEM if domain == "math" else 1):
                rows.append({column: _fill(value, domain, i, k, name.split("/")[-1]) for column, value in layout.items()})
        folder = self.folder / name.replace("/", "__") / split
        shutil.rmtree(folder, ignore_errors=True)
        datasets.DatasetDict({split: datasets.Dataset.from_list(rows)}).save_to_disk(str(folder))
        self.made[key] = folder
        return folder

    def prompt_file(self, name: str, domain: str, n: int) -> Path:
        path = self.folder / Path(name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {"prompt": "PROMPT"} | ({"answer": "ANSWER"} if domain == "math" else {}) | (
            {"tests": "TESTS", "entry_point": "ENTRY"} if domain == "code" else {})
        path.write_text("".join(json.dumps({k: _fill(v, domain, i, 0, path.stem) for k, v in fields.items()}, ensure_ascii=False) + "\n"
                                for i in range(max(2 * n, 8))))
        return path

    def livecodebench(self, n: int, date: str) -> Path:
        """LiveCodeBench rows as code_generation_lite lays them out (private cases compressed as it stores them)."""
        import base64
        import pickle
        import zlib

        self.folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(n):
            private = [{"input": f"{i} 5\n", "output": f"{i + 5}\n", "testtype": "stdin"}]
            rows.append({"question_title": f"add {i}", "question_content": "Read two integers and print their sum.",
                         "platform": "atcoder", "question_id": f"rehearsal{i}", "contest_id": "r", "contest_date": f"{date}T00:00:00",
                         "starter_code": "", "difficulty": "easy", "metadata": "{}",
                         "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
                         "private_test_cases": base64.b64encode(zlib.compress(pickle.dumps(json.dumps(private)))).decode()})
        path = self.folder / "livecodebench.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    def evalplus(self, kind: str, n: int) -> Path:
        """HumanEval+ or MBPP+ rows as the hub sets lay them out: a function to write, MBPP's asserts and
        EvalPlus's test program (inputs, reference results, its numpy-based `assertion`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        helper = ("import numpy as np\n\ndef assertion(out, exp, atol):\n    if atol == 0 and isinstance(exp, float):\n"
                  "        atol = 1e-6\n    assert out == exp or (atol and np.allclose(out, exp, atol=atol))\n")
        rows = []
        for i in range(n):
            loop = f"inputs = [[1, 2], [{i}, 3]]\nresults = [3, {i + 3}]\nfor inp, exp in zip(inputs, results):\n"
            if kind == "humaneval_plus":
                rows.append({"task_id": f"HumanEval/{i}", "entry_point": f"add_{i}", "canonical_solution": "    return a + b\n",
                             "prompt": f'def add_{i}(a: int, b: int) -> int:\n    """Return a + b."""\n',
                             "test": helper + "\ndef check(candidate):\n" + "".join("    " + line + "\n" for line in loop.splitlines())
                                     + "        assertion(candidate(*inp), exp, 0)\n"})
            else:
                rows.append({"task_id": i, "prompt": f"Write a function add_{i}(a, b) that returns a + b.",
                             "code": f"def add_{i}(a, b):\n    return a + b\n", "source_file": "", "test_imports": [],
                             "test_list": [f"assert add_{i}(1, 2) == 3"],
                             "test": helper + loop + f"    assertion(add_{i}(*inp), exp, 0)\n"})
        path = self.folder / f"{kind}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    def lm_eval_tasks(self, tasks: list[str], n: int, max_new_tokens: int) -> tuple[Path, list[str]]:
        """Each lm-eval task the rehearsal knows, under its own name, its data swapped for `n` rows of a local
        file in the hub set's layout (a task YAML that includes the real one, on the include path after it,
        so it wins), answers capped at `max_new_tokens` (random models never stop); a group keeps its subtasks'
        YAMLs (MMLU-redux: one of its 57 subjects). Returns the folder of those YAMLs and the
        tasks it has no fixture for."""
        import yaml

        from fusechat.benchmarks.harness import TASKS_DIR

        folder = self.folder / "lm_eval_tasks"
        folder.mkdir(parents=True, exist_ok=True)
        stock = _lm_eval_tasks_dir()
        unknown = []
        for task in tasks:
            parts = LM_EVAL_FIXTURES.get(task)
            if parts is None:
                unknown.append(task)
                continue
            for name, include, split, row in parts:
                data = folder / f"{name}.jsonl"
                data.write_text("".join(json.dumps(row(i), ensure_ascii=False) + "\n" for i in range(n)))
                base = TASKS_DIR if name.startswith("fusechat_") else stock
                (folder / f"{name}.yaml").write_text(yaml.safe_dump({
                    "include": str(base / include), "task": name, "dataset_path": "json", "dataset_name": None,
                    "dataset_kwargs": {"data_files": {split: str(data)}},
                    "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens}}))
            if task in ONE_SUBJECT:  # the group, cut to the one subject above
                (folder / f"{task}.yaml").write_text(yaml.safe_dump({
                    "group": task, "task": [parts[0][0]], "metadata": {"version": 1.0},
                    "aggregate_metric_list": [{"metric": "exact_match", "weight_by_size": True} | ONE_SUBJECT[task]]}))
        return folder, unknown

    def alignbench(self, n: int) -> Path:
        """AlignBench's repository layout: data/data_v1.1_release.jsonl and the three rubric files of config/."""
        folder = self.folder / "alignbench"
        (folder / "config").mkdir(parents=True, exist_ok=True)
        (folder / "data").mkdir(parents=True, exist_ok=True)
        kinds = {"初等数学": "逻辑推理型回答", "翻译": "生成型回答"}
        dims = {"逻辑推理型回答": ["事实正确性", "逻辑连贯性"], "生成型回答": ["事实正确性", "创造性"]}
        for name, content in (("subcategory_question_mapping", kinds), ("dimension_set", dims),
                              ("dimension_definition", {d: f"{d}（定义）" for ds in dims.values() for d in ds})):
            (folder / "config" / f"{name}.json").write_text(json.dumps(content, ensure_ascii=False))
        rows = [{"question_id": i, "category": ("数学计算", "基本任务")[i % 2], "subcategory": ("初等数学", "翻译")[i % 2],
                 "question": _fill("PROMPT", "chinese", i, 0, "alignbench"), "reference": f"参考答案{i}", "evidences": []}
                for i in range(n)]
        (folder / "data" / "data_v1.1_release.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        return folder

    def livebench(self, n: int, release: str) -> dict[str, str]:
        """Rows of each LiveBench category in the hub sets' layout: `n` of each of its tasks (the coding ones with
        test cases, the instruction-following ones with IFEval instructions)."""
        from fusechat.benchmarks.livebench import TASKS

        self.folder.mkdir(parents=True, exist_ok=True)
        out = {}
        for category, tasks in TASKS.items():
            rows = []
            for task in tasks:
                for i in range(n):
                    row = {"question_id": f"{task}-{i}", "category": category, "task": task,
                           "subtask": {"math_comp": "amc_12a_2023", "olympiad": "usamo_2024_p1"}.get(task),
                           "ground_truth": LIVEBENCH_TRUTH.get(task), "turns": [f"{_sum(i)[0]} ({task}; answer in **bold**)"],
                           "livebench_release_date": release, "livebench_removal_date": ""}
                    if category == "coding":
                        case = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
                        row |= {"public_test_cases": json.dumps(case), "private_test_cases": json.dumps(case),
                                "original_json": {"metadata": "{}"}, "partial_solution": ""}
                    elif category == "instruction_following":
                        row |= {"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}
                    elif task == "tablereformat":
                        row["turns"] = ["Please convert the Input Table from TSV format to CSV format.\nInput Table: a\tb\n1\t2\n"]
                    rows.append(row)
            path = self.folder / f"livebench_{category}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
            out[category] = str(path)
        return out

    def baseline(self, fmt: str, n: int) -> Path:
        """The judged set's baseline answers as its tool ships them, for the questions `questions` writes."""
        prompts = [f"Write two sentences about {TOPICS[i % len(TOPICS)]} (question {i})." for i in range(n)]
        if fmt == "alpaca_eval":
            path = self.folder / "alpaca_eval_baseline.json"
            path.write_text(json.dumps([{"instruction": p, "output": "A baseline answer.", "generator": "baseline"}
                                        for p in prompts]))
        else:
            path = self.folder / "arena_hard_baseline.jsonl"
            path.write_text("".join(json.dumps({"question_id": f"q{i}", "model_id": "baseline", "choices": [
                {"index": 0, "turns": [{"content": "A baseline answer."}]}]}) + "\n" for i in range(n)))
        return path

    def questions(self, fmt: str, n: int) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        prompts = [f"Write two sentences about {TOPICS[i % len(TOPICS)]} (question {i})." for i in range(n)]
        if fmt == "alpaca_eval":
            path = self.folder / "alpaca_eval.json"
            path.write_text(json.dumps([{"instruction": p, "dataset": "helpful_base"} for p in prompts]))
        else:
            path = self.folder / "arena_hard_question.jsonl"
            path.write_text("".join(json.dumps({"question_id": f"q{i}", "category": "arena-hard-v0.1",
                                                "turns": [{"content": p}]}) + "\n" for i, p in enumerate(prompts)))
        return path


def _lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def _sum(i: int) -> tuple[str, int]:
    return f"What is {i + 2} + {3 * i + 1}?", 4 * i + 3


# a ground truth of each LiveBench task's kind (the stand-ins' answers will not match it)
LIVEBENCH_TRUTH = {"math_comp": "B", "AMPS_Hard": "\\frac{1}{2}", "olympiad": "3,1,2", "spatial": "3",
                   "web_of_lies_v2": "yes, no, yes", "zebra_puzzle": "2", "connections": "a,b,c,d,e,f,g,h",
                   "plot_unscrambling": "One. Two. Three.", "typos": "The text.", "cta": "birthDate",
                   "tablejoin": "{'a': 'x'}", "tablereformat": "a,b\n1,2\n"}
MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")
# groups of 57 subjects that a rehearsal cuts to one (their aggregate's filter)
ONE_SUBJECT = {"mmlu_redux_generative": {"filter_list": "default"}, "fusechat_mmlu_redux": {}}
# lm-eval tasks the shipped recipes name -> (task, the YAML it includes, the split it reads, a row in its hub
# set's layout) for each task to swap; `_sum(i)` is a question and its answer.
LM_EVAL_FIXTURES = {
    "fusechat_gsm8k": [("fusechat_gsm8k", "fusechat_gsm8k.yaml", "test",
                        lambda i: {"question": _sum(i)[0], "answer": f"Add them.\n#### {_sum(i)[1]}"})],
    "fusechat_amc23": [("fusechat_amc23", "fusechat_amc23.yaml", "test",
                        lambda i: {"id": i, "question": _sum(i)[0], "answer": float(_sum(i)[1])})],
    "fusechat_mmlu_pro": [("fusechat_mmlu_pro", "fusechat_mmlu_pro.yaml", "test",
                           lambda i: {"question_id": i, "question": _sum(i)[0], "options": [str(_sum(i)[1] + d) for d in (-1, 0, 1, 2)],
                                      "answer": "B", "answer_index": 1, "category": "math"})],
    "fusechat_math": [(f"fusechat_math_{s}", f"fusechat_math_{s}.yaml", "test",
                       lambda i: {"problem": _sum(i)[0], "solution": f"The sum is $\\boxed{{{_sum(i)[1]}}}$.",
                                  "level": "Level 1", "type": "Algebra"}) for s in MATH_SUBJECTS],
    "gpqa_diamond_cot_zeroshot": [("gpqa_diamond_cot_zeroshot", "gpqa/cot_zeroshot/gpqa_diamond_cot_zeroshot.yaml", "train",
                                   lambda i: {"Question": _sum(i)[0], "Correct Answer": str(_sum(i)[1]),
                                              **{f"Incorrect Answer {k}": str(_sum(i)[1] + k) for k in (1, 2, 3)}})],
    "mmlu_redux_generative": [("mmlu_redux_abstract_algebra_generative", "mmlu-redux/generative/mmlu_abstract_algebra.yaml",
                               "test", lambda i: {"question": _sum(i)[0], "choices": [str(_sum(i)[1] + d) for d in (-1, 0, 1, 2)],
                                                  "answer": 1})],
    "fusechat_mmlu_redux": [("fusechat_mmlu_redux_abstract_algebra", "fusechat_mmlu_redux_abstract_algebra.yaml", "test",
                             lambda i: {"question": _sum(i)[0], "choices": [str(_sum(i)[1] + d) for d in (-1, 0, 1, 2)],
                                        "answer": 1})],
    "ifeval": [("ifeval", "ifeval/ifeval.yaml", "train",
                lambda i: {"key": i, "prompt": f"Describe {TOPICS[i % len(TOPICS)]} in lowercase letters only.",
                           "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]})],
}


def _fill(value, domain: str, i: int, k: int, tag: str = ""):
    """One cell of a fixture row: row `i`, response `k` of it; `tag` keeps one set's prompts apart from another's."""
    topic = TOPICS[i % len(TOPICS)]
    a, b = i + 2, 3 * i + 1
    prompt = {"math": f"What is {a} + {b}?", "code": f"Write a Python function add_{i}(a, b) that returns a + b (from {tag}).",
              "chinese": f"请用一句话介绍{topic}。（{tag}第{i}题）"}.get(domain, f"Give one tip about {topic} for {tag} (request {i}).")
    if not isinstance(value, str):
        return value
    return {
        "PROMPT": prompt, "ID": f"item-{i}", "ANSWER": str(a + b), "RESPONSE": f"Here is a short answer about {topic}.",
        "SOLUTION": f"Adding gives {a + b if k < 5 else a + b + 1}, so the answer is \\boxed{{{a + b if k < 5 else a + b + 1}}}.",
        "TESTS": f"assert add_{i}(1, 2) == 3\n", "ENTRY": f"add_{i}",
        "CONVERSATION": [{"role": "user", "content": prompt}, {"role": "assistant", "content": f"About {topic}: be patient."}],
        "CHOSEN": [{"role": "assistant", "content": f"A careful answer about {topic}."}],
        "REJECTED": [{"role": "assistant", "content": "No."}],
    }.get(value, value)

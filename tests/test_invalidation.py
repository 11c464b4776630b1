"""Which stages a changed recipe field reruns: its own stage(s) and everything downstream, nothing upstream.

Every field of the recipe schema is in TABLE (a new field fails `test_the_table_covers_every_field`
until its stages are written down here). Speed-only fields rerun nothing.
"""

import copy

import pytest
from pydantic import BaseModel

from fusechat.pipeline import STAGES
from fusechat.recipe import recipe_from_dict
from fusechat.runfolder import RunFolder, config_hash

BASE = {
    "name": "inv", "run_dir": "runs/inv",
    "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 5, "options": {"min_terms": 2}},
                         {"domain": "instruction", "path": "prompts.jsonl"},
                         {"domain": "math", "dataset": "org/maths", "columns": {"prompt": "problem"}}]},
    "sources": [{"name": "a", "model": "smollm2-135m-instruct", "backend": "llamacpp"},
                {"name": "b", "model": "qwen2.5-coder-0.5b-instruct", "backend": "llamacpp"},
                {"name": "d", "model": "big/model", "backend": "dataset", "responses": {"dataset": "answers.jsonl"}}],
    "score": {"reward": {"kind": "judge", "model": "qwen2.5-coder-1.5b-instruct"}},
    "target": {"model": "smollm2-135m-instruct"},
    "sft": {"lora": {"r": 8}},
    "dpo": {"lora": {"r": 8}},
}

P, SA, SC, B, SFT, DPO, E, R = "prompts", "sample", "score", "build", "sft", "dpo", "eval", "report"
NONE = set()

# field (list items as .0) -> (value; the stages whose settings change). An override of another item
# is written as "path@override.path".
TABLE = {
    "name": ("other", {R}),
    "run_dir": ("runs/elsewhere", NONE),  # another folder altogether, not a setting
    "seed": (1, {SA}),
    "shard_size": (4, {SA}),
    "prompts.sets.0.domain": ("code", {P}),
    "prompts.sets.0.pack": ("code-functions", {P, E}),  # eval borrows the first reasoning-gym set's task
    "prompts.sets.0.path@prompts.sets.1.path": ("other.jsonl", {P}),
    "prompts.sets.0.n": (6, {P}),
    "prompts.sets.0.task": ("basic_arithmetic", {P, E}),
    "prompts.sets.0.options": ({"min_terms": 3}, {P, E}),
    "prompts.sets.0.seed": (5, {P}),
    "prompts.sets.0.dataset@prompts.sets.2.dataset": ("org/other", {P}),
    "prompts.sets.0.subset@prompts.sets.2.subset": ("main", {P}),
    "prompts.sets.0.split@prompts.sets.2.split": ("test", {P}),
    "prompts.sets.0.columns@prompts.sets.2.columns": ({"prompt": "question"}, {P}),
    "prompts.sets.0.where@prompts.sets.2.where": ({"level": 1}, {P}),
    "prompts.sets.0.drop_math_and_code@prompts.sets.1.drop_math_and_code": (True, {P}),
    "prompts.sft_fraction": (0.5, {P}),
    "prompts.split_seed": (1, {P}),
    "prompts.max_prompt_chars": (100, {P}),
    "sources.0.name": ("c", {SA, B}),  # build orders sources by name
    "sources.0.model": ("qwen2.5-coder-0.5b-instruct", {SA}),
    "sources.0.backend": ("transformers", {SA}),
    "sources.0.endpoint": ("http://localhost:1/v1", {SA}),
    "sources.0.api_key_env": ("KEY", {SA}),
    "sources.0.request_timeout_s": (5, NONE),
    "sources.0.max_retries": (1, NONE),
    "sources.0.tensor_parallel_size": (2, {SA}),
    "sources.0.chat_template": ("{{ messages }}", {SA}),
    "sources.0.sampling.temperature": (0.3, {SA}),
    "sources.0.sampling.top_p": (0.5, {SA}),
    "sources.0.sampling.repetition_penalty": (1.1, {SA}),
    "sources.0.sampling.max_new_tokens": (64, {SA}),
    "sources.0.samples_per_prompt": ({"math": 2}, {SA}),
    "sources.0.domains": (["math"], {SA}),
    "sources.0.batch_size": (3, {SA}),
    "sources.0.threads": (1, NONE),
    "sources.0.in_flight": (64, NONE),
    "sources.0.replicas": (2, NONE),
    "sources.0.dtype": ("float32", {SA}),
    "sources.0.responses@sources.2.responses": ({"dataset": "other.jsonl"}, {SA}),
    "score.reward.kind": ("reward-model", {SC}),
    "score.reward.model": ("smollm2-135m-instruct", {SC, E}),  # also eval's default MT-Bench judge
    "score.reward.backend": ("transformers", {SC}),
    "score.reward.trust_remote_code": (True, {SC}),
    "score.reward.batch_size": (2, {SC}),  # batched scores agree only to ~1e-5
    "score.reward.max_length": (512, {SC}),
    "score.reward.precision": ("fp32", {SC}),
    "score.reward.domains": (["math"], {SC}),
    "score.reward.only_correct": (True, {SC}),
    "score.reward.only_ranked": (True, {SC}),
    # an endpoint is for a reward model (the base's reward is a judge): the whole section changes, model too
    "score.reward.endpoint@score.reward": ({"kind": "reward-model", "model": "rm", "endpoint": "http://rm:8000"}, {SC, E}),
    "score.reward.api_key_env@score.reward": ({"kind": "judge", "model": "qwen2.5-coder-1.5b-instruct",
                                              "api_key_env": "KEY"}, {SC}),
    "score.math_timeout_s": (3, {SC, E}),  # eval checks math answers the same way
    "score.code.timeout_s": (3, {SC, E}),  # eval runs HumanEval in the same sandbox
    "score.code.memory_mb": (512, {SC, E}),
    "score.code.max_output_bytes": (1000, {SC, E}),
    "score.code.disk_mb": (8, {SC, E}),
    "score.code.max_procs": (4, {SC, E}),
    "score.code.max_files": (100, {SC, E}),
    "score.code.allow_unisolated": (True, {SC, E}),
    "score.workers": (4, NONE),
    "build.pairing": ("cross-source", {B}),
    "build.gap_window": ([0.0, 1.0], {B}),
    "build.window_domains": (["math"], {B}),
    "build.sources": (["a"], {B}),
    "build.exclude_sources": (["b"], {B}),
    "build.drop_truncated": (False, {B}),
    "build.tie_break": (["b", "d", "a"], {B}),
    "build.instruction_split": ("pairs", {B}),
    "build.source_logps": (True, {B}),
    "target.model": ("qwen2.5-coder-0.5b-instruct", {SFT, E}),
}
for stage in ("sft", "dpo"):
    TABLE |= {f"{stage}.{k}": (v, {stage}) for k, v in {
        "epochs": 2, "learning_rate": 1e-3, "batch_size": 2, "grad_accum": 2, "global_batch_size": 16,
        "max_length": 256, "scheduler": "linear",
        "warmup_ratio": 0.2, "weight_decay": 0.1, "precision": "fp32", "save_steps": 5, "seed": 3, "length_grouping": False,
        "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.1, "lora.target_modules": ["q_proj"]}.items()}
    TABLE |= {f"{stage}.threads": (1, NONE), f"{stage}.activation_checkpointing": (True, NONE),
              f"{stage}.report_to": (["tensorboard"], NONE)}
TABLE |= {
    "sft.padding_free": (False, NONE),
    "sft.torch_compile": (True, NONE),
    "dpo.loss": ("dpo", {DPO}),
    "dpo.beta": (0.1, {DPO}),
    "dpo.eval_fraction": (0.2, {DPO}),
    "dpo.sft_weight": (1.0, {DPO}),
    "dpo.label_smoothing": (0.1, {DPO}),
    "dpo.simpo_gamma": (1.0, {DPO}),
    "dpo.max_tokens_per_forward": (512, NONE),
    "dpo.completion_only_logits": (False, NONE),
    "eval.math.task": ("basic_arithmetic", {E}),
    "eval.math.options": ({"min_terms": 4}, {E}),
    "eval.math.n": (10, {E}),
    "eval.math.seed": (7, {E}),
    "eval.math.max_new_tokens": (32, {E}),
    "eval.models": (["base", "sft+dpo"], {E}),
    "eval.humaneval": (5, {E}),
    "eval.mtbench": (5, {E}),
    "eval.constraints": (5, {E}),
    "eval.judge": ("smollm2-135m-instruct", {E}),
    "eval.judge_backend": ("transformers", {E}),
    "eval.max_new_tokens": (64, {E}),
    "eval.batch_size": (4, NONE),
    "eval.dtype": ("float32", {E}),
    "eval.extra_models": ({"mine": "some/model"}, {E}),
    "eval.harness": (["gsm8k"], {E}),
    "eval.harness_limit": (10, {E}),
    "eval.harness_include": ("my-tasks", {E}),
    "eval.harness_chat_template": (False, {E}),
    "eval.judged": ([{"format": "alpaca_eval", "questions": "alpaca_eval.json"}], {E}),
    "eval.pairwise_judge": ({"endpoint": "http://localhost:1/v1", "model": "judge"}, {E}),
    "eval.judged_baseline": ("sft", {E}),
    "eval.backend": ("vllm", {E}),
    "eval.humaneval_plus": (5, {E}),
    "eval.mbpp_plus": (5, {E}),
    "eval.evalplus_data": ({"humaneval_plus": "he.jsonl", "mbpp_plus": "mbpp.jsonl"}, {E}),
    "eval.livecodebench": ({"n": 3}, {E}),
    "eval.mtbench_graded": ({"judge": {"endpoint": "http://localhost:1/v1", "model": "judge"}}, {E}),
    "eval.alignbench": ({"judge": {"endpoint": "http://localhost:1/v1", "model": "judge"}}, {E}),
    "eval.livebench": ({"n": 3}, {E}),
    # how many processes train, not what (with global_batch_size set: tests/test_distributed.py)
    "launch.accelerate_config": ("fsdp", NONE),
    "launch.processes": (2, NONE),
}
# `data` replaces prompts and sources (a recipe has one or the other): its build stage and what a change
# to it reruns are tested in tests/test_import_data.py.
NOT_HERE = {"data"}

ORDER = list(STAGES)


def downstream(stages: set) -> set:
    """The stages that read (directly or not) any of `stages`, and those stages themselves."""
    out = set(stages)
    for name in ORDER:  # declaration order is data-flow order
        s = STAGES[name]
        if out & set(s.reads + s.uses):
            out.add(name)
    return out


def leaves(value, path=""):
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from leaves(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
        yield from leaves(value[0], f"{path}.0")
    else:
        yield path


def changed(field: str, value) -> tuple[set, set]:
    """(stages whose settings hash changed, stages a run of the pipeline would redo)"""
    data = copy.deepcopy(BASE)
    node, parts = data, field.split("@")[-1].split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[parts[-1]] = value
    before, after = recipe_from_dict(copy.deepcopy(BASE)), recipe_from_dict(data)
    own = {n for n in ORDER if config_hash(STAGES[n].settings(before)) != config_hash(STAGES[n].settings(after))}
    return own, downstream(own)


def test_the_table_covers_every_field():
    fields = set(leaves(recipe_from_dict(copy.deepcopy(BASE))))
    listed = {f.split("@")[0] for f in TABLE}
    assert fields - listed - NOT_HERE == set(), "fields with no row in TABLE"
    assert listed - fields == set(), "rows for fields that do not exist"


@pytest.mark.parametrize("field", sorted(TABLE))
def test_a_changed_field_reruns_its_stages_and_downstream_only(field):
    value, expected = TABLE[field]
    own, rerun = changed(field, value)
    assert own == expected
    assert rerun == downstream(expected)
    first = min((ORDER.index(s) for s in expected), default=len(ORDER))
    assert not rerun & set(ORDER[:first]), "an upstream stage would rerun"


def test_a_stage_reruns_when_an_input_stage_has_new_output(tmp_path):
    """The propagation the table relies on: a stage's input fingerprint is its inputs' output fingerprints."""
    from fusechat.runfolder import Outputs

    recipe = recipe_from_dict(copy.deepcopy(BASE) | {"run_dir": str(tmp_path)})
    folder = RunFolder(tmp_path)
    for name, rows in (("prompts", [{"id": "p"}]), ("score", [{"x": 1}])):
        folder.write(name, Outputs({name: rows}))
    build = STAGES["build"]
    folder.write("build", Outputs({"sft": []}), build.settings(recipe), folder.input_fingerprint(build, recipe))
    assert folder.is_current("build", build.settings(recipe), folder.input_fingerprint(build, recipe))
    folder.write("score", Outputs({"score": [{"x": 2}]}))
    assert not folder.is_current("build", build.settings(recipe), folder.input_fingerprint(build, recipe))


@pytest.mark.parametrize("added", ["eval.humaneval_plus", "eval.mbpp_plus", "eval.evalplus_data", "eval.livecodebench",
                                   "eval.mtbench_graded", "eval.alignbench", "eval.livebench", "eval.backend", "dpo.sft_weight", "dpo.label_smoothing",
                                   "dpo.simpo_gamma", "build.source_logps"])
def test_a_field_added_since_a_run_finished_leaves_that_run_current(added):
    """A stage manifest written before a field existed lacks its key: unset, the field must read as the same
    settings (fusechat's upgrade rule), or every finished run would redo its stages after an upgrade."""
    import json

    from fusechat.recipe import build_settings, dpo_settings, eval_settings
    from fusechat.runfolder import same_settings

    recipe = recipe_from_dict(copy.deepcopy(BASE))
    section, key = added.split(".")
    current = json.loads(json.dumps({"eval": eval_settings, "dpo": dpo_settings, "build": build_settings}[section](recipe),
                                    default=str))
    before = json.loads(json.dumps(current))
    (before.get(section) if section in ("eval", "dpo") else before).pop(key)
    assert same_settings(before, current)

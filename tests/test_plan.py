"""`fusechat plan`: parameter counts from configs, where models fit, the estimate's arithmetic."""

from __future__ import annotations

import json

import pytest

from fusechat import FusechatError
from fusechat.modelfacts import PAPER_CONFIGS, arch_from_config, arch_from_fields, generation_fit, training_fit
from fusechat.plan import make_plan, refuse_what_cannot_fit, render
from fusechat.recipe import builtin_recipe, load_recipe


def test_parameter_count_from_a_config_is_the_models_own(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    arch = arch_from_config(json.loads((tiny_model_dir / "config.json").read_text()), "tiny")
    assert arch.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("hub_id, published", [
    ("meta-llama/Llama-3.1-8B-Instruct", 8.03e9), ("meta-llama/Llama-3.1-70B-Instruct", 70.6e9),
    ("Qwen/Qwen2.5-72B-Instruct", 72.7e9), ("mistralai/Mistral-Large-Instruct-2407", 122.6e9),
    ("google/gemma-2-27b-it", 27.2e9), ("meta-llama/Llama-3.2-1B-Instruct", 1.24e9)])
def test_the_config_snapshot_gives_the_published_sizes(hub_id, published):
    qwen = hub_id.startswith("Qwen/")
    arch = arch_from_fields(*PAPER_CONFIGS[hub_id], origin="snapshot", qkv_bias=qwen)
    assert abs(arch.params - published) / published < 0.01


def test_what_fits_where():
    big = arch_from_fields(*PAPER_CONFIGS["meta-llama/Llama-3.1-70B-Instruct"], origin="snapshot")  # ~131 GiB
    one = generation_fit(big, "transformers", 1, 80, 16, 2304)
    assert not one.ok and "vllm" in one.advice or "endpoint" in one.advice
    eight = generation_fit(big, "vllm", 8, 80, 16, 2304)
    assert eight.ok and eight.where == "vLLM, tensor parallel 4"  # 2 GPUs hold the weights, not the KV cache too
    assert not generation_fit(big, "vllm", 1, 80, 16, 2304).ok
    assert generation_fit(big, "openai", 0, 80, 16, 2304).ok  # served elsewhere: nothing to fit here
    target = arch_from_fields(*PAPER_CONFIGS["meta-llama/Llama-3.1-8B-Instruct"], origin="snapshot")
    assert not training_fit(target, 1, 80, lora=False).ok  # ~16 bytes a parameter: 120 GiB
    assert training_fit(target, 8, 80, lora=False).ok and training_fit(target, 1, 80, lora=True).ok


def test_a_paper_recipe_on_one_gpu_is_refused_in_one_line_before_any_work(tmp_path):
    recipe = load_recipe(builtin_recipe("paper-llama3.1-8b"), [f"run_dir={tmp_path}/run"])
    plan = make_plan(recipe, gpus=1, gpu_gb=80)
    # the sample stage gives a vLLM engine max_new_tokens + 2048 of context for 16 sequences: Gemma-2-27B's
    # 51 GiB of weights and their cache do not fit one 80 GB GPU either (the code refuses it the same way)
    with pytest.raises(FusechatError, match=r"^sample gemma-2-27b: weights 51 GiB and a cache of 16 x 4096 tokens do not fit 1 GPU") as e:
        refuse_what_cannot_fit(plan)
    assert "\n" not in str(e.value)
    eight = make_plan(recipe, gpus=8, gpu_gb=80)
    assert not eight.problems() and eight.seconds > 0
    assert "tensor parallel 4" in render(eight) and "estimate" in render(eight)
    assert not (tmp_path / "run").exists()  # planning made nothing


def test_cpu_estimate_is_the_work_divided_by_the_calibrated_speed(tmp_path, monkeypatch):
    from fusechat.plan import calibration_key

    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(builtin_recipe("cpu-default"), [f"run_dir={tmp_path}/run"])
    source = recipe.sources[0]
    (tmp_path / "cache").mkdir()
    lengths = {calibration_key("length", source.model, d, source.sampling.max_new_tokens): {"tokens": 50.0}
               for d in ("math", "code", "instruction")}
    speed = {calibration_key("generate", source.model, source.backend, source.batch_size): {"tokens_per_s": 25.0}}
    (tmp_path / "cache" / "calibration.json").write_text(json.dumps(lengths | speed))
    plan = make_plan(recipe)
    [row] = [r for r in plan.rows if r.stage == "sample" and r.what == source.name]
    answers = int(row.work.split()[0].replace(",", ""))
    assert row.tokens == answers * 50 and row.seconds == pytest.approx(answers * 50 / 25)
    assert row.basis == "calibrated on this machine"
    other = [r for r in plan.rows if r.stage == "sample" and r.what != source.name][0]
    assert "estimate" in other.basis and "--calibrate" in other.basis  # not measured here, and said so


def test_an_uncalibrated_cpu_row_is_the_reference_rate_scaled_to_this_machine(tmp_path, monkeypatch):
    """A fresh CPU: the reference run's FLOP/s a core, over 2 x parameters a decoded token, times this
    machine's cores, a third without bf16 units, and labelled an estimate."""
    import fusechat.plan as planning
    from fusechat.modelfacts import model_arch

    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(builtin_recipe("cpu-default"), [f"run_dir={tmp_path}/run"])
    source = recipe.sources[0]
    for cores, bf16, slower in ((2, True, 1), (8, False, planning.CPU_NO_BF16_SLOWER["generate"])):
        monkeypatch.setattr(planning, "usable_cores", lambda: cores)
        monkeypatch.setattr(planning, "cpu_has_bf16", lambda: bf16)
        [row] = [r for r in make_plan(recipe).rows if r.stage == "sample" and r.what == source.name]
        rate = cores * planning.CPU_FLOPS_PER_CORE["generate"] / slower / (2 * model_arch(source.model).params)
        assert row.seconds == pytest.approx(row.tokens / rate) and "estimate" in row.basis
    plan = make_plan(recipe)
    assert all(r.seconds is not None for r in plan.rows) and "0.0 GiB" not in render(plan)


def test_a_finished_stage_shows_the_seconds_it_took_and_trains_the_next_at_its_rate(tmp_path, monkeypatch):
    from fusechat.runfolder import Outputs, RunFolder

    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(builtin_recipe("cpu-default"), [f"run_dir={tmp_path}/run"])
    folder = RunFolder(recipe.run_path)
    folder.write("score", Outputs(counts={"with_reward": 5}))
    score_seconds = folder.manifest("score")["seconds"]
    folder.write("sft", Outputs(counts={"examples": 3}, extra={"tokens_per_s": 50.0}))
    rows = make_plan(recipe).rows
    score = [r for r in rows if r.stage == "score"]
    assert score[0].seconds == score_seconds and score[0].basis.startswith("measured in this run folder")
    assert all(r.seconds == 0 for r in score[1:])  # inside the stage's own time, not counted twice
    [sft] = [r for r in rows if r.stage == "sft"]
    [dpo] = [r for r in rows if r.stage == "dpo"]
    assert sft.basis.startswith("measured in this run folder")
    assert dpo.seconds == pytest.approx(dpo.tokens / 50.0) and dpo.basis == "measured: sft in this run folder"


def test_finished_stages_are_read_through_the_run_folder_shared_ones_too(tmp_path, monkeypatch):
    """Counts and speeds measured by a finished prompts and sample stage, also where a study variant's folder
    shares them from the reference's: the plan reads them through RunFolder, never by path."""
    from fusechat.runfolder import Outputs, RunFolder

    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(builtin_recipe("cpu-default"), [f"run_dir={tmp_path}/reference"])
    reference = RunFolder(recipe.run_path)
    reference.write("prompts", Outputs(counts={"by_domain": {"math": 7}, "by_split": {"math/any": 7}}))
    samples = [{"source": s.name, "domain": "math", "completion_tokens": 40 + 20 * i, "prompt_tokens": 30}
               for s in recipe.sources for i in range(2)]  # each source: 50 tokens an answer on average
    timings = {s.name: {"tokens_per_s": 10.0 * (i + 1)} for i, s in enumerate(recipe.sources)}
    reference.write("sample", Outputs({"samples": samples}, extra={"timings": timings}))
    variant = RunFolder(tmp_path / "variant", shared={"prompts": reference, "sample": reference})
    for folder in (None, variant):
        plan = make_plan(recipe, folder=folder)
        for i, source in enumerate(recipe.sources):
            [row] = [r for r in plan.rows if r.stage == "sample" and r.what == source.name]
            answers = 7 * source.samples_for("math")
            assert row.work == f"{answers} answers" and row.basis == "measured in this run folder"
            assert row.tokens == answers * 50 and row.seconds == pytest.approx(answers * 50 / (10.0 * (i + 1)))


def test_judged_count_leaves_out_cut_answers_and_lone_kept_ones(tmp_path, monkeypatch):
    from fusechat.plan import KEPT_SHARE, calibration_key

    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(builtin_recipe("cpu-default"), [f"run_dir={tmp_path}/run"])
    (tmp_path / "cache").mkdir()
    finished = {calibration_key("length", s.model, "instruction", s.sampling.max_new_tokens): {"tokens": 100.0, "finished": 0.5}
                for s in recipe.sources}
    (tmp_path / "cache" / "calibration.json").write_text(json.dumps(finished))
    [row] = [r for r in make_plan(recipe).rows if r.stage == "score" and r.what == recipe.score.reward.model]
    # 10 open prompts, 30 with a constraint; 4 answers each; half finish; of the checked ones KEPT_SHARE pass.
    # A prompt's answers are judged when two or more can be: k p - k p (1 - p)^(k - 1) a prompt.
    k, p_open, p_checked = 4, 0.5, 0.5 * KEPT_SHARE
    expected = 10 * (k * p_open - k * p_open * (1 - p_open) ** 3) + 30 * (k * p_checked - k * p_checked * (1 - p_checked) ** 3)
    assert row.work.startswith(f"~{round(expected)} responses rewarded")


def test_calibration_prompts_are_spread_over_each_set():
    from fusechat.calibrate import spread

    assert spread(list(range(10)), 3) == [0, 3, 6] and spread([1, 2], 6) == [1, 2]


def test_calibration_measures_the_recipe_the_way_its_stages_run_it(tmp_path, monkeypatch, tiny_model_dir):
    from fusechat.calibrate import calibrate
    from fusechat.plan import calibrated, calibration_key
    from fusechat.recipe import recipe_from_dict

    monkeypatch.setenv("FUSECHAT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    tiny = str(tiny_model_dir)
    recipe = recipe_from_dict({
        "run_dir": str(tmp_path / "run"),
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "basic_arithmetic", "n": 6},
                             {"domain": "instruction", "pack": "constraints", "n": 4}]},
        "sources": [{"name": "a", "model": tiny, "backend": "transformers", "batch_size": 4,
                     "samples_per_prompt": {"math": 2, "instruction": 1}, "sampling": {"max_new_tokens": 6}}],
        "score": {"reward": {"kind": "judge", "model": tiny, "backend": "transformers", "domains": ["instruction"]}},
        "target": {"model": tiny},
        "eval": {"math": {"n": 5, "max_new_tokens": 4}, "constraints": 3, "humaneval": 0, "mtbench": 0,
                 "max_new_tokens": 6}})
    said = []
    calibrate(recipe, per_domain=3, say=said.append)
    assert "calibrating a: 9 answers" in said  # 3 math prompts x 2 samples + 3 constraint prompts x 1, as sampled
    cal = calibrated()
    length = cal[calibration_key("length", tiny, "math", 6)]
    assert 0 < length["tokens"] <= 6 and length["prompt_tokens"] > 10  # the chat template's tokens count
    assert 0 <= length["finished"] <= 1  # the share not cut at max_new_tokens (only those are judged)
    judge = cal[calibration_key("judge", tiny, "transformers", 1)]
    assert judge["seconds_per_item"] > 0 and judge["load_s"] > 0
    evaluation = cal[calibration_key("eval", tiny, "transformers", recipe.eval.batch_size)]
    assert set(evaluation["lengths"]) == {"math", "constraints"} and evaluation["lengths"]["math"] <= 4
    plan = make_plan(recipe)
    assert all(r.seconds is not None for r in plan.rows), render(plan)


def test_the_paper_plan_on_eight_gpus_follows_what_the_code_runs():
    """Each GPU row says what the code runs the work on: vLLM engines x TP over the GPUs, the reward model
    one bf16 replica per GPU, training under the launch fusechat would start (FSDP for an 8B target, DDP
    for a 1B one), eval on one GPU; math-verify, lm-eval and the pairwise judge have rows of their own."""
    recipe = load_recipe(builtin_recipe("paper-llama3.1-8b"))
    rows = {(r.stage, r.what): r for r in make_plan(recipe, gpus=8, gpu_gb=80).rows}
    assert rows[("sample", "llama-3.1-70b")].basis.startswith("2 vLLM engine(s) x TP 4 = 8 of 8 GPUs")
    assert rows[("sample", "qwen-2.5-math-72b")].seconds  # its size is known now (the config snapshot)
    assert rows[("score", "RLHFlow/ArmoRM-Llama3-8B-v0.1")].basis.startswith("one bf16 replica per GPU (8)")
    math = sum(recipe.prompts.sets[i].n * s.samples_for("math") for i, p in enumerate(recipe.prompts.sets)
               if p.domain == "math" for s in recipe.sources)
    assert rows[("score", "math-verify")].work == f"{math:,} answers checked"
    target = recipe.target.model
    assert rows[("sft", target)].basis.startswith("8 process(es), fsdp") and "sharded" in rows[("sft", target)].fit.where
    assert "reference pass once, shared" in rows[("dpo", target)].basis
    assert rows[("eval", target)].basis.startswith("vllm on 1 GPU")
    assert any(what.startswith("lm-eval fusechat_gsm8k, fusechat_math") and r.seconds for (stage, what), r in rows.items())

    one = {(r.stage, r.what): r for r in make_plan(load_recipe(builtin_recipe("paper-llama3.2-1b")), gpus=8, gpu_gb=80).rows}
    sft = next(r for (stage, _), r in one.items() if stage == "sft")
    assert sft.basis.startswith("8 process(es), ddp") and sft.fit.where == "1 GPU"  # a 1B target fits one GPU: DDP

    served = load_recipe(builtin_recipe("paper-llama3.1-8b"), ["score.reward.endpoint=http://rm:8000"])
    rm = next(r for r in make_plan(served, gpus=8, gpu_gb=80).rows if r.what == "RLHFlow/ArmoRM-Llama3-8B-v0.1")
    assert rm.seconds is None and "endpoint" in rm.basis


def test_a_catalog_model_not_installed_yet_has_its_size_from_the_snapshot(monkeypatch):
    """A fresh machine plans before any model is installed: no "unknown, 0.0 GiB" for a catalog model."""
    import fusechat.modelfacts as facts
    from fusechat import FusechatError
    from fusechat.catalog import CATALOG

    def not_installed(name, install=True):
        raise FusechatError(f"{name} is not installed")

    monkeypatch.setattr(facts, "prepare", not_installed)
    facts.model_arch.cache_clear()
    try:
        arch = facts.model_arch("qwen2.5-coder-0.5b-instruct")
        assert arch is not None and round(arch.params / 1e6) == 494  # Qwen2.5-0.5B's published 0.49B
        assert arch.weight_bytes == CATALOG["qwen2.5-coder-0.5b-instruct"].size and "snapshot" in arch.origin
    finally:
        facts.model_arch.cache_clear()


def test_the_paper_recipes_judges_are_in_the_plan():
    """Every judged request the eval stage will send: pairwise judgments (the two trained models against the
    base, both orders) and the 1-10 grades of every model (MT-Bench's two turns, AlignBench's one)."""
    from fusechat.plan import make_plan
    from fusechat.recipe import builtin_recipe, load_recipe

    rows = [r.work for r in make_plan(load_recipe(builtin_recipe("paper-llama3.1-8b")), 8, 80.0).rows
            if r.stage == "eval" and r.what.startswith("judge ")]
    assert rows == ["5,220 pairwise judgments", "480 MT-Bench grades (1-10)", "2,049 AlignBench grades (1-10)"]

import pytest
import yaml

from fusechat import FusechatError
from fusechat.recipe import builtin_recipe, load_recipe

BASE = {
    "name": "t",
    "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 3}]},
    "sources": [{"name": "s", "model": "smollm2-135m-instruct"}],
}


def write(tmp_path, data):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_follow_the_paper(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.build.gap_window == (0.01, 0.1) and r.build.pairing == "same-source"
    assert r.prompts.sft_fraction == 0.4
    assert r.sources[0].samples_for("instruction") == 5 and r.sources[0].samples_for("code") == 8
    assert r.sources[0].sampling.temperature == 0.8 and r.sources[0].sampling.top_p == 0.95


def test_unknown_key_is_reported_by_its_path(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0]["sampling"] = {"temprature": 0.7}
    with pytest.raises(FusechatError, match=r"sources\.0\.sampling\.temprature"):
        load_recipe(write(tmp_path, data))


def test_bad_value_is_reported_by_its_path(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["sources"][0]["sampling"] = {"top_p": 2}
    with pytest.raises(FusechatError, match=r"sources\.0\.sampling\.top_p"):
        load_recipe(write(tmp_path, data))


def test_a_duplicate_key_is_refused_in_one_line_naming_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys without a word; that once dropped the paper recipes' datasets."""
    from typer.testing import CliRunner

    from fusechat.cli import app

    path = tmp_path / "r.yaml"
    path.write_text("name: a\nrun_dir: runs/{name}\nprompts:\n  sets: []\nname: b\n")
    with pytest.raises(FusechatError, match=r"r\.yaml: key 'name' appears twice \(lines 1 and 5\)"):
        load_recipe(path)
    nested = tmp_path / "n.yaml"
    nested.write_text("name: a\nsft:\n  epochs: 1\n  learning_rate: 1.0e-5\n  epochs: 3\n")
    with pytest.raises(FusechatError, match=r"key 'epochs' appears twice \(lines 3 and 5\)"):
        load_recipe(nested)
    result = CliRunner().invoke(app, ["plan", str(path)])
    assert result.exit_code == 2 and "appears twice" in result.output and "Traceback" not in result.output
    with pytest.raises(FusechatError, match=r"--set sft: in the value, key 'epochs' appears twice"):
        load_recipe(builtin_recipe("cpu-default"), ["sft={epochs: 1, epochs: 2}"])
    # a YAML merge key may override on purpose
    merged = tmp_path / "m.yaml"
    merged.write_text("base: &b {epochs: 1}\nsft:\n  <<: *b\n  epochs: 2\n")
    from fusechat.recipe import read_yaml_mapping
    assert read_yaml_mapping(merged)["sft"] == {"epochs": 2}


def test_set_overrides(tmp_path):
    r = load_recipe(write(tmp_path, BASE), ["sources.0.sampling.temperature=0.7", "build.gap_window=null",
                                             "sources.0.samples_per_prompt={math: 2}"])
    assert r.sources[0].sampling.temperature == 0.7 and r.build.gap_window is None
    assert r.sources[0].samples_for("math") == 2
    with pytest.raises(FusechatError, match="sources.5"):
        load_recipe(write(tmp_path, BASE), ["sources.5.backend=transformers"])
    # `*` sets a key of every item: a cluster recipe's vLLM sources onto a CPU backend in one override
    cpu = load_recipe(builtin_recipe("cpu-full"), ["sources.*.backend=transformers"])
    assert [s.backend for s in cpu.sources] == ["transformers"] * 3
    # a source whose responses are data keeps backend: dataset; `*` reaching it is named
    with pytest.raises(FusechatError, match="'llama-3.1-405b-openmath' has `responses`.*set the sampled sources by index"):
        load_recipe(builtin_recipe("paper-llama3.1-8b"), ["sources.*.backend=transformers"])


def test_unknown_source_in_ablation_is_rejected(tmp_path):
    with pytest.raises(FusechatError, match="unknown source 'ghost'"):
        load_recipe(write(tmp_path, BASE), ["build.exclude_sources=[ghost]"])


def test_builtin_recipes_validate():
    for name in ("cpu-default",):
        recipe = load_recipe(builtin_recipe(name))
        assert len({s.model for s in recipe.sources}) >= 2


def test_every_shipped_recipe_validates_and_mirrors_the_paper():
    from pathlib import Path

    names = sorted(p.stem for p in Path(builtin_recipe("cpu-default")).parent.glob("*.yaml") if not p.stem.startswith("study-"))
    assert {"cpu-default", "cpu-full", "paper-llama3.1-8b", "paper-qwen2.5-7b", "paper-gemma2-9b",
            "paper-llama3.2-1b", "paper-llama3.2-3b"} <= set(names)
    recipes = {name: load_recipe(builtin_recipe(name)) for name in names}
    for name, r in recipes.items():
        assert r.target is not None, name
        if name.startswith("paper-"):
            assert r.build.gap_window == (0.01, 0.1) and r.sft.epochs == 3 and r.dpo.epochs == 1
            # four general sources; math from OpenMathInstruct-2's solutions and Qwen-2.5-Math (method.md §2)
            assert [s.samples_for("instruction") for s in r.sources] == [5, 5, 5, 5, 0, 0]
            assert [s.backend for s in r.sources if s.samples_for("math")] == ["dataset", "vllm"]
            assert "Math" in r.sources[5].model and r.dpo.eval_fraction == 0  # every pair trained on
            # Table 1: per-dataset counts that sum to the paper's per-domain prompts
            per_domain = {}
            for spec in r.prompts.sets:
                per_domain[spec.domain] = per_domain.get(spec.domain, 0) + spec.n
            assert per_domain == {"instruction": 32_362 + 48_545, "math": 40_188 + 11_615, "code": 12_037 + 3_968,
                                  "chinese": 9_952}
            assert all(spec.drop_math_and_code for spec in r.prompts.sets if spec.domain == "instruction")
            for train, where in ((r.sft, "sft"), (r.dpo, "dpo")):  # the paper's 128, on any number of GPUs
                assert r.sft.global_batch_size == 128
                for gpus in (1, 2, 4, 8):
                    assert train.batch_size * train.accumulation(gpus, where) * gpus == 128
            assert r.score.reward.kind == "reward-model" and "ArmoRM" in r.score.reward.model
            assert not r.score.reward.trust_remote_code  # ArmoRM loads natively (scorers/armorm.py)
    paper = {n: (r.dpo.loss, r.dpo.beta, r.dpo.learning_rate, r.sft.learning_rate) for n, r in recipes.items() if n.startswith("paper-")}
    assert paper["paper-llama3.1-8b"] == ("ln-dpo", 10, 8e-7, 5e-6)
    assert paper["paper-llama3.2-1b"] == paper["paper-llama3.2-3b"] == ("ln-dpo", 10, 1e-6, 5e-6)
    assert paper["paper-qwen2.5-7b"] == ("dpo", 0.01, 3e-7, 2e-6)
    assert paper["paper-gemma2-9b"] == ("dpo", 0.01, 5e-7, 2e-6)
    assert len({s.model for s in recipes["cpu-full"].sources}) == 3


def test_backend_and_batch_default_to_the_fastest_measured_for_the_machine(monkeypatch):
    import fusechat.recipe as recipe_module
    from fusechat.recipe import Source

    monkeypatch.setattr(recipe_module, "has_gpu", lambda: False)
    gguf = Source(name="a", model="smollm2-135m-instruct")
    assert (gguf.backend, gguf.batch_size) == ("llamacpp", 8)  # a catalog model has a GGUF
    folder = Source(name="a", model="/some/save_pretrained/folder")
    assert (folder.backend, folder.batch_size) == ("transformers", 64)
    assert Source(name="a", model="m", backend="llamacpp", batch_size=3).batch_size == 3  # explicit wins
    monkeypatch.setattr(recipe_module, "has_gpu", lambda: True)
    on_gpu = Source(name="a", model="smollm2-135m-instruct")
    assert on_gpu.backend in ("vllm", "transformers") and on_gpu.batch_size == 256
    with pytest.raises(ValueError, match="endpoint"):
        Source(name="a", model="m", backend="openai")


def test_shipped_studies_load_and_their_variants_share_the_reference_samples():
    from pathlib import Path

    from fusechat.study import load_study

    studies = sorted(Path(builtin_recipe("cpu-default")).parent.glob("study-*.yaml"))
    assert studies
    for path in studies:
        study, variants = load_study(path)
        assert study.reference in variants and len(variants) >= 8
        for name, v in variants.items():
            assert v.recipe.run_path.parent == study.path
            assert name == study.reference or set(v.folder.shared) == {"prompts", "sample", "score"}


def test_study_set_overrides_every_variants_base_recipe_under_its_own_overrides():
    from fusechat import FusechatError
    from fusechat.study import load_study

    path = builtin_recipe("study-cpu")
    _, plain = load_study(path)
    study, changed = load_study(path, ["eval.humaneval=5", "eval.constraints=7"])
    assert all(v.recipe.eval.humaneval == 5 for v in changed.values())
    for name, v in changed.items():  # a variant that sets the constraint count itself keeps its own
        own = plain[name].recipe.eval.constraints != plain[study.reference].recipe.eval.constraints
        assert v.recipe.eval.constraints == (plain[name].recipe.eval.constraints if own else 7)
    assert sum(v.recipe.eval.constraints == 7 for v in changed.values()) >= 3
    with pytest.raises(FusechatError, match="--set"):
        load_study(path, ["eval.constraints"])


def test_a_study_file_given_as_a_recipe_says_what_to_run(tmp_path):
    from fusechat import FusechatError

    with pytest.raises(FusechatError, match="is a study; run `fusechat study"):
        load_recipe(builtin_recipe("study-cpu"))


def test_global_batch_size_derives_grad_accum_and_refuses_what_does_not_divide():
    from fusechat.recipe import SFTTrainConfig

    cfg = SFTTrainConfig(batch_size=2, global_batch_size=128)
    assert cfg.accumulation(8, "sft") == 8 and cfg.accumulation(1, "sft") == 64
    with pytest.raises(FusechatError, match=r"sft.global_batch_size 128 is not a multiple of batch_size 2 x 3"):
        cfg.accumulation(3, "sft")
    with pytest.raises(FusechatError, match="grad_accum 4 contradicts global_batch_size 128"):
        SFTTrainConfig(batch_size=2, grad_accum=4, global_batch_size=128).accumulation(8, "sft")
    assert SFTTrainConfig(batch_size=2, grad_accum=8, global_batch_size=128).accumulation(8, "sft") == 8
    assert SFTTrainConfig(batch_size=2, grad_accum=4).accumulation(8, "sft") == 4  # no global size: as written

"""The four data stages end to end on a tiny model, and resume of the scoring stage."""

import json

import yaml

from fusechat.pipeline import run_all, run_stage
from fusechat.recipe import load_recipe
from fusechat.runfolder import RunFolder


def tiny_recipe(tmp_path, model_dir):
    data = {
        "name": "tiny", "run_dir": str(tmp_path / "run"), "shard_size": 2,
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 3},
                             {"domain": "code", "pack": "code-functions", "n": 2},
                             {"domain": "instruction", "pack": "sharegpt", "n": 4}]},
        "sources": [{"name": "t1", "model": str(model_dir), "backend": "transformers", "dtype": "float32",
                     "samples_per_prompt": {"math": 2, "code": 2, "instruction": 2}, "sampling": {"max_new_tokens": 8}},
                    {"name": "t2", "model": str(model_dir), "backend": "transformers", "dtype": "float32",
                     "samples_per_prompt": {"math": 1, "code": 1, "instruction": 1}, "sampling": {"max_new_tokens": 8}}],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_recipe(path)


def test_stages_run_in_order_and_every_prompt_is_accounted_for(tmp_path, tiny_model_dir):
    recipe = tiny_recipe(tmp_path, tiny_model_dir)
    manifests = run_all(recipe)
    assert list(manifests) == ["prompts", "sample", "score", "build"]
    scored = RunFolder(recipe.run_path).records("score", "scored")
    assert len(scored) == (3 + 2 + 4) * 3
    assert all(s["correct"] is not None for s in scored if s["domain"] in ("math", "code"))
    counts = manifests["build"]["counts"]
    total = sum(counts["sft"].values()) + sum(counts["dpo"].values()) + sum(counts["dropped"].values())
    assert total == 9  # each prompt: one SFT example, one pair, or one counted drop
    assert all(m.get("skipped") for m in run_all(recipe).values())

    # the data's card, as the hub reads it: configs for both files, the counts the build made
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(recipe.run_path / "build" / "README.md")
    assert {c["config_name"]: c["data_files"] for c in card.data.configs} == {"sft": "sft.jsonl", "dpo": "dpo.jsonl"}
    assert "fusechat" in card.data.tags and "| t1 | " in card.text and "| t2 | " in card.text
    sft_math = counts["sft"].get("math", 0)
    assert f"| math | {sft_math} | {counts['dpo'].get('math', 0)} |" in card.text


def test_scoring_resumes_from_its_shards(tmp_path, tiny_model_dir, monkeypatch):
    import fusechat.score as score

    recipe = tiny_recipe(tmp_path, tiny_model_dir)
    run_all(recipe)
    before = (recipe.run_path / "score" / "scored.jsonl").read_text()

    monkeypatch.setattr(score, "SHARD_SAMPLES", 4)
    calls = []
    real = score.check_shard
    def flaky(chunk, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed after two shards
        calls.append(len(chunk))
        return real(chunk, *args)
    monkeypatch.setattr(score, "check_shard", flaky)
    try:
        run_stage("score", recipe, force=True)
    except KeyboardInterrupt:
        pass
    assert len(list((recipe.run_path / "score" / "shards").glob("checked-*.jsonl"))) == 2
    monkeypatch.setattr(score, "check_shard", lambda chunk, *a: calls.append(len(chunk)) or real(chunk, *a))
    calls.clear()
    # the killed rerun left the finished stage as it was; forcing again resumes the rerun's shards
    assert run_stage("score", recipe)["skipped"] and not calls
    run_stage("score", recipe, force=True)
    assert sum(calls) == 27 - 8  # only the unfinished samples were scored again
    after = (recipe.run_path / "score" / "scored.jsonl").read_text()
    assert [json.loads(x) for x in after.splitlines()] == [json.loads(x) for x in before.splitlines()]

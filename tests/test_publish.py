"""`fusechat publish --dry-run`: the folders it would push, and their cards read back with huggingface_hub."""

from __future__ import annotations

import shutil

import yaml
from huggingface_hub import DatasetCard, ModelCard
from typer.testing import CliRunner

from fusechat.cli import app
from fusechat.recipe import load_recipe
from fusechat.runfolder import Outputs, RunFolder

RESULTS = [
    {"model": "base", "benchmark": "math", "score": 0.29, "ci_low": 0.24, "ci_high": 0.34, "n": 300, "label": "held-out math accuracy"},
    {"model": "sft+dpo", "benchmark": "math", "score": 0.383, "ci_low": 0.33, "ci_high": 0.44, "n": 300, "label": "held-out math accuracy"},
]


def test_publish_stages_the_model_with_its_eval_table_and_the_data_with_its_card(tmp_path, tiny_model_dir):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": str(tiny_model_dir)}]}))
    recipe = load_recipe(path)
    folder = RunFolder(recipe.run_path)
    runner = CliRunner()
    result = runner.invoke(app, ["publish", str(path), "--repo", "me/fused", "--dry-run"])
    assert result.exit_code == 2 and "nothing to publish yet" in result.output

    (tmp_path / "card.md").write_text("---\ntags:\n- fusechat\n---\n\n# data\n")
    folder.write("build", Outputs({"sft": [], "dpo": []}, {}, files={"README.md": tmp_path / "card.md"}))
    model = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, model)
    folder.write("dpo", Outputs(files={"model": model}, extra={"model": str(recipe.run_path / "dpo" / "model")}))
    folder.write("eval", Outputs({"results": RESULTS, "items": []}))

    result = runner.invoke(app, ["publish", str(path), "--repo", "me/fused", "--dry-run"])
    assert result.exit_code == 0, result.output
    staged = recipe.run_path / "publish"
    assert {p.name for p in (staged / "data").iterdir()} == {"sft.jsonl", "dpo.jsonl", "README.md"}
    assert (staged / "model" / "config.json").is_file() and list((staged / "model").glob("*.safetensors"))
    card = ModelCard.load(staged / "model" / "README.md")
    # a local folder is no hub repository: the hub refuses a base_model that is not one, so there is none
    assert card.data.base_model is None and card.data.datasets == ["me/fused-data"]
    [score] = card.data.eval_results  # the model-index holds the published model's own score
    assert score.metric_value == 0.383 and score.dataset_name == "held-out math accuracy"
    assert "| held-out math accuracy | base | 0.290 | [0.240, 0.340] | 300 |" in card.text  # and the base beside it
    assert DatasetCard.load(staged / "data" / "README.md").data.tags == ["fusechat"]

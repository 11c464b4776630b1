"""`fusechat publish RECIPE --repo ID`: the fused model and its data on the Hugging Face hub.

Two repositories: the model (`ID`: the final model's folder, its card rewritten with the eval table and
model-index) and the data (`ID-data`, a dataset repo: the build's `sft.jsonl`, `dpo.jsonl` and dataset
card). Both are staged under `run/publish/` first, exactly as they will be pushed; `--dry-run` stops
there. The push is huggingface_hub's `create_repo` + `upload_folder`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fusechat import FusechatError
from fusechat.cards import model_card
from fusechat.recipe import Recipe
from fusechat.runfolder import RunFolder, read_jsonl, write_atomic


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # weights are large: a hard link costs nothing
    except OSError:
        shutil.copy2(src, dst)


def stage(recipe: Recipe, repo: str) -> dict[str, Path]:
    """Build `run/publish/{model,data}` for `repo`; returns {"model": folder, "data": folder}."""
    folder = RunFolder(recipe.run_path)
    final = "dpo" if folder.manifest("dpo") else "sft" if folder.manifest("sft") else None
    if final is None or folder.manifest("build") is None:
        raise FusechatError(f"{recipe.run_path}: nothing to publish yet; run `fusechat run` (build, sft, dpo) first")
    out = recipe.run_path / "publish"
    shutil.rmtree(out, ignore_errors=True)
    model_dir, data_dir = out / "model", out / "data"
    source = Path(folder.model(final))
    for path in source.rglob("*"):
        if path.is_file() and path.name != "README.md":
            _link_or_copy(path, model_dir / path.relative_to(source))
    results_file = folder.stage_dir("eval") / "results.jsonl"
    results = read_jsonl(results_file) if folder.manifest("eval") and results_file.is_file() else None
    write_atomic(model_dir / "README.md", model_card(recipe, final, recipe.target.model, results, f"{repo}-data", repo))
    build = folder.stage_dir("build")
    for name in ("sft.jsonl", "dpo.jsonl", "README.md"):
        _link_or_copy(build / name, data_dir / name)
    return {"model": model_dir, "data": data_dir}


def push(folders: dict[str, Path], repo: str, private: bool) -> list[str]:
    """Create the two repositories (if new) and upload the staged folders; returns their URLs."""
    from huggingface_hub import HfApi

    api = HfApi()
    urls = []
    for repo_id, repo_type, folder in ((repo, "model", folders["model"]), (f"{repo}-data", "dataset", folders["data"])):
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=str(folder),
                          commit_message="fusechat publish")
        urls.append(f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}")
    return urls

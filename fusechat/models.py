"""Model references: what a recipe's `model:` string points at, and the path a backend loads.

A reference is a catalog name (fusechat.catalog), a local `save_pretrained` folder, a `.gguf` file
or a hub id. `hf_path` gives something `from_pretrained` loads, converting a GGUF once into a
safetensors folder; `gguf_path` gives a file for llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fusechat import FusechatError
from fusechat.catalog import CATALOG, cache_dir, prepare


@dataclass
class ModelRef:
    """A resolved model reference; `kind` is catalog, gguf, hf-folder or hub."""

    ref: str
    kind: str
    extras: dict = field(default_factory=dict)

    def gguf_path(self) -> Path:
        """A GGUF file for llama.cpp."""
        match self.kind:
            case "catalog":
                return prepare(self.ref)
            case "gguf":
                return Path(self.ref)
            case _:
                raise FusechatError(
                    f"model '{self.ref}': the llama.cpp backend needs a GGUF file or a catalog name; "
                    "use backend: transformers for HF folders and hub ids"
                )

    def hf_path(self) -> str:
        """Something `from_pretrained` loads: a local folder, or a hub id that was reached."""
        match self.kind:
            case "catalog":
                return str(gguf_to_hf_folder(prepare(self.ref), cache_dir() / "hf" / self.ref))
            case "gguf":
                gguf = Path(self.ref).resolve()
                key = hashlib.sha256(f"{gguf}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
                return str(gguf_to_hf_folder(gguf, cache_dir() / "hf" / f"{gguf.stem}-{key}"))
            case "hf-folder":
                return self.ref
            case _:
                return download_from_hub(self.ref)


def resolve(ref: str) -> ModelRef:
    if ref in CATALOG:
        return ModelRef(ref, "catalog")
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FusechatError(f"model '{ref}': GGUF file not found")
        return ModelRef(str(path), "gguf")
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FusechatError(f"model '{ref}': folder has no config.json (not a save_pretrained folder)")
        return ModelRef(str(path), "hf-folder")
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise FusechatError(
            f"model '{ref}': not a catalog name ({', '.join(CATALOG)}), an existing folder or .gguf file, "
            "or a hub id like org/name"
        )
    return ModelRef(ref, "hub")


def target_path(recipe) -> str:
    """The local folder of the recipe's target model (the base every training stage starts from)."""
    if recipe.target is None:
        raise FusechatError("the recipe has no `target:` (the model to train), e.g. target: {model: smollm2-135m-instruct}")
    return resolve(recipe.target.model).hf_path()


def download_from_hub(repo_id: str) -> str:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"])
    except Exception as e:  # the hub client raises many types; the user needs one line
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise FusechatError(f"model '{repo_id}': could not fetch it from the Hugging Face hub ({reason})") from None


def gguf_to_hf_folder(gguf: Path, folder: Path) -> Path:
    """De-quantise a GGUF once into a safetensors folder (model, tokenizer, chat template)."""
    if (folder / "config.json").exists() and (folder / ".complete").exists():
        return folder
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:
        raise FusechatError(f"{gguf}: transformers could not load this GGUF ({str(e)[:200]})") from None
    # transformers refuses save_pretrained on a GGUF-loaded model: the weights are already plain fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / ".complete").write_text(json.dumps({"from": str(gguf)}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder

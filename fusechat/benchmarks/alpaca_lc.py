"""AlpacaEval 2's length-controlled win rate, the number the paper reports, computed by alpaca_eval itself.

AlpacaEval 2 counts a judge's preferences against its baseline (GPT-4-Turbo's reference outputs) and then
removes what the answers' length explains: a logistic model of the preference on the length difference,
each instruction's difficulty and the model, fitted with alpaca_eval's `get_length_controlled_winrate`
(regularised towards its "gamed" baselines, whose annotations and the instructions' difficulties it
downloads from the hub set tatsu-lab/alpaca_eval). Its prediction at zero length difference, averaged
over the instructions, is the length-controlled win rate; per instruction it is a score a study can pair.

fusechat judges every model against the set's own baseline (`eval.judged[].baseline`, both orders, by the
judge endpoint) and hands those preferences to alpaca_eval as its annotations (`preference` = 1 + P(model
better), AlpacaEval's 1-2 scale; rows in the set's order, which is how alpaca_eval indexes the
difficulties). They are also written to `runs/NAME/eval/alpaca_eval/annotations/MODEL.json`, so the same
number can be computed with alpaca_eval by hand. alpaca_eval 0.6.6 (the latest) imports `pkg_resources`,
which setuptools 81 and later no longer ship, so it runs in a virtualenv of its own that
`scripts/alpaca_eval_venv.sh` builds; fusechat calls it in a child process (`alpaca_lc_child.py`). Without
that virtualenv the eval stage writes the annotations and says how to get the number.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from fusechat import FusechatError
from fusechat.catalog import cache_dir
from fusechat.recipe import Recipe

NAME = "alpaca_eval_lc"
LABEL = "AlpacaEval 2 length-controlled win rate (judge: {judge}; alpaca_eval's GLM)"
SHORT = "AlpacaEval 2 LC win rate"
WIN_RATE = True
PYTHON_ENV = "FUSECHAT_ALPACA_EVAL_PYTHON"  # an interpreter that imports alpaca_eval
CHILD = Path(__file__).with_name("alpaca_lc_child.py")


def count(recipe: Recipe) -> int:
    return 0  # not asked: computed from the AlpacaEval 2 judgments (fusechat.benchmarks.judged)


def max_new_tokens(recipe: Recipe) -> int:
    return recipe.eval.max_new_tokens


def items(recipe: Recipe, seen: set[str]) -> list[dict]:
    return []


def score(items, answers, recipe, math=None) -> None:
    return None


def interpreter() -> Path | None:
    """The Python of the virtualenv with alpaca_eval: $FUSECHAT_ALPACA_EVAL_PYTHON, else the one
    scripts/alpaca_eval_venv.sh builds in fusechat's cache; None when neither exists."""
    named = os.environ.get(PYTHON_ENV)
    path = Path(named) if named else cache_dir() / "alpaca-eval-venv" / "bin" / "python"
    return path if path.is_file() else None


def annotations(rows: list[dict], baseline: dict[str, str], baseline_name: str, model: str, judge: str) -> list[dict]:
    """alpaca_eval's annotation records for one model's judged AlpacaEval rows, in the set's order: output_1
    the baseline's answer, output_2 the model's, preference 1 + P(model better) (None where unjudged)."""
    return [{"instruction": r["prompt"], "output_1": baseline[r["id"]], "output_2": r["response"],
             "generator_1": baseline_name, "generator_2": model, "annotator": judge,
             "preference": None if r.get("score") is None else 1 + r["score"]} for r in rows]


def compute(path: Path, python: Path) -> dict:
    """alpaca_eval's length-controlled win rate of the annotations in `path`: {length_controlled_winrate,
    lc_standard_error, win_rate} (in %) and `glm_preference`, the model's prediction per instruction."""
    # -I: the child's own folder (fusechat/benchmarks, which has a math.py) must not shadow the standard library
    result = subprocess.run([str(python), "-I", str(CHILD), str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise FusechatError(f"alpaca_eval ({python}) could not compute the length-controlled win rate: {tail[0][:300]}")
    return json.loads(result.stdout.strip().splitlines()[-1])

#!/usr/bin/env bash
# Builds, once, a virtualenv with alpaca_eval, which computes AlpacaEval 2's length-controlled win rate for
# fusechat's eval stage (fusechat/benchmarks/alpaca_lc.py). alpaca_eval 0.6.6 imports pkg_resources, gone
# from setuptools 81 on, so it lives apart from fusechat's environment, with setuptools<81; CI never
# installs it. The eval stage finds it in fusechat's cache (or at $FUSECHAT_ALPACA_EVAL_PYTHON).
#     scripts/alpaca_eval_venv.sh         # -> ${FUSECHAT_CACHE:-~/.cache/fusechat}/alpaca-eval-venv/bin/python
set -euo pipefail
VENV=${ALPACA_EVAL_VENV:-${FUSECHAT_CACHE:-$HOME/.cache/fusechat}/alpaca-eval-venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/pip" install -q "setuptools<81" "pandas<3" "alpaca-eval==0.6.6"
"$VENV/bin/python" -c "import alpaca_eval.metrics.glm_winrate, sklearn, pandas; print('alpaca_eval', alpaca_eval.__version__, 'sklearn', sklearn.__version__, 'pandas', pandas.__version__)"
echo "$VENV/bin/python"

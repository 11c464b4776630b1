"""Run by the interpreter of alpaca_eval's own virtualenv (scripts/alpaca_eval_venv.sh), never imported by
fusechat: reads alpaca_eval annotation records (a JSON list, in the set's order) and prints, as the last line
of stdout, alpaca_eval's length-controlled win rate of them and each instruction's predicted preference.

    python alpaca_lc_child.py annotations.json
"""

import json
import sys

import pandas as pd
from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate


def main(path: str) -> None:
    with open(path) as f:
        frame = pd.DataFrame(json.load(f))
    metrics = get_length_controlled_winrate(frame, save_weights_dir=None)  # adds frame["glm_preference"]
    print(json.dumps({"length_controlled_winrate": float(metrics["length_controlled_winrate"]),
                      "lc_standard_error": float(metrics["lc_standard_error"]), "win_rate": float(metrics["win_rate"]),
                      "glm_preference": [float(p) for p in frame["glm_preference"]]}))


if __name__ == "__main__":
    main(sys.argv[1])

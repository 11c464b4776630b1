"""Seconds per math-verify check in fusechat's math worker (the plan's `MATH_CHECK_S`).

    python benchmarks/math_check.py [N]

Real model-style answers (a worked solution ending in a boxed or plain final answer) against golds of the
kinds the paper's math sets carry (integers, fractions, radicals, bare LaTeX), half right, half wrong.
Prints one JSON line: checks, seconds, ms per check.
"""

import json
import sys
import time

from fusechat.scorers.math import MathChecker

GOLDS = ["42", "\\frac{3}{4}", "2\\sqrt{2}", "x^2+1", "0.125", "\\frac{\\sqrt{3}}{2}", "17", "-5"]
RIGHT = ["So the total is $\\boxed{42}$.", "Dividing, we get $\\boxed{\\frac{3}{4}}$.", "Thus $d = \\boxed{2\\sqrt{2}}$.",
         "The polynomial is $\\boxed{x^2 + 1}$.", "The answer is 0.125.", "Hence $\\boxed{\\frac{\\sqrt{3}}{2}}$.",
         "Therefore the answer is $\\boxed{17}$.", "We find $x = \\boxed{-5}$."]
WRONG = ["So the total is $\\boxed{41}$.", "Dividing, we get $\\boxed{\\frac{4}{3}}$.", "Thus $d = \\boxed{2}$.",
         "The polynomial is $\\boxed{x^2 - 1}$.", "The answer is 0.25.", "Hence $\\boxed{\\frac{1}{2}}$.",
         "Therefore the answer is $\\boxed{71}$.", "We find $x = \\boxed{5}$."]


def main(n: int = 400) -> None:
    reasoning = "First we set up the equation $x + 1 = 2$ carefully. " * 40  # ~2,000 characters of worked solution
    jobs = [(reasoning + (RIGHT if i % 2 else WRONG)[i % 8], GOLDS[i % 8]) for i in range(n)]
    checker = MathChecker()
    checker.check(*jobs[0])  # the worker's start-up is paid once per stage, not per check
    started = time.perf_counter()
    verdicts = [checker.check(r, g).correct for r, g in jobs]
    seconds = time.perf_counter() - started
    checker.close()
    assert verdicts == [bool(i % 2) for i in range(n)], "a verdict is wrong: the benchmark would time the wrong work"
    print(json.dumps({"checks": n, "seconds": round(seconds, 2), "ms_per_check": round(1000 * seconds / n, 2)}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)

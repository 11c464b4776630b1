"""Math: is the response's final answer equivalent to the gold answer (math-verify)?

math-verify's own timeouts use signals, which only work in a main thread. We run it in a
worker process instead (`python -m fusechat.scorers.math`, JSON lines over pipes, so no
`if __name__ == "__main__"` guard is needed in user scripts) and kill that process when one
check overruns: a process-level timeout that works anywhere.
"""

from __future__ import annotations

import json
import re
import select
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class MathVerdict:
    correct: bool | None  # None: the gold answer itself does not parse
    extracted: str


def gold_forms(gold: str) -> list[str]:
    """How to hand a gold answer to math-verify. Datasets write golds bare (OpenMathInstruct-2's
    `expected_answer`: `\\sqrt{5}`, `\\frac{\\sqrt{3}}{2}`, `\\text{Monday}`, `x^2+1`), which math-verify reads
    only as LaTeX inside `$...$`, and which read bare can parse *wrong* (`2\\sqrt{2}` as 2): a gold with
    no boxed answer and no math delimiter of its own is read in `$...$` first, bare only if that fails."""
    if "\\boxed" in gold or re.search(r"(?<!\\)\$", gold):
        return [gold]
    return [f"${gold}$", gold]


def verify_one(response: str, gold: str, parse, verify) -> tuple[bool | None, str]:
    gold_parsed = next((parsed for form in gold_forms(gold) if (parsed := parse(form, parsing_timeout=None))), None)
    if not gold_parsed:
        return None, ""
    answer = parse(response, parsing_timeout=None)
    ok = bool(answer) and verify(gold_parsed, answer, timeout_seconds=None)
    return ok, str(answer[-1]) if answer else ""


def _worker() -> None:
    import logging

    from math_verify import parse, verify

    logging.disable(logging.WARNING)  # math-verify warns on every call that we disabled its timeouts
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.write(json.dumps(verify_one(job["response"], job["gold"], parse, verify)) + "\n")
        sys.stdout.flush()


class MathChecker:
    """Checks answers in a worker process; a check over `timeout_s` counts as incorrect."""

    STARTUP_S = 60  # the first check also pays for importing sympy

    def __init__(self, timeout_s: float = 10):
        self.timeout_s = timeout_s
        self.process = None

    def _start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "fusechat.scorers.math"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._warm = False

    def check(self, response: str, gold: str) -> MathVerdict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        self.process.stdin.write(json.dumps({"response": response, "gold": gold}) + "\n")
        self.process.stdin.flush()
        wait = self.timeout_s if self._warm else self.timeout_s + self.STARTUP_S
        ready, _, _ = select.select([self.process.stdout], [], [], wait)
        if ready:
            line = self.process.stdout.readline()
            if line:
                self._warm = True
                correct, extracted = json.loads(line)
                return MathVerdict(correct, extracted)
        self.close()
        return MathVerdict(False, "timeout")

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None


if __name__ == "__main__":
    _worker()

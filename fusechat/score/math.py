"""Math: is the response's final answer equivalent to the gold answer (math-verify)?

math-verify's own timeouts use signals, which only work in a main thread. We run it in a
worker process instead and kill that process when one check overruns: a process-level timeout
that works anywhere.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass


@dataclass
class MathVerdict:
    correct: bool | None  # None: the gold answer itself does not parse
    extracted: str


def _worker(conn) -> None:
    import logging

    from math_verify import parse, verify

    logging.disable(logging.WARNING)  # math-verify warns on every call that we disabled its timeouts
    while True:
        job = conn.recv()
        if job is None:
            return
        response, gold = job
        gold_parsed = parse(gold, parsing_timeout=None)
        if not gold_parsed:
            conn.send((None, ""))
            continue
        if "\\boxed" not in gold and "$" not in gold:
            gold_parsed = parse(f"${gold}$", parsing_timeout=None) or gold_parsed
        answer = parse(response, parsing_timeout=None)
        ok = bool(answer) and verify(gold_parsed, answer, timeout_seconds=None)
        conn.send((ok, str(answer[-1]) if answer else ""))


class MathChecker:
    """Checks answers in a worker process; a check over `timeout_s` counts as incorrect."""

    def __init__(self, timeout_s: float = 10):
        self.timeout_s = timeout_s
        self.process = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()

    def check(self, response: str, gold: str) -> MathVerdict:
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send((response, gold))
        # The first call also pays for the worker's imports (sympy): allow for it.
        if self.conn.poll(self.timeout_s + 30 if not getattr(self, "_warm", False) else self.timeout_s):
            self._warm = True
            correct, extracted = self.conn.recv()
            return MathVerdict(correct, extracted)
        self.process.kill()
        self.process.join()
        self.process = None
        return MathVerdict(False, "timeout")

    def close(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.conn.send(None)
            self.process.join(timeout=5)
            self.process.kill()
        self.process = None

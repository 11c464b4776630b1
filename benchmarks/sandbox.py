"""Sandbox overhead per program: the audit-hook sandbox (before issue 11) vs the bubblewrap one.

    python benchmarks/sandbox.py [--runs 40] [--old-commit a3d1355]
    python benchmarks/sandbox.py --rescore runs/cpu-default   # same verdicts as when the run was scored?

Runs the same programs through both, one at a time, alternating so that machine noise hits both
alike, and prints the median and 90th-percentile wall time per program. The old sandbox is read from
git history (it needs only the standard library). Programs: an empty one, and a typical scored
solution (a function plus its asserts). The first run of the new sandbox also pays the one-off
probe and (as root) the staging of the standard library; it is reported separately.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOLUTION = "import math\ndef isqrt_sum(xs):\n    return sum(math.isqrt(x) for x in xs)\n"
TESTS = "assert isqrt_sum([1, 4, 9]) == 6\nassert isqrt_sum([]) == 0\n"


def load_old(commit: str):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:fusechat/sandbox.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_sandbox.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_sandbox", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sandbox"] = module  # its dataclass looks itself up here
    spec.loader.exec_module(module)
    return module


def rescore(run: Path) -> None:
    """Score a finished run's code samples and HumanEval answers again with today's sandbox; count flips."""
    import json

    from fusechat.benchmarks.humaneval import problems, program
    from fusechat.recipe import SandboxConfig
    from fusechat.runfolder import read_jsonl
    from fusechat.scorers.code import check_many

    prompts = {p["id"]: p for p in read_jsonl(run / "prompts" / "prompts.jsonl")}
    scored = [r for r in read_jsonl(run / "score" / "scored.jsonl") if r["domain"] == "code"]
    now = [ok for ok, _ in check_many([(r["text"], prompts[r["prompt_id"]]["tests"]) for r in scored], SandboxConfig())]
    before = [r["correct"] for r in scored]
    print(f"code samples: {len(scored)}, correct then {sum(before)}, now {sum(now)}, "
          f"flips {sum(a != b for a, b in zip(before, now))}")
    items = [r for r in read_jsonl(run / "eval" / "items.jsonl") if r["benchmark"] == "humaneval"]
    if items:
        by_id = {p["id"]: p for p in problems(len({r["id"] for r in items}))}
        jobs = [(program(r["response"], by_id[r["id"]]), by_id[r["id"]]["tests"]) for r in items]  # as eval does
        now = [float(ok) for ok, _ in check_many(jobs, SandboxConfig(), extract=False)]
        before = [float(json.loads(r["score"]) if isinstance(r["score"], str) else r["score"]) for r in items]
        print(f"HumanEval answers: {len(items)}, passed then {sum(before):.0f}, now {sum(now):.0f}, "
              f"flips {sum(a != b for a, b in zip(before, now))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--old-commit", default="a3d1355")
    parser.add_argument("--rescore", type=Path, help="a finished run folder: re-score its code with today's sandbox")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args.rescore)

    from fusechat import sandbox as new

    old = load_old(args.old_commit)
    started = time.perf_counter()
    first = new.run_python("pass")
    print(f"new sandbox, first run (probe-free, includes bwrap copy/staging): {time.perf_counter() - started:.3f} s ({first.status})")
    print(f"isolation: {new.isolation()}")
    programs = {
        "empty program": (lambda: old.run_python("pass"), lambda: new.run_python("pass")),
        "solution + tests": (lambda: old.run_python(SOLUTION + "\n" + TESTS), lambda: new.run_python(SOLUTION, TESTS)),
    }
    print(f"\n{args.runs} runs each, alternating; wall seconds per program")
    print(f"| program | sandbox | median | p90 |")
    print(f"|---|---|---|---|")
    for name, (run_old, run_new) in programs.items():
        times = {"old (audit hooks)": [], "new (bubblewrap)": []}
        for _ in range(args.runs):
            for label, run in (("old (audit hooks)", run_old), ("new (bubblewrap)", run_new)):
                t = time.perf_counter()
                result = run()
                times[label].append(time.perf_counter() - t)
                assert result.status == "passed", (label, result)
        for label, ts in times.items():
            ts.sort()
            print(f"| {name} | {label} | {statistics.median(ts) * 1000:.0f} ms | {ts[int(0.9 * (len(ts) - 1))] * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

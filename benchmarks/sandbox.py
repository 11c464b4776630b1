"""Sandbox overhead per program: the audit-hook sandbox (before issue 11) vs the bubblewrap one.

    python benchmarks/sandbox.py [--runs 40] [--old-commit a3d1355]

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--old-commit", default="a3d1355")
    args = parser.parse_args()

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

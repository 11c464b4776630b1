"""Code: does the response's code pass the prompt's tests? Run only inside the sandbox."""

from __future__ import annotations

import ast
import re
from concurrent.futures import ThreadPoolExecutor

from fusechat.recipe import SandboxConfig
from fusechat.sandbox import isolation, run_python, stop_all

_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)```", re.S)


def extract_code(response: str, keep_indent: bool = False) -> str:
    """The fenced block that defines a function (else the last fenced block, else the whole text).

    `keep_indent`: keep the first line's indentation (a function body given alone)."""
    blocks = _FENCE.findall(response)
    with_def = [b for b in blocks if "def " in b]
    code = (with_def or blocks)[-1] if blocks else response
    return code.strip("\n").rstrip() if keep_indent else code.strip()


def check_code(response: str, tests: str, limits: SandboxConfig, packages: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Does the code in a model's response pass `tests`? (True/False, and why not)"""
    return run_tests(extract_code(response), tests, limits, packages)


def run_tests(code: str, tests: str, limits: SandboxConfig, packages: tuple[str, ...] = ()) -> tuple[bool, str]:
    """Run `code`, then `tests`, in the sandbox, after a static check that it parses. Passed means the
    tests ran to their end (the sandbox's token), whatever the program's exit status."""
    try:
        ast.parse(code)  # the static check: code that does not parse never runs
    except SyntaxError as e:
        return False, f"syntax error: {e.msg} (line {e.lineno})"
    except (ValueError, MemoryError, RecursionError) as e:  # NULs, lone surrogates, nesting past the parser's limits
        return False, f"does not parse: {type(e).__name__} {str(e)[:100]}".rstrip()
    result = run_python(code, tests, timeout_s=limits.timeout_s, memory_mb=limits.memory_mb,
                        max_output_bytes=limits.max_output_bytes, max_procs=limits.max_procs, disk_mb=limits.disk_mb,
                        max_files=limits.max_files,
                        isolate=not limits.allow_unisolated, packages=packages)
    if result.passed:
        return True, "passed"
    last = result.stderr.strip().splitlines()[-1:] or [""]
    return False, f"{result.status}: {last[0][:200]}"


def check_many(jobs: list[tuple[str, str]], limits: SandboxConfig, workers: int = 2, extract: bool = True,
               packages: tuple[str, ...] = ()) -> list[tuple[bool, str]]:
    """(response or code, tests) jobs, `workers` sandboxes at a time; `extract=False`: the code is given as is;
    `packages`: installed packages the code and tests may import (fusechat.sandbox.run_python).

    Stops with one line (SandboxUnavailable) before any job when the machine cannot isolate code."""
    if jobs and not limits.allow_unisolated:
        isolation()
    check = check_code if extract else run_tests
    pool = ThreadPoolExecutor(workers)
    try:
        return list(pool.map(lambda job: check(job[0], job[1], limits, packages), jobs))
    except BaseException:  # an interrupt: no new cage starts, the running ones are killed
        pool.shutdown(wait=False, cancel_futures=True)
        stop_all()
        raise
    finally:
        pool.shutdown(wait=True)

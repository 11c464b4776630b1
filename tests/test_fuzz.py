"""Model output is data, never a crash: every scorer and every backend parser turns malformed, huge, deeply
nested or undecodable text into a verdict or an `error` record, and the score stage goes on."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from fusechat import FusechatError, constraints
from fusechat.backends.base import Generation, from_chat_completion, top_logprobs_from_chat_completion
from fusechat.recipe import SandboxConfig, recipe_from_dict
from fusechat.runfolder import Outputs, RunFolder, read_jsonl
from fusechat.scorers.code import check_code
from fusechat.scorers.math import MathChecker

# The three responses that stopped the score stage for good (a NUL, 10,000 dashes, 3,000 terms), and more.
POISON = {
    "nul": "```python\ndef f(x):\n    return x\x00\n```",
    "dashes": "```python\n" + "-" * 10_000 + "1\n```",
    "terms": "```python\nx = " + "+".join(["1"] * 3000) + "\n```",
    "surrogate": "The answer is \ud800 \\boxed{3}",
    "megabyte_line": "a" * 1_000_000,
    "deep_braces": "\\boxed{" + "{" * 5000 + "}" * 5000 + "}",
    "deep_brackets": "```python\nx = " + "[" * 5000 + "]" * 5000 + "\n```",
    "all_bytes": bytes(range(256)).decode("latin-1"),
    "empty": "",
}
rng = random.Random(0)
POISON |= {f"random-{i}": "".join(chr(rng.choice([0, 0xD800, 0xDFFF, 0xFFFF, rng.randrange(0x110000)]))
                                  for _ in range(rng.randrange(1, 400))) for i in range(6)}


@pytest.fixture(scope="module")
def math_checker():
    checker = MathChecker(timeout_s=5)
    yield checker
    checker.close()


@pytest.mark.parametrize("name", POISON)
def test_each_scorer_gives_a_verdict_on_any_text(name, math_checker):
    text = POISON[name]
    assert math_checker.check(text, "3").correct in (True, False)
    ok, why = check_code(text, "assert f(1) == 1", SandboxConfig(timeout_s=5))
    assert ok is False and why
    assert constraints.check(text, [{"id": "punctuation:no_comma", "kwargs": {}}], "Write. No commas.") in (True, False)


def random_json(rng: random.Random, depth: int = 0):
    kinds = ["str", "int", "none", "float"] + (["list", "dict"] if depth < 4 else [])
    match rng.choice(kinds):
        case "str":
            return rng.choice(["", "error", "choices", "\ud800", "x" * 1000, "content", "\x00"])
        case "int":
            return rng.randrange(-5, 5)
        case "none":
            return None
        case "float":
            return rng.choice([float("nan"), 1e308, -0.5])
        case "list":
            return [random_json(rng, depth + 1) for _ in range(rng.randrange(3))]
        case "dict":
            keys = ["choices", "message", "content", "usage", "prompt_tokens", "logprobs", "top_logprobs", "token",
                    "logprob", "finish_reason", "error"]
            return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_a_server_answer_of_any_shape_is_a_generation_or_one_line():
    rng = random.Random(1)
    shaped = [{"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": {"completion_tokens": 3}}
              for text in POISON.values()]
    for answer in shaped + [random_json(rng) for _ in range(3000)]:
        g = from_chat_completion(answer, seed=7)
        assert isinstance(g, Generation) and g.finish_reason in ("stop", "length", "error") and g.seed == 7
        json.dumps([g.text, g.error], ensure_ascii=False).encode("utf-8")  # writable, whatever came in
        try:
            top_logprobs_from_chat_completion(answer)
        except FusechatError:
            pass


def test_a_lone_surrogate_from_a_server_is_kept_as_a_replacement_character():
    g = from_chat_completion({"choices": [{"message": {"content": "ok \ud800 done"}}]}, seed=0)
    assert g.finish_reason == "stop" and g.text == "ok \ufffd\ufffd\ufffd done"


def test_the_score_stage_scores_poisonous_responses_and_goes_on(tmp_path):
    tests_file = tmp_path / "code.jsonl"
    tests_file.write_text(json.dumps({"prompt": "Write f(x) returning x.", "tests": "assert f(2) == 2"}) + "\n")
    recipe = recipe_from_dict({"name": "t", "run_dir": str(tmp_path / "run"),
                               "prompts": {"sets": [{"domain": "code", "path": str(tests_file)}]},
                               "sources": [{"name": "a", "model": "smollm2-135m-instruct"}]})
    folder = RunFolder(recipe.run_path)
    prompt = {"id": "p", "domain": "code", "prompt": "Write f(x) returning x.", "tests": "assert f(2) == 2",
              "entry_point": "f", "answer": "", "split": "any", "origin": "", "constraints": []}
    folder.write("prompts", Outputs({"prompts": [prompt]}))
    honest = "```python\ndef f(x):\n    return x\n```"
    texts = [POISON["nul"], POISON["dashes"], POISON["terms"], honest]
    samples = [{"prompt_id": "p", "domain": "code", "source": "a", "sample_index": i, "seed": i, "text": t,
                "prompt_tokens": 1, "completion_tokens": 1, "finish_reason": "stop", "error": ""} for i, t in enumerate(texts)]
    folder.write("sample", Outputs({"samples": samples}))
    from fusechat.pipeline import run_stage

    manifest = run_stage("score", recipe)
    scored = read_jsonl(recipe.run_path / "score" / "scored.jsonl")
    assert [s["correct"] for s in scored] == [False, False, False, True]
    assert all(s["score_info"] for s in scored[:3])
    assert manifest["counts"]["correct"] == {"code/a/False": 3, "code/a/True": 1}


def test_sigterm_mid_score_stops_cleanly_and_the_rerun_goes_on(tmp_path):
    """What a cluster scheduler sends: the stage stops at once (exit 130), its cages are killed and their folders
    removed, finished shards stay; the rerun finishes the stage."""
    # the run's own temporary folder, reachable by the cage's uid like /tmp (pytest's tmp_path is private)
    scratch = Path(tempfile.mkdtemp(prefix="fusechat-test-tmpdir-", dir="/tmp"))
    scratch.chmod(0o711)
    try:
        check_sigterm(tmp_path, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_sigterm(tmp_path: Path, scratch: Path) -> None:
    tests_file = tmp_path / "code.jsonl"
    tests_file.write_text(json.dumps({"prompt": "Write f(x) returning x.", "tests": "assert f(2) == 2"}) + "\n")
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "name": "t", "run_dir": str(tmp_path / "run"), "prompts": {"sets": [{"domain": "code", "path": str(tests_file)}]},
        "sources": [{"name": "a", "model": "smollm2-135m-instruct"}], "score": {"code": {"timeout_s": 60}}}))
    folder = RunFolder(tmp_path / "run")
    prompt = {"id": "p", "domain": "code", "prompt": "Write f(x) returning x.", "tests": "assert f(2) == 2",
              "entry_point": "f", "answer": "", "split": "any", "origin": "", "constraints": []}
    folder.write("prompts", Outputs({"prompts": [prompt]}))
    slow = "```python\nimport time\ntime.sleep(8)\ndef f(x):\n    return x\n```"
    samples = [{"prompt_id": "p", "domain": "code", "source": "a", "sample_index": i, "seed": i, "text": slow,
                "prompt_tokens": 1, "completion_tokens": 1, "finish_reason": "stop", "error": ""} for i in range(4)]
    folder.write("sample", Outputs({"samples": samples}))

    env = dict(os.environ, TMPDIR=str(scratch))
    command = [sys.executable, "-m", "fusechat", "score", str(recipe_path)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not list(scratch.glob("fusechat-sandbox-*")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(scratch.glob("fusechat-sandbox-*")), "no cage started"
    time.sleep(0.5)  # the cages are running their 8-second programs
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "stopped" in out and "Traceback" not in out, out
    assert time.time() - started < 6  # the programs were killed, not waited for
    assert not list(scratch.iterdir())  # no cage folder, no staged interpreter left
    assert folder.manifest("score") is None

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert [s["correct"] for s in folder.records("score", "scored")] == [True] * 4

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import yaml

from fusechat.pipeline import run_stage
from fusechat.recipe import load_recipe
from fusechat.runfolder import RunFolder


def write_recipe(tmp_path, model_dir, run_dir, n_math=3, **source_extra):
    data = {
        "name": "t", "run_dir": str(run_dir), "shard_size": 2,
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": n_math},
                             {"domain": "code", "pack": "code-functions", "n": 2}]},
        "sources": [{"name": "tiny", "model": str(model_dir), "backend": "transformers", "dtype": "float32",
                     "batch_size": 8, "samples_per_prompt": {"math": 2, "code": 1},
                     "sampling": {"temperature": 0.0, "max_new_tokens": 12}, **source_extra}],
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_records_carry_every_field(tmp_path, tiny_model_dir):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model_dir, tmp_path / "run", sampling={"temperature": 0.8, "max_new_tokens": 6}))
    run_stage("prompts", recipe)
    manifest = run_stage("sample", recipe)
    samples = RunFolder(recipe.run_path).records("sample", "samples")
    assert manifest["counts"]["samples"] == len(samples) == 3 * 2 + 2 * 1
    keys = Counter((s["prompt_id"], s["source"], s["sample_index"]) for s in samples)
    assert max(keys.values()) == 1
    for s in samples:
        assert s["prompt_tokens"] > 10 and 0 <= s["completion_tokens"] <= 6
        assert s["finish_reason"] in ("stop", "length") and isinstance(s["seed"], int)
    assert run_stage("sample", recipe)["skipped"]
    assert manifest["timings"]["tiny"]["tokens_per_s"] > 0 and manifest["versions"]["transformers"]


def test_killed_sampling_resumes_without_loss_or_duplicates(tmp_path, tiny_model_dir):
    """Kill `fusechat sample` after its first shard, rerun, and compare with an uninterrupted run."""
    path = write_recipe(tmp_path, tiny_model_dir, tmp_path / "killed", n_math=30, sampling={"temperature": 0.0, "max_new_tokens": 48})
    recipe = load_recipe(path)
    run_stage("prompts", recipe)
    shard_dir = recipe.run_path / "sample" / "shards"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "fusechat", "sample", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(shard_dir.glob("tiny-*.jsonl")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(shard_dir.glob("tiny-*.jsonl"))
    assert finished and not (recipe.run_path / "sample" / "manifest.json").exists()
    assert len(finished) < 16  # 32 prompts in shards of 2: it really stopped midway

    resumed = subprocess.run([sys.executable, "-m", "fusechat", "sample", str(path)], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    samples = RunFolder(recipe.run_path).records("sample", "samples")

    clean = load_recipe(write_recipe(tmp_path, tiny_model_dir, tmp_path / "clean", n_math=30, sampling={"temperature": 0.0, "max_new_tokens": 48}))
    run_stage("prompts", clean)
    run_stage("sample", clean)
    expected = RunFolder(clean.run_path).records("sample", "samples")
    key = lambda s: (s["prompt_id"], s["source"], s["sample_index"])  # noqa: E731
    assert len(samples) == len(expected) == 30 * 2 + 2
    assert len({key(s) for s in samples}) == len(samples)
    assert sorted(map(json.dumps, samples)) == sorted(map(json.dumps, expected))


def test_chat_template_override_is_used(tmp_path, tiny_model_dir):
    template = "{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}{% if add_generation_prompt %}ANSWER:{% endif %}"
    default = load_recipe(write_recipe(tmp_path, tiny_model_dir, tmp_path / "a"))
    custom = load_recipe(write_recipe(tmp_path, tiny_model_dir, tmp_path / "b", chat_template=template))
    counts = []
    for recipe in (default, custom):
        run_stage("prompts", recipe)
        run_stage("sample", recipe)
        samples = RunFolder(recipe.run_path).records("sample", "samples")
        counts.append(sorted(s["prompt_tokens"] for s in samples))
    assert counts[0] != counts[1]  # ChatML adds role headers the custom template lacks


def test_llamacpp_server_port_is_closed_to_other_local_users(tmp_path, tiny_model_dir):
    """xllamacpp also listens on a loopback port: without fusechat's random key, every endpoint says 401."""
    import urllib.error
    import urllib.request

    from fusechat.export import export_gguf
    from fusechat.recipe import Sampling
    from fusechat.backends.base import Request
    from fusechat.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(export_gguf(tiny_model_dir, tmp_path / "tiny.gguf", "f16"), slots=1, ctx_per_slot=256)
    try:
        address = backend.server.listening_address
        refused = []
        for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                           ("/tokenize", {"content": "hi"}), ("/slots", None), ("/props", None)):
            data = json.dumps(body).encode() if body else None
            try:
                urllib.request.urlopen(urllib.request.Request(f"{address}{path}", data=data), timeout=10)
            except urllib.error.HTTPError as e:
                refused.append(e.code in (401, 404, 501))
            else:
                refused.append(False)
        assert all(refused), refused
        # fusechat itself, calling the handlers in-process, is unaffected.
        out = backend.generate([Request([{"role": "user", "content": "hi"}], 0)], Sampling(temperature=0, max_new_tokens=4))
        assert out[0].finish_reason in ("stop", "length")
    finally:
        backend.close()


def test_a_source_whose_responses_come_from_a_dataset_is_scored_and_built_like_a_sampled_one(tmp_path):
    from fusechat.runfolder import read_jsonl

    questions = {f"What is {i} + {i}?": str(2 * i) for i in range(1, 5)}
    (tmp_path / "math.jsonl").write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n" for q, a in questions.items()))
    # OpenMathInstruct-2's column names; two solutions a prompt (right, then wrong), one prompt with only one
    rows = []
    for q, a in questions.items():
        rows.append({"problem": q, "generated_solution": f"The sum is \\boxed{{{a}}}."})
        if q != "What is 4 + 4?":
            rows.append({"problem": q, "generated_solution": f"The sum is \\boxed{{{int(a) + 1}}}."})
    (tmp_path / "solutions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump({
        "name": "t", "run_dir": str(tmp_path / "run"),
        "prompts": {"sets": [{"domain": "math", "path": str(tmp_path / "math.jsonl")}]},
        "sources": [{"name": "llama-405b", "model": "meta-llama/Llama-3.1-405B-Instruct", "backend": "dataset",
                     "responses": {"dataset": str(tmp_path / "solutions.jsonl"),
                                   "columns": {"prompt": "problem", "response": "generated_solution"}},
                     "samples_per_prompt": {"math": 2}}],
        "build": {"gap_window": None}}))
    recipe = load_recipe(recipe_file)
    for stage in ("prompts", "sample", "score", "build"):
        run_stage(stage, recipe)
    samples = read_jsonl(recipe.run_path / "sample" / "samples.jsonl")
    assert len(samples) == 8
    missing = [s for s in samples if s["finish_reason"] == "error"]
    assert len(missing) == 1 and "1 response(s) for this prompt" in missing[0]["error"]  # said, not dropped
    scored = {(s["prompt_id"], s["sample_index"]): s for s in read_jsonl(recipe.run_path / "score" / "scored.jsonl")}
    assert sorted(s["correct"] for s in scored.values() if s["finish_reason"] != "error") == [False] * 3 + [True] * 4
    dpo = read_jsonl(recipe.run_path / "build" / "dpo.jsonl")
    sft = read_jsonl(recipe.run_path / "build" / "sft.jsonl")
    assert len(dpo) == 3 and len(sft) == 1  # right vs wrong where both exist; the lone right answer is SFT
    assert all("\\boxed" in row["chosen"][-1]["content"] for row in dpo)
    # a changed response file reruns sampling (its contents are part of the stage's input)
    (tmp_path / "solutions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))
    assert not run_stage("sample", recipe).get("skipped")


def test_k_parts_on_one_run_folder_equal_one_process(tmp_path, tiny_model_dir):
    """Three `--part i/3` processes at once (a Slurm array on shared storage), one killed after its first
    shard and rerun, then a merge: record for record the one-process run, nothing lost or duplicated."""
    def recipe_file(run_dir):
        path = write_recipe(tmp_path, tiny_model_dir, run_dir, n_math=12)
        data = yaml.safe_load(path.read_text())
        data["sources"].append(dict(data["sources"][0], name="tiny2", samples_per_prompt={"math": 1, "code": 2}))
        path.write_text(yaml.safe_dump(data))
        return path

    parts_path, single_path = recipe_file(tmp_path / "parts"), recipe_file(tmp_path / "single")
    for path in (parts_path, single_path):
        run_stage("prompts", load_recipe(path))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "fusechat", "sample", str(parts_path), "--part"]
    shards = tmp_path / "parts" / "sample" / "shards"
    procs = {i: subprocess.Popen(command + [f"{i}/3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2, 3)}
    # part 2's shards are the 2nd, 5th, 8th... of all sources' shards: kill it once its first is written
    deadline = time.time() + 120
    while time.time() < deadline and not (shards / "tiny-00001.jsonl").exists():
        time.sleep(0.01)
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait()
    for i in (1, 3):
        out, _ = procs[i].communicate(timeout=300)
        assert procs[i].returncode == 0 and f"part {i}/3 done" in out, out
    assert RunFolder(tmp_path / "parts").manifest("sample") is None  # parts never finish the stage
    rerun = subprocess.run(command + ["2/3"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "every shard is there" in rerun.stdout + rerun.stderr, rerun.stdout + rerun.stderr
    merged = subprocess.run([sys.executable, "-m", "fusechat", "sample", str(parts_path)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    run_stage("sample", load_recipe(single_path))
    key = lambda s: (s["source"], s["prompt_id"], s["sample_index"])  # noqa: E731
    parts = sorted(RunFolder(tmp_path / "parts").records("sample", "samples"), key=key)
    single = sorted(RunFolder(tmp_path / "single").records("sample", "samples"), key=key)
    assert len(parts) == len(single) == 12 * 2 + 2 * 1 + 12 * 1 + 2 * 2
    assert len({key(s) for s in parts}) == len(parts)
    assert [json.dumps(s, sort_keys=True) for s in parts] == [json.dumps(s, sort_keys=True) for s in single]
    manifest = RunFolder(tmp_path / "parts").manifest("sample")
    assert set(manifest["timings"]) == {"tiny", "tiny2"}  # the parts' speeds, kept for the plan


def test_a_part_is_i_of_k(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from fusechat.cli import app

    path = write_recipe(tmp_path, tiny_model_dir, tmp_path / "run")
    run_stage("prompts", load_recipe(path))
    for bad, words in (("4/3", "I goes from 1 to K"), ("x", "write I/K")):
        result = CliRunner().invoke(app, ["sample", str(path), "--part", bad])
        assert result.exit_code == 2 and words in result.output, result.output
    result = CliRunner().invoke(app, ["sample", str(path), "--part", "1/2", "--force"])
    assert result.exit_code == 2 and "--part and --force do not go together" in result.output, result.output


def test_plan_writes_the_slurm_array_that_runs_the_parts(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from fusechat.cli import app

    path = write_recipe(tmp_path, tiny_model_dir, tmp_path / "run")
    result = CliRunner().invoke(app, ["plan", str(path), "--nodes", "4", "--gpus-per-node", "8"])
    assert result.exit_code == 0, result.output
    script = (tmp_path / "run" / "slurm-sample.sh").read_text()
    assert "#SBATCH --array=1-4" in script and "#SBATCH --gres=gpu:8" in script
    assert f'fusechat sample {path} --part "${{SLURM_ARRAY_TASK_ID}}/4"' in script
    assert "afterok" in result.output and "fusechat prompts" in result.output


def test_an_over_long_prompt_is_an_error_sample_under_every_backend(tmp_path, tiny_model_dir, server):
    """A prompt longer than the model's context becomes an `error` sample beside the others' answers, never
    an exception that stops the shard (and the rerun) for good. (vLLM: scripts/vllm_cpu_check.sh.)"""
    from fusechat.backends.base import Request
    from fusechat.backends.hf import TransformersBackend
    from fusechat.backends.llamacpp import LlamaCppBackend
    from fusechat.backends.openai_api import OpenAIBackend
    from fusechat.export import export_gguf
    from fusechat.recipe import Sampling

    short = [{"role": "user", "content": "Say hi."}]
    long = [{"role": "user", "content": "word " * 9000}]  # past 2,048 (tiny), 512 (llama.cpp slot), 2,048 (server slot)
    requests = [Request(short, 1), Request(long, 2), Request(short, 3)]
    sampling = Sampling(temperature=0.0, max_new_tokens=4)
    backends = {
        "transformers": lambda: TransformersBackend(str(tiny_model_dir), dtype="float32"),
        "llamacpp": lambda: LlamaCppBackend(export_gguf(tiny_model_dir, tmp_path / "tiny.gguf", "f16"), slots=1,
                                            ctx_per_slot=512),
        "openai": lambda: OpenAIBackend(server, "smollm2"),
    }
    for name, make in backends.items():
        with make() as backend:
            got = backend.generate(requests, sampling)
        assert [g.finish_reason == "error" for g in got] == [False, True, False], (name, [g.error for g in got])
        assert got[1].error and got[1].seed == 2, name


def test_several_shards_in_flight_give_the_same_shards(tmp_path):
    """`in_flight`: one backend call for several shards (vLLM needs thousands of sequences at once); each
    shard is still written whole, holding its own prompts' samples, and the samples are the same."""
    from fusechat.records import Prompt, from_dict
    from fusechat.sample import in_flight_groups, shard_plan

    answers = tmp_path / "answers.jsonl"
    prompts_file = tmp_path / "p.jsonl"
    rows = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(10)]
    prompts_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    answers.write_text("".join(json.dumps({"prompt": r["prompt"], "response": f"\\boxed{{{r['answer']}}} #{k}"}) + "\n"
                               for r in rows for k in range(3)))
    runs = {}
    for name, extra in (("one", {}), ("grouped", {"in_flight": 12})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({
            "name": name, "run_dir": str(tmp_path / name), "shard_size": 2,
            "prompts": {"sets": [{"domain": "math", "path": str(prompts_file)}]},
            "sources": [{"name": "data", "model": "x", "backend": "dataset", "responses": {"dataset": str(answers)},
                         "samples_per_prompt": {"math": 3}, **extra}]}))
        recipe = load_recipe(path)
        run_stage("prompts", recipe)
        run_stage("sample", recipe)
        runs[name] = RunFolder(recipe.run_path).records("sample", "samples")
        if extra:  # 5 shards of 2 prompts x 3 samples: two shards (12 requests) a call
            prompts = [from_dict(Prompt, p, "prompt") for p in RunFolder(recipe.run_path).records("prompts", "prompts")]
            groups = in_flight_groups(shard_plan(prompts, recipe.sources[0], 2), recipe.sources[0])
            assert [len(g) for g in groups] == [2, 2, 1]
    key = lambda s: (s["prompt_id"], s["sample_index"])  # noqa: E731
    assert sorted(runs["one"], key=key) == sorted(runs["grouped"], key=key) and len(runs["one"]) == 30


def test_a_source_in_child_process_replicas_answers_as_in_process(tiny_model_dir):
    """fusechat.backends.replicas (how every vLLM source runs) with a transformers source, so it runs here:
    two child processes share the prompts out, keep each prompt's samples together, answer in request order
    exactly what the model answers in this process, and leave no process behind."""
    import psutil
    import pytest

    from fusechat import FusechatError
    from fusechat.backends.base import Request
    from fusechat.backends.factory import open_backend
    from fusechat.backends.replicas import Replicas, share_out
    from fusechat.recipe import Sampling, Source

    # batch_size 1: each sequence alone, so padding cannot change a greedy answer between the two ways
    source = Source(name="a", model=str(tiny_model_dir), backend="transformers", batch_size=1, threads=1)
    prompts = [[{"role": "user", "content": f"Count to {i}."}] for i in range(5)]
    requests = [Request(p, 10 * i + k) for i, p in enumerate(prompts) for k in range(2)]
    shares = share_out(requests, 2)
    assert sorted(i for s in shares for i in s) == list(range(10)) and {len(s) for s in shares} == {4, 6}
    assert all(requests[i].messages != requests[j].messages for i in shares[0] for j in shares[1])  # a prompt on one engine

    greedy = Sampling(temperature=0, max_new_tokens=6)
    with open_backend(source) as here:
        want = here.generate(requests, greedy)
        want_judge = here.first_token_logprobs(prompts[0], top=5)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    backend = Replicas(source, 512, replicas=2)
    try:
        children = [r.process.pid for r in backend.replicas]
        assert len(set(children)) == 2 and os.getpid() not in children
        got = backend.generate(requests, greedy)
        assert [(g.text, g.seed, g.completion_tokens) for g in got] == [(g.text, g.seed, g.completion_tokens) for g in want]
        judged = backend.first_token_logprobs(prompts[0], top=5)
        assert judged.keys() == want_judge.keys()
        assert all(abs(judged[k] - want_judge[k]) < 1e-4 for k in judged)

        os.kill(children[1], signal.SIGKILL)  # one engine dies: one line, not a hang or a traceback
        with pytest.raises(FusechatError, match="replica 1 stopped"):
            backend.generate(requests, greedy)
    finally:
        backend.close()
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before

    # A model that will not load: the child's one-line reason, and no child left
    broken = Source(name="b", model=str(tiny_model_dir / "missing"), backend="transformers")
    with pytest.raises(FusechatError, match="missing': not a catalog name"):  # said by the child that tried
        Replicas(broken, 512, replicas=2)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_a_closed_transformers_model_is_freed(tiny_model_dir):
    """close() leaves nothing holding the weights (then release_memory returns a GPU's cache), so the next
    model of the process, e.g. the eval stage's vLLM judge after the transformers eval, finds the memory free."""
    import gc
    import weakref

    from fusechat.backends.factory import open_backend
    from fusechat.recipe import Source

    backend = open_backend(Source(name="a", model=str(tiny_model_dir), backend="transformers", threads=1))
    model = weakref.ref(backend.model)
    backend.close()
    assert model() is None
    gc.collect()

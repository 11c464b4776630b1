"""Bad input and a hostile machine: one line naming the file, line or field, exit code 2, never a
traceback; and what used to be accepted silently (a run folder outside runs/, a reversed window) is refused."""

import json
import os
import shutil
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from fusechat.cli import app


def recipe_file(tmp_path, model_dir, prompts_path=None, **overrides):
    prompts_path = prompts_path or tmp_path / "prompts.jsonl"
    if not prompts_path.exists():
        prompts_path.write_text("".join(json.dumps({"prompt": f"Say {w}.", "answer": w}) + "\n" for w in ("yes", "no", "maybe")))
    data = {
        "name": "bad", "run_dir": str(tmp_path / "run"),
        "prompts": {"sets": [{"domain": "instruction", "path": str(prompts_path)}]},
        "sources": [{"name": "t", "model": str(model_dir), "backend": "transformers", "dtype": "float32",
                     "samples_per_prompt": {"instruction": 2}, "sampling": {"max_new_tokens": 4}}],
    } | overrides
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line(result, *words):
    out = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, out, result.exception)
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out and len(errors) == 1, out  # (a progress bar may have started before)
    out = errors[0]
    for word in words:
        assert word in out, out


# --- the recipe and --set ---------------------------------------------------------------------------------

def test_a_recipe_that_is_a_folder_or_binary(tmp_path):
    assert_one_line(cli("prompts", tmp_path), str(tmp_path), "folder")
    binary = tmp_path / "r.yaml"
    binary.write_bytes(bytes(range(256)))
    assert_one_line(cli("prompts", binary), "r.yaml", "not a text file")


@pytest.mark.parametrize("assignment, words", [
    ("name.x.y=1", ["--set name.x.y", "'name' is a str"]),
    ("seed=[1,", ["--set seed", "not valid YAML"]),
    ("seed=!!python/object/apply:os.system ['touch pwned']", ["--set seed", "not valid YAML"]),
    ("name=../../x", ["name", "letters"]),
    ("run_dir=runs/../../x", ["run_dir", "'..'"]),
    ("run_dir=runs/{", ["run_dir", "Single '{'"]),
    ("run_dir=runs/{foo}", ["run_dir", "{foo}"]),
    ("run_dir='runs/{name.__class__}'", ["run_dir", "{name.__class__}"]),
    ("run_dir='runs/{name!r}'", ["run_dir", "{name!r}"]),
    ("build.gap_window=[0.5, 0.1]", ["build.gap_window", "reversed"]),
])
def test_bad_overrides_are_refused(tmp_path, tiny_model_dir, assignment, words):
    path = recipe_file(tmp_path, tiny_model_dir)
    assert_one_line(cli("prompts", path, "--set", assignment), *words)
    assert not (tmp_path / "run").exists() and not (tmp_path / "pwned").exists()


def test_run_dir_pointing_at_a_file(tmp_path, tiny_model_dir):
    (tmp_path / "run").write_text("not a folder")
    assert_one_line(cli("prompts", recipe_file(tmp_path, tiny_model_dir)), "run folder is a file")


# --- prompt files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, words", [
    (b'{"prompt": "caf\xe9"}\n', ["prompts.jsonl:1", "not UTF-8"]),
    (b'{"prompt": "ok"}\n{"prompt": "a \\ud800 b"}\n', ["prompts.jsonl:2", "surrogate"]),
    (b"", ["no prompts"]),
    (b"\n\n", ["no prompts"]),
    (b'{"prompt": "ok", "id": {"a": 1}}\n', ["prompts.jsonl:1", "`id` must be a string or an integer"]),
    (b'{"prompt": "   "}\n', ["every prompt", "dropped", "empty"]),
])
def test_bad_prompt_files(tmp_path, tiny_model_dir, content, words):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(content)
    assert_one_line(cli("prompts", recipe_file(tmp_path, tiny_model_dir, prompts)), *words)


def test_bad_jinja_chat_template_stops_before_the_model_loads(tmp_path, tiny_model_dir):
    path = recipe_file(tmp_path, tiny_model_dir)
    assert cli("prompts", path).exit_code == 0
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    assert_one_line(cli("sample", path, "--set", f"sources.0.chat_template={template}"),
                    "template.jinja", "not a valid Jinja chat template", "line 2")


def test_a_math_answer_that_is_an_object_is_refused(tmp_path, tiny_model_dir):
    prompts = tmp_path / "math.jsonl"
    prompts.write_text(json.dumps({"prompt": "1+1?", "answer": {"value": 2}}) + "\n")
    path = recipe_file(tmp_path, tiny_model_dir, prompts={"sets": [{"domain": "math", "path": str(prompts)}]})
    assert_one_line(cli("prompts", path), "math.jsonl:1", "gold `answer` is text or a number")


@pytest.mark.parametrize("args, words", [
    (["--gpus", "-3"], ["--gpus -3"]),
    (["--gpu-memory", "-1"], ["--gpu-memory -1"]),
    (["--gpu-memory", "nan"], ["--gpu-memory nan"]),
    (["--gpu-memory", "inf"], ["--gpu-memory inf"]),
    (["--gpu-memory", "0"], ["--gpu-memory 0"]),
])
def test_plan_refuses_impossible_hardware(tmp_path, tiny_model_dir, args, words):
    assert_one_line(cli("plan", recipe_file(tmp_path, tiny_model_dir), *args), *words)


def test_plan_names_a_broken_model_config(tmp_path, tiny_model_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"hidden_size": 64, ')
    assert_one_line(cli("plan", recipe_file(tmp_path, broken)), "broken/config.json", "not a readable model config")


@pytest.mark.parametrize("model, words", [
    ("../../escape=FOLDER", ["--model", "use letters, digits"]),
    ("a/b=FOLDER", ["--model", "use letters, digits"]),
    ("=FOLDER", ["--model", "use letters, digits"]),
])
def test_a_model_name_never_becomes_a_path(tmp_path, tiny_model_dir, model, words):
    assert_one_line(cli("eval", recipe_file(tmp_path, tiny_model_dir), "--model", model), *words)
    path = recipe_file(tmp_path, tiny_model_dir)
    assert_one_line(cli("eval", path, "--set", f"eval.extra_models={{'../../tmp/x': '{tiny_model_dir}'}}"),
                    "extra_models", "use letters, digits")


def test_publish_refuses_a_repo_id_the_hub_would_refuse(tmp_path, tiny_model_dir):
    assert_one_line(cli("publish", recipe_file(tmp_path, tiny_model_dir), "--repo", "not a repo id", "--dry-run"),
                    "--repo 'not a repo id'", "not a hub repository id")


# --- a damaged run folder --------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_manifest(tmp_path, tiny_model_dir, damage):
    path = recipe_file(tmp_path, tiny_model_dir)
    assert cli("prompts", path).exit_code == 0
    manifest = tmp_path / "run" / "prompts" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40] if damage == "truncated" else "")
    assert_one_line(cli("sample", path), "prompts/manifest.json", "damaged")
    manifest.unlink()  # as the message says: delete it and the stage reruns
    assert cli("prompts", path).exit_code == 0


def test_a_deleted_input_of_the_next_stage(tmp_path, tiny_model_dir):
    path = recipe_file(tmp_path, tiny_model_dir)
    assert cli("prompts", path).exit_code == 0
    (tmp_path / "run" / "prompts" / "prompts.jsonl").unlink()
    assert_one_line(cli("sample", path), "prompts.jsonl", "missing", "fusechat prompts")


@pytest.mark.parametrize("edit, words", [
    (lambda r: r.pop("reward"), ["scored.jsonl:1", "no `reward`"]),
    (lambda r: r.update(reward="0.5"), ["scored.jsonl:1", "`reward` must be a number"]),
    (lambda r: r.update(correct="yes"), ["scored.jsonl:1", "`correct`"]),
    (lambda r: r.update(prompt_id="not-a-prompt"), ["scored.jsonl:1", "names prompt 'not-a-prompt'", "not in this run's prompts"]),
    (lambda r: r.update(source="gpt-9"), ["scored.jsonl:1", "names source 'gpt-9'", "not in the recipe's sources"]),
])
def test_bad_scored_records(tmp_path, tiny_model_dir, edit, words):
    """Records a stage wrote wrong (its manifest agrees with them): the build names the line."""
    from fusechat.runfolder import Outputs, RunFolder

    path = recipe_file(tmp_path, tiny_model_dir)
    for stage in ("prompts", "sample", "score"):
        assert cli(stage, path).exit_code == 0
    folder = RunFolder(tmp_path / "run")
    records, made = folder.records("score", "scored"), folder.manifest("score")
    edit(records[0])
    folder.write("score", Outputs({"scored": records}, made["counts"]), made["config"], made["input_fingerprint"])
    assert_one_line(cli("build", path), *words)


@pytest.mark.parametrize("damage", ["truncated", "emptied", "edited"])
def test_an_output_changed_after_its_stage_finished_is_refused_by_the_next(tmp_path, tiny_model_dir, damage):
    path = recipe_file(tmp_path, tiny_model_dir)
    for stage in ("prompts", "sample"):
        assert cli(stage, path).exit_code == 0
    samples = tmp_path / "run" / "sample" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text({"truncated": "".join(lines[: len(lines) // 2]), "emptied": "",
                        "edited": "".join(lines).replace('"source": "t"', '"source": "u"')}[damage])
    assert_one_line(cli("score", path, "--force"), "samples.jsonl", "changed since stage 'sample' finished", "rerun")
    prompts = tmp_path / "run" / "prompts" / "prompts.jsonl"
    prompts.write_text(prompts.read_text()[:-20])
    assert_one_line(cli("sample", path), "prompts.jsonl", "changed since stage 'prompts' finished")


@pytest.mark.parametrize("edit, words", [
    (lambda r: r.update(prompt_id="not-a-prompt"), ["samples.jsonl:1", "prompt 'not-a-prompt'"]),
    (lambda r: r.update(source="gpt-9"), ["samples.jsonl:1", "source 'gpt-9'"]),
])
def test_samples_naming_an_unknown_prompt_or_source(tmp_path, tiny_model_dir, edit, words):
    from fusechat.runfolder import Outputs, RunFolder

    path = recipe_file(tmp_path, tiny_model_dir)
    for stage in ("prompts", "sample"):
        assert cli(stage, path).exit_code == 0
    folder = RunFolder(tmp_path / "run")
    records, made = folder.records("sample", "samples"), folder.manifest("sample")
    edit(records[0])
    folder.write("sample", Outputs({"samples": records}, made["counts"]), made["config"], made["input_fingerprint"])
    assert_one_line(cli("score", path), *words)


@pytest.mark.parametrize("content, words", [
    ("compute_environment: LOCAL_MACHINE\ndistributed_type: [oops\n", ["bad.yaml", "not a valid accelerate config"]),
    ("compute_environment: LOCAL_MACHINE\ndistributed_type: NOPE\nnum_processes: 2\n", ["bad.yaml", "NOPE"]),
    ("- just\n- a list\n", ["bad.yaml", "not a valid accelerate config"]),
])
def test_doctor_checks_an_accelerate_config_before_a_launch(tmp_path, content, words):
    """`accelerate launch` itself answers a broken config with a traceback before fusechat runs: `fusechat
    doctor --accelerate-config` says what is wrong in one line, and what the config will do when it is right."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    assert_one_line(cli("doctor", "--accelerate-config", bad), *words)
    good = cli("doctor", "--accelerate-config", "recipes/accelerate/ddp.yaml")
    assert good.exit_code == 0 and "MULTI_GPU" in good.output, good.output


# --- the machine refuses: disk full, read-only ------------------------------------------------------------

def small_tmpfs(tmp_path, size):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode:
        pytest.skip("this machine cannot mount a tmpfs")
    return mnt


def test_disk_full(tmp_path, tiny_model_dir):
    mnt = small_tmpfs(tmp_path, "8k")
    try:
        path = recipe_file(tmp_path, tiny_model_dir, run_dir=str(mnt / "run"))
        assert_one_line(cli("prompts", path), "no space left on device", "rerun")
    finally:
        subprocess.run(["umount", str(mnt)])


def test_read_only_run_folder(tmp_path, tiny_model_dir):
    mnt = small_tmpfs(tmp_path, "64m")
    try:
        path = recipe_file(tmp_path, tiny_model_dir, run_dir=str(mnt / "run"))
        assert cli("prompts", path).exit_code == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert_one_line(cli("prompts", path, "--force"), "read-only file system")
        assert_one_line(cli("sample", path), "read-only file system")
    finally:
        subprocess.run(["umount", str(mnt)])

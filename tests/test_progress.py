"""Progress where output is a file: timestamped lines at a steady rate, whether or not the task moved."""

import io
import re
import time


def test_log_progress_prints_a_line_every_interval_and_when_done():
    from fusechat.cli import LineProgress

    out = io.StringIO()
    with LineProgress(every=0.1, out=out) as progress:
        task = progress.add_task("sample", total=40)
        progress.update(task, advance=10)
        time.sleep(0.35)  # a long batch: nothing moves, the lines keep coming
        progress.update(task, advance=30)
    lines = out.getvalue().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d sample: ", line) for line in lines)
    ticks = [line for line in lines if "10/40 (25%)" in line]
    assert len(ticks) >= 2 and "/s, ~" in ticks[-1] and "left" in ticks[-1]  # a rate and the time left
    assert "sample: 40/40 (100%)" in lines[-1] and lines[-1].endswith(", done")


def test_a_redirected_command_gets_lines_not_bars(tmp_path):
    from typer.testing import CliRunner

    from fusechat.cli import LineProgress, progress_bar

    assert isinstance(progress_bar(), LineProgress)  # pytest's output is not a terminal
    from fusechat.cli import app

    result = CliRunner().invoke(app, ["prompts", "cpu-default", "--set", f"run_dir={tmp_path}/run"])
    assert result.exit_code == 0, result.output
    assert re.search(r"prompts done in \d+ s: ", result.output) and "{" not in result.output.split("done in")[1]


def test_sft_steps_reach_the_stages_progress(tmp_path, tiny_model_dir, capsys):
    """SFT (TRL's trainer) reports its optimizer steps like every other stage: log lines, not a tqdm bar,
    and no per-step metric dicts on stdout (the log history keeps them)."""
    from fusechat.cli import LineProgress
    from fusechat.recipe import SFTTrainConfig
    from fusechat.train.common import load_model, load_tokenizer
    from fusechat.train.sft import train_sft

    rows = [{"messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}."}],
             "prompt_id": str(i)} for i in range(6)]
    cfg = SFTTrainConfig(epochs=1, batch_size=2, grad_accum=1, precision="fp32", save_steps=100)
    out = io.StringIO()
    with LineProgress(every=60, out=out) as progress:
        train_sft(load_model(str(tiny_model_dir), cfg), load_tokenizer(str(tiny_model_dir)), rows, cfg, tmp_path, progress)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("sft: 0/3 (0%)") and "sft: 3/3 (100%)" in lines[-1] and lines[-1].endswith(", done")
    assert "'loss'" not in capsys.readouterr().out


def test_eval_answers_move_the_progress_batch_by_batch(tmp_path, tiny_model_dir):
    """The eval stage's progress counts answers as each batch finishes (it moved once a model before)."""
    import yaml

    from fusechat.cli import LineProgress
    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "p", "run_dir": str(tmp_path / "run"),
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "a", "model": str(tiny_model_dir)}], "target": {"model": str(tiny_model_dir)},
        "eval": {"math": {"n": 6}, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"],
                 "batch_size": 2, "max_new_tokens": 2, "dtype": "float32"}}))
    recipe = load_recipe(path)
    run_stage("prompts", recipe)
    out = io.StringIO()
    progress = LineProgress(every=60, out=out)
    calls = []
    real = progress.update
    progress.update = lambda task, **kw: (calls.append(kw.get("advance")), real(task, **kw))
    with progress:
        run_stage("eval", recipe, progress=progress)
    assert calls[:3] == [2, 2, 2]  # three batches of two answers, as they finished
    last = out.getvalue().splitlines()[-1]
    assert "eval: 6/6 (100%)" in last and last.endswith(", done")

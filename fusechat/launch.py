"""sft and dpo under `accelerate launch`, started by fusechat itself when the recipe or the machine asks.

A user with eight GPUs runs `fusechat run RECIPE` and gets eight training processes: the training stages
start `python -m accelerate.commands.launch --config_file CONFIG -m fusechat STAGE RECIPE` (the recipe as
resolved, `--set` overrides included) and wait for it; inside, the stage runs in every process and the main
one writes the run folder. The configs are accelerate's own files (`recipes/accelerate/*.yaml`), so a
user's edited copy works unchanged. Several machines need one launch per node from the scheduler, which
fusechat cannot start; the message says the command.

Why not torchrun or our own process group: accelerate is what the trainers (TRL's SFTTrainer, the DPO
loop) are written against, and its config files are what users already keep for FSDP and DeepSpeed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from fusechat import FusechatError, hardware
from fusechat.modelfacts import model_arch, training_fit
from fusechat.recipe import Recipe, builtin_recipe, read_yaml_mapping
from fusechat.runfolder import write_atomic

SHIPPED = ("ddp", "fsdp", "deepspeed-zero3")


def inside_launch() -> bool:
    """True in a process that `accelerate launch` (or torchrun) started: it trains, it does not launch."""
    return any(name in os.environ for name in ("WORLD_SIZE", "LOCAL_RANK", "ACCELERATE_MIXED_PRECISION"))


def config_path(name: str) -> Path:
    if name in SHIPPED:
        return builtin_recipe(f"accelerate/{name}")
    path = Path(name).expanduser()
    if not path.is_file():
        raise FusechatError(f"launch.accelerate_config: {name} is neither a file nor a shipped config ({', '.join(SHIPPED)})")
    return path


def default_config(recipe: Recipe, gpus: int, gpu_gb: float) -> str:
    """fsdp when one GPU cannot hold full fine-tuning (~16 bytes a parameter), ddp otherwise (and for LoRA)."""
    lora = recipe.sft.lora is not None and recipe.dpo.lora is not None
    if lora:
        return "ddp"
    arch = model_arch(recipe.target.model)
    return "ddp" if arch is not None and training_fit(arch, 1, gpu_gb, False).ok else "fsdp"


def chosen_config(recipe: Recipe, gpus: int, gpu_gb: float) -> str | None:
    """The accelerate config (a shipped name or a file) sft and dpo run under on `gpus` GPUs of `gpu_gb` GB,
    None for one process; also what `fusechat plan` assumes for a machine it is not on."""
    name = recipe.launch.accelerate_config
    if name == "none":
        return None
    if name is None:
        if gpus < 2 or recipe.target is None:
            return None
        name = default_config(recipe, gpus, gpu_gb)
    return name


def plan(recipe: Recipe) -> tuple[Path, int] | None:
    """The accelerate config and process count sft and dpo run under, or None for this process alone."""
    if inside_launch():
        return None
    gpus, gpu_gb = hardware.gpus()
    name = chosen_config(recipe, gpus, gpu_gb)
    if name is None:
        return None
    path = config_path(name)
    config = read_yaml_mapping(path, "accelerate config")
    machines = int(config.get("num_machines") or 1)
    if machines > 1:
        raise FusechatError(
            f"{path}: num_machines {machines}: fusechat launches on this machine only; on each node run "
            f"`accelerate launch --config_file {path} --machine_rank RANK --main_process_ip HOST -m fusechat sft RECIPE`")
    processes = recipe.launch.processes or gpus or min(int(config.get("num_processes") or 1), hardware.usable_cores())
    return path, processes


def free_port() -> int:
    with socket.socket() as s:  # accelerate's default 29500 collides with any other launch on the machine
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(stage: str, recipe: Recipe, recipe_file: Path, config: Path, processes: int, force: bool) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
              "--num_processes", str(processes), "--num_machines", "1", "--main_process_port", str(free_port())]
    if read_yaml_mapping(config, "accelerate config").get("distributed_type") == "DEEPSPEED":
        # DeepSpeed keeps its weights in the launch's precision and refuses a trainer that says otherwise:
        # the recipe's precision decides (the other configs leave it to the stage's own autocast)
        bf16 = getattr(recipe, stage).bf16()
        launch += ["--mixed_precision", "bf16" if bf16 else "no"]
    return launch + ["-m", "fusechat", stage, str(recipe_file), *(["--force"] if force else [])]


def launch(stage: str, recipe: Recipe, config: Path, processes: int, force: bool, progress=None) -> None:
    """Run `stage` in `processes` processes under `config` and wait; its messages go to this terminal."""
    run_path = recipe.run_path
    run_path.mkdir(parents=True, exist_ok=True)
    recipe_file = run_path / f".launch-{stage}.yaml"  # the recipe as resolved: `--set` overrides travel with it
    write_atomic(recipe_file, yaml.safe_dump(recipe.model_dump(mode="json", exclude_unset=True), sort_keys=False))
    env = dict(os.environ)
    if not hardware.has_gpu():  # CPU processes share the cores instead of each taking them all
        env["OMP_NUM_THREADS"] = str(max(1, hardware.usable_cores() // processes))
    if progress is not None:
        progress.stop()  # the launched processes draw their own bars on this terminal
    try:
        code = subprocess.run(command(stage, recipe, recipe_file, config, processes, force), env=env).returncode
    finally:
        if progress is not None:
            progress.start()
    if code:
        raise FusechatError(f"{stage} under accelerate launch ({config.name}, {processes} processes) stopped with exit "
                            f"code {code} (its messages are above); rerun to go on from the last checkpoint")

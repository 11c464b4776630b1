"""The recipe: one YAML file that describes a whole run, validated on load.

Every section below mirrors a stage; each field's comment says what it does. Unknown keys and
bad values are reported by their path in the YAML (`sources.1.sampling.top_p: ...`).

What each stage's result depends on is written here too, next to the fields: `*_settings`
functions at the end project the recipe onto the part a stage reads (the run folder hashes that
projection to decide what is current), and fields that change only speed are marked `SpeedOnly`
and left out of every projection, so changing one reruns nothing.
"""

from __future__ import annotations

import importlib.util
import re
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fusechat import FusechatError
from fusechat.catalog import CATALOG
from fusechat.hardware import has_bf16, has_gpu
from fusechat.readers import files_digest
from fusechat.records import DOMAINS

Domain = Literal[DOMAINS]  # records.DOMAINS, the one list of domains


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def SpeedOnly(default=None, **kwargs):  # noqa: N802 - used like pydantic's Field
    """A field that changes how fast a stage runs, never what it writes: no stage hashes it."""
    return Field(default, json_schema_extra={"speed_only": True}, **kwargs)


class PromptSet(Strict):
    """One source of prompts: a built-in pack, a file (JSONL, Parquet or HF dataset folder) or a dataset."""

    domain: Domain
    pack: Literal["reasoning-gym", "code-functions", "sharegpt", "constraints"] | None = None
    path: str | None = None
    dataset: str | None = Field(None, description="a hub dataset id or a local folder, read with datasets.load_dataset")
    subset: str | None = Field(None, description="dataset: its configuration name, if it has several")
    split: str | None = Field(None, description="dataset: the split to read (default train)")
    columns: dict[Literal["prompt", "answer", "tests", "entry_point", "id"], str] | None = Field(
        None, description="dataset: our field -> its column, e.g. {prompt: problem, answer: expected_answer}")
    where: dict[str, object] | None = Field(None, description=(
        "dataset: keep rows whose column equals the value (or is one of a list of values)"))
    n: int | None = Field(None, gt=0, description=(
        "take this many (seeded choice), after duplicates and filtered prompts are set aside; all when unset"))
    drop_math_and_code: bool = Field(False, description=(
        "instruction sets: set aside prompts that look like math or code (the paper removed them from its "
        "instruction sets; see packs.looks_like_math_or_code for the pattern)"))
    task: str | None = Field(None, description="reasoning-gym generator, e.g. basic_arithmetic")
    options: dict = Field(default_factory=dict, description="pack options, e.g. reasoning-gym difficulty")
    seed: int = 0

    @model_validator(mode="after")
    def _one_origin(self):
        if sum(x is not None for x in (self.pack, self.path, self.dataset)) != 1:
            raise ValueError("give exactly one of `pack`, `path` or `dataset`")
        if self.dataset is None and (self.columns or self.where or self.subset or self.split):
            raise ValueError("`columns`, `where`, `subset` and `split` go with `dataset`")
        if self.pack == "reasoning-gym" and not self.task:
            raise ValueError("the reasoning-gym pack needs `task` (e.g. basic_arithmetic)")
        if self.drop_math_and_code and self.domain != "instruction":
            raise ValueError("`drop_math_and_code` is for instruction sets")
        if self.pack == "constraints" and self.domain != "instruction":
            raise ValueError("the constraints pack is instruction prompts: set domain: instruction")
        return self


class PromptsConfig(Strict):
    sets: list[PromptSet] = Field(min_length=1)
    sft_fraction: float = Field(0.4, ge=0, le=1, description="instruction prompts for SFT (rest: DPO)")
    split_seed: int = 0
    max_prompt_chars: int = Field(6000, gt=0, description="longer prompts are dropped and counted")


class Sampling(Strict):
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(2048, gt=0)


DEFAULT_SAMPLES = {"instruction": 5, "math": 8, "code": 8, "chinese": 1}


def default_backend(model: str) -> str:
    """The fastest backend measured for this kind of machine (BENCHMARKS.md, benchmarks/sampling.py):
    vLLM on a GPU when installed, else transformers there; on a CPU llama.cpp, which needs a GGUF (a
    catalog model or a .gguf file; `fusechat export` makes one), else transformers."""
    if has_gpu():
        return "vllm" if importlib.util.find_spec("vllm") else "transformers"
    return "llamacpp" if model in CATALOG or model.endswith(".gguf") else "transformers"


def default_batch_size(backend: str) -> int:
    """Measured best: llama.cpp 8 slots on CPU; transformers batch 64 on a CPU, 256 on a GPU."""
    if backend == "transformers":
        return 256 if has_gpu() else 64
    return {"llamacpp": 8, "openai": 32, "vllm": 256, "dataset": 64}[backend]


class Responses(Strict):
    """Where a `backend: dataset` source's responses are: a JSONL/Parquet file, a local folder or a hub id."""

    dataset: str
    subset: str | None = None
    split: str | None = Field(None, description="default train")
    columns: dict[Literal["prompt", "response"], str] | None = Field(
        None, description="our field -> its column, e.g. {prompt: problem, response: generated_solution}")


class Source(Strict):
    """A source model: what it is, how to run it, how it samples."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    model: str = Field(description="catalog name, HF folder, .gguf file or hub id")
    backend: Literal["auto", "transformers", "llamacpp", "openai", "vllm", "dataset"] = Field(
        "auto", description="auto: the fastest measured for this machine (see default_backend); dataset: the "
        "responses come from `responses` instead of a model")
    responses: Responses | None = Field(None, description="dataset: the file or dataset holding the responses")
    endpoint: str | list[str] | None = Field(None, description=(
        "openai: the server's base URL, e.g. http://localhost:8000/v1, or a list of replicas serving the same "
        "model (requests are spread over them; a failing one's requests go to the others)"))
    api_key_env: str | None = Field(None, description="openai: environment variable holding the API key")
    request_timeout_s: float | None = SpeedOnly(gt=0, description="openai: seconds before a request is retried (300)")
    max_retries: int | None = SpeedOnly(ge=0, description="openai: retries of a 429/5xx/timeout/dropped request (8)")
    tensor_parallel_size: int | None = Field(None, gt=0, description=(
        "vllm: GPUs one model is split over; unset: the fewest that hold it (from its config.json)"))
    replicas: int | None = SpeedOnly(gt=0, description=(
        "vllm: engines serving this source, each in its own process on tensor_parallel_size GPUs, prompts shared "
        "out among them (data parallel). Unset: as many as the GPUs hold; one on a CPU"))
    chat_template: str | None = Field(None, description="Jinja template (inline or a file) overriding the model's")
    sampling: Sampling = Field(default_factory=Sampling)
    samples_per_prompt: dict[Domain, int] = Field(default_factory=lambda: dict(DEFAULT_SAMPLES))
    domains: list[Domain] | None = Field(None, description="domains this source answers; all when unset")
    batch_size: int | None = Field(None, gt=0, description="transformers: sequences per batch; llama.cpp: parallel "
                                   "slots; openai: requests in flight; vllm: unused; default: the fastest measured")
    threads: int | None = SpeedOnly(gt=0, description="CPU threads; all cores when unset")
    in_flight: int | None = SpeedOnly(gt=0, description=(
        "requests handed to the backend in one call, several shards together (shards stay the unit of resume). "
        "Unset: 4096 for vllm, whose scheduler needs thousands of sequences to keep a GPU busy; one shard otherwise"))
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"

    @model_validator(mode="after")
    def _machine_defaults(self):
        if self.backend == "openai" and not self.endpoint:
            raise ValueError(f"source '{self.name}': backend openai needs endpoint (the server's base URL)")
        if self.backend == "dataset" and self.responses is None:
            raise ValueError(f"source '{self.name}': backend dataset needs `responses` (the file or dataset holding them)")
        if self.backend != "dataset" and self.responses is not None:
            raise ValueError(f"source '{self.name}' has `responses`, so its backend is dataset, not {self.backend} "
                             f"(a `sources.*.backend=...` override reaches it too: set the sampled sources by index)")
        if self.backend == "auto":
            self.backend = default_backend(self.model)
        if self.batch_size is None:
            self.batch_size = default_batch_size(self.backend)
        return self

    def samples_for(self, domain: str) -> int:
        if self.domains is not None and domain not in self.domains:
            return 0
        return self.samples_per_prompt.get(domain, DEFAULT_SAMPLES[domain])


class RewardConfig(Strict):
    """How responses get their reward r(y)."""

    kind: Literal["reward-model", "judge", "none"] = "none"
    model: str | None = None
    backend: Literal["transformers", "llamacpp", "vllm"] = "llamacpp"  # judge only
    endpoint: str | list[str] | None = Field(None, description=(
        "reward-model: score on a served model instead of loading it here: the base URL of `vllm serve MODEL "
        "--runner pooling` (or a list of replicas); `model` is then the name the server knows it by"))
    api_key_env: str | None = Field(None, description="reward-model endpoint: environment variable holding the API key")
    trust_remote_code: bool = False  # reward-model: remote-code classifiers need it (ArmoRM loads natively, without)
    batch_size: int = Field(8, gt=0, description=(
        "reward-model: sequences per batch, or requests in flight to an endpoint (a judge grades one at a time)"))
    max_length: int = Field(2048, gt=0, description="reward-model: longer conversations lose prompt tokens from the left")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description=(
        "reward-model: auto = bf16 where the device has bf16 units (every GPU since Ampere), else fp32"))
    domains: list[Domain] = Field(default_factory=lambda: ["instruction", "math", "code"])
    only_correct: bool = Field(False, description=(
        "score only responses that passed their check (or have none): a wrong answer can only be rejected, so "
        "its reward matters only to the gap window. Saves judge time; such pairs go by correctness alone"))
    only_ranked: bool = Field(False, description=(
        "score only responses whose reward can change what the build picks: finished (not cut at "
        "max_new_tokens), not failed (implies only_correct), and sharing their prompt with another such "
        "response (a lone candidate needs no ranking). Halved the judge's work on the CPU study"))

    @model_validator(mode="after")
    def _model_needed(self):
        if self.kind != "none" and not self.model:
            raise ValueError(f"reward kind '{self.kind}' needs `model`")
        if self.endpoint and self.kind != "reward-model":
            raise ValueError(f"score.reward.endpoint is for kind reward-model (a served classifier), not {self.kind}")
        return self


class SandboxConfig(Strict):
    timeout_s: float = Field(10, gt=0)
    memory_mb: int = Field(1024, gt=0, description="memory of each process, and of all the run's processes together")
    max_output_bytes: int = Field(1_000_000, gt=0, description="cap on stdout, stderr and any one file")
    disk_mb: int = Field(64, gt=0, description="all files the code writes, together (a tmpfs of this size)")
    max_procs: int = Field(16, gt=0, description="processes and threads the code may have at once")
    max_files: int = Field(10_000, gt=0, description="files and folders the code may create (each costs kernel memory)")
    allow_unisolated: bool = Field(False, description=(
        "where the machine cannot isolate code (no bubblewrap or user namespaces): run it with only resource "
        "limits and your user's rights instead of stopping. Loudly logged; never on shared machines"))


class ScoreConfig(Strict):
    reward: RewardConfig = Field(default_factory=RewardConfig)
    math_timeout_s: float = Field(10, gt=0)
    code: SandboxConfig = Field(default_factory=SandboxConfig)
    workers: int = SpeedOnly(2, gt=0, description="parallel sandbox runs")


class BuildConfig(Strict):
    """method.md §4, with its open choices and the ablation modes as options."""

    pairing: Literal["same-source", "cross-source"] = "same-source"
    gap_window: tuple[float, float] | None = Field((0.01, 0.1), description="null: no window (ablation)")

    @field_validator("gap_window")
    @classmethod
    def _ordered_window(cls, window):
        if window is not None and window[0] > window[1]:
            raise ValueError(f"[{window[0]}, {window[1]}] is reversed: write [low, high]")
        return window
    window_domains: list[Domain] = Field(
        default_factory=lambda: ["instruction", "math", "code"],
        description="domains where the window applies (code is open in the paper; default yes)",
    )
    sources: list[str] | None = Field(None, description="use only these sources (single-source ablation)")
    exclude_sources: list[str] = Field(default_factory=list, description="leave-one-source-out")
    drop_truncated: bool = Field(True, description="responses cut at max_new_tokens never become chosen/SFT")
    tie_break: list[str] | None = Field(None, description="source order that breaks reward ties (default: the recipe's order)")
    source_logps: bool | None = Field(None, description=(
        "store each source's summed and per-token log-probs of every pair's chosen and rejected answer "
        "(its own tokenizer and template, cut to dpo.max_length; for WRPO/InfiFPO-style objectives; "
        "`export-data --format infifpo`). Loads every source once more. Unset: off"))
    instruction_split: Literal["prompts", "pairs"] = Field("prompts", description=(
        "open instruction prompts. prompts: the prompts stage's seeded SFT/DPO split (prompts.sft_fraction); a DPO "
        "prompt with no pair in the window is dropped. pairs: split after pairing, the paper's counts: DPO takes "
        "prompts with a valid pair, up to 1 - sft_fraction of them (seeded), SFT every other prompt"))


class LoraConfig(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class TrainConfig(Strict):
    """Hyperparameters shared by SFT and DPO (global batch = batch_size x grad_accum x processes)."""

    epochs: float = Field(3, gt=0)
    learning_rate: float = Field(5e-6, gt=0)
    batch_size: int = Field(8, gt=0, description="examples (SFT) or pairs (DPO) per process and forward pass")
    grad_accum: int = Field(16, gt=0, description="batches per optimizer step; derived when global_batch_size is set")
    global_batch_size: int | None = Field(None, gt=0, description=(
        "examples or pairs per optimizer step over all processes (the paper: 128); grad_accum is then "
        "global_batch_size / (batch_size x processes), and a combination that does not divide is an error"))
    max_length: int = Field(2048, gt=0)
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where the CPU/GPU has bf16 units")
    lora: LoraConfig | None = Field(None, description="train a LoRA adapter (merged into the saved model)")
    save_steps: int = Field(100, gt=0, description="checkpoint every K optimizer steps (resume points)")
    seed: int = 0
    threads: int | None = SpeedOnly(gt=0, description="CPU threads; all cores when unset")
    activation_checkpointing: bool | None = SpeedOnly(
        description="recompute each layer's activations in the backward pass: much less memory for "
        "about a third more compute (large targets); unset: off")
    length_grouping: bool | None = Field(
        None, description="batches of examples of similar length (less padding; padded SFT batches and DPO); unset: on")
    # Where the logs go never changes the model: not hashed (like the speed settings).
    report_to: list[Literal["tensorboard", "wandb", "trackio", "mlflow", "comet_ml"]] = Field(
        default_factory=list, json_schema_extra={"speed_only": True}, description=(
            "experiment trackers for the training curves, as transformers names them; TensorBoard files go "
            "to run/STAGE/tracking/ (`tensorboard --logdir runs/NAME`). The run's log.jsonl is always written"))


    def bf16(self) -> bool:
        """bf16 autocast over fp32 weights: asked for, or `auto` on a device with bf16 units."""
        return self.precision == "bf16" or self.precision == "auto" and has_bf16()

    def accumulation(self, processes: int, where: str) -> int:
        """Gradient accumulation steps for `processes` processes (`where`: the recipe section, for errors)."""
        if self.global_batch_size is None:
            return self.grad_accum
        per_step = self.batch_size * processes
        accum, rest = divmod(self.global_batch_size, per_step)
        if rest or not accum:
            raise FusechatError(
                f"{where}.global_batch_size {self.global_batch_size} is not a multiple of batch_size "
                f"{self.batch_size} x {processes} process(es) = {per_step}; change one of them")
        if "grad_accum" in self.model_fields_set and self.grad_accum != accum:
            raise FusechatError(
                f"{where}: grad_accum {self.grad_accum} contradicts global_batch_size {self.global_batch_size} "
                f"= batch_size {self.batch_size} x {processes} process(es) x {accum}; drop grad_accum")
        return accum


class SFTTrainConfig(TrainConfig):
    """method.md §5: 3 epochs, lr 5e-6 (Llama) / 2e-6 (Qwen, Gemma), loss on assistant tokens only."""

    padding_free: bool | None = SpeedOnly(
        description="pack each batch into one row without padding (the attention mask keeps the examples "
        "apart; same loss and gradients); unset: on. Off pads each batch to its longest example")
    torch_compile: bool | None = SpeedOnly(description="torch.compile the model (slower on short CPU runs); unset: off")


class DPOTrainConfig(TrainConfig):
    """method.md §5: 1 epoch; LN-DPO beta 10 (Llama) or DPO beta 0.01 (Qwen, Gemma)."""

    epochs: float = Field(1, gt=0)
    learning_rate: float = Field(8e-7, gt=0)
    loss: Literal["dpo", "ln-dpo", "ipo", "simpo"] = Field("ln-dpo", description=(
        "dpo: summed log-ratios (TRL's sigmoid); ln-dpo: per-token log-ratios (sigmoid_norm); ipo: squared "
        "per-token margin against 1/(2 beta) (ipo); simpo: no reference model, per-token log-probs and a "
        "margin `simpo_gamma` (TRL CPO's simpo)"))
    beta: float = Field(10.0, gt=0)
    # The three below default to None (= off / TRL's default), so a run finished before they existed stays current.
    sft_weight: float | None = Field(None, ge=0, description=(
        "add this times the chosen answer's negative log-likelihood per token to the preference loss (RPO; "
        "TRL's loss_type [..., 'sft']); keeps DPO from unlearning what SFT taught. Unset or 0: the preference loss alone"))
    label_smoothing: float | None = Field(None, ge=0, lt=0.5, description=(
        "cDPO: the share of pairs assumed mislabelled (dpo, ln-dpo and simpo); unset: none"))
    simpo_gamma: float | None = Field(None, ge=0, description="simpo's target margin (TRL's simpo_gamma); unset: 0.5")

    @model_validator(mode="after")
    def _smoothing_with_a_sigmoid_loss(self):
        if self.label_smoothing and self.loss == "ipo":
            raise ValueError("label_smoothing applies to the sigmoid losses (dpo, ln-dpo, simpo), not ipo")
        return self

    eval_fraction: float = Field(0.1, ge=0, lt=1, description="held-out pairs for preference accuracy")
    max_tokens_per_forward: int | None = SpeedOnly(
        gt=0, description="split each batch into forward passes of at most this many (padded) tokens; "
        "same gradients, less memory. Unset: 1024 on a CPU, 8192 on a GPU")
    completion_only_logits: bool | None = SpeedOnly(
        description="compute logits for the completion positions only (same loss, less time and memory); unset: on")


class LaunchConfig(Strict):
    """How sft and dpo use the machine's devices. Not hashed: with `global_batch_size` set, the number of
    processes changes the speed, not the maths (tests/test_distributed.py compares the weights)."""

    accelerate_config: str | None = Field(None, description=(
        "an accelerate config file, or a shipped one by name (ddp, fsdp, deepspeed-zero3): `fusechat run`, "
        "`sft` and `dpo` then start `accelerate launch` themselves. Unset: on a machine with several GPUs, "
        "fsdp for full fine-tuning that one GPU cannot hold and ddp otherwise; one process on one GPU or a "
        "CPU. `none`: always one process"))
    processes: int | None = Field(None, gt=0, description=(
        "processes to launch; unset: one per GPU (the config's num_processes, at most the cores, on a CPU)"))


class TargetConfig(Strict):
    model: str = Field(description="the small model to fuse into: catalog name, HF folder, .gguf or hub id")


class MathEval(Strict):
    """Held-out reasoning-gym problems: a seed no training prompt set uses."""

    task: str | None = Field(None, description="default: the task of the recipe's first reasoning-gym math set")
    options: dict | None = Field(None, description="default: that set's options")
    n: int = Field(100, gt=0)
    seed: int = 1_000_003
    max_new_tokens: int | None = Field(None, gt=0, description="default: eval.max_new_tokens (math answers are short)")


class JudgedSet(Strict):
    """AlpacaEval 2 or Arena-Hard questions; every model's answers are written in that tool's format."""

    format: Literal["alpaca_eval", "arena_hard"]
    questions: str = Field(description=(
        "AlpacaEval's alpaca_eval.json or Arena-Hard's question.jsonl (v0.1 or v2): a file (local or "
        "hf://datasets/...), a folder or a dataset id"))
    split: str = Field("train", description="the split, for a dataset id")
    n: int | None = Field(None, gt=0, description="the first n questions only (a quick look)")
    baseline: str | None = Field(None, description=(
        "the benchmark's own baseline answers, as its tool ships them (AlpacaEval 2: the GPT-4-Turbo reference "
        "outputs JSON; Arena-Hard v0.1: gpt-4-0314's model_answer JSONL): every model, the base too, is judged "
        "against them as the published numbers are. Unset: against eval.judged_baseline, a model of this run"))


class PairwiseJudge(Strict):
    """An OpenAI-compatible endpoint that judges each model against the baseline (fusechat.benchmarks.judged)."""

    endpoint: str | list[str] = Field(description="the server's base URL (or replicas), e.g. http://localhost:8000/v1")
    model: str = Field(description="the judge's model name at that endpoint; it labels every judged score")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    concurrency: int = SpeedOnly(8, gt=0, description="requests in flight")


class MTBenchGraded(Strict):
    """MT-Bench as published: both turns, graded 1-10 by a judge endpoint with FastChat's prompts
    (fusechat.benchmarks.mtbench_graded)."""

    n: int = Field(80, gt=0, le=80, description="the first n of the 80 questions")
    judge: PairwiseJudge = Field(description="the judge: any OpenAI-compatible endpoint; its name labels the score")


class AlignBenchConfig(Strict):
    """AlignBench v1.1: every answer graded 1-10 by a judge endpoint with AlignBench's rubric
    (fusechat.benchmarks.alignbench)."""

    n: int | None = Field(None, gt=0, le=683, description="the first n of the 683 questions; unset: all")
    judge: PairwiseJudge = Field(description="the judge: any OpenAI-compatible endpoint; its name labels the score")
    data: str = Field("github", description=(
        "a clone of THUDM/AlignBench (its data/ and config/ files); github: those files at a pinned commit, "
        "downloaded once"))


class LiveBenchConfig(Strict):
    """LiveBench with its ground-truth scorers (fusechat.benchmarks.livebench): the tasks fusechat scores."""

    release: Literal["2024-06-24", "2024-07-26", "2024-08-31"] = Field(
        "2024-08-31", description="the questions of this release (the paper's: 2024-08-31)")
    n: int | None = Field(None, gt=0, description="the first n questions of each task; unset: all")
    categories: list[Literal["math", "reasoning", "coding", "language", "data_analysis", "instruction_following"]] = Field(
        default_factory=lambda: ["math", "reasoning", "coding", "language", "data_analysis", "instruction_following"])
    data: dict[str, str] | None = Field(None, description=(
        "category -> where its rows live (a hub id, a folder or a file in the hub set's layout); unset: livebench/<category>"))

    @field_validator("release", mode="before")
    @classmethod
    def _iso(cls, value):  # YAML reads 2024-08-31 as a date
        return value.isoformat() if hasattr(value, "isoformat") else value


class LiveCodeBenchConfig(Strict):
    """LiveCodeBench code generation in the sandbox (fusechat.benchmarks.livecodebench)."""

    n: int | None = Field(None, gt=0, description="the first n problems of the window; unset: all of them")
    data: list[str] = Field(default_factory=lambda: [
        f"hf://datasets/livecodebench/code_generation_lite/test{i}.jsonl" for i in ("", 2, 3, 4, 5, 6)],
        description="code_generation_lite's JSONL files (hub or local), read in order")
    start: str = Field("2024-07-01", description="first contest date (the paper's window: 2024-07 to 2024-11)")
    end: str = Field("2024-11-30", description="last contest date")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, value):  # YAML reads 2024-07-01 as a date
        return value.isoformat() if hasattr(value, "isoformat") else value


class EvalConfig(Strict):
    math: MathEval | None = Field(default_factory=MathEval)
    humaneval: int | None = Field(164, ge=0, description="HumanEval problems (pass@1); 0 skips")
    mtbench: int | None = Field(80, ge=0, description="MT-Bench first-turn questions judged against the base; 0 skips")
    humaneval_plus: int | None = Field(None, ge=0, description="HumanEval+ problems (EvalPlus's tests, sandboxed); unset skips")
    mbpp_plus: int | None = Field(None, ge=0, description="MBPP+ problems (EvalPlus's tests, sandboxed); unset skips")
    evalplus_data: dict[Literal["humaneval_plus", "mbpp_plus"], str] | None = Field(None, description=(
        "where the EvalPlus rows come from: a hub id, a folder or a file in the hub set's layout; unset: "
        "evalplus/humanevalplus and evalplus/mbppplus (unset, so a run finished before this field stays current)"))
    livecodebench: LiveCodeBenchConfig | None = Field(None, description="LiveCodeBench, sandboxed; unset skips")
    mtbench_graded: MTBenchGraded | None = Field(None, description=(
        "MT-Bench under the paper's protocol: two turns, 1-10 grades from a judge endpoint"))
    alignbench: AlignBenchConfig | None = Field(None, description="AlignBench v1.1, 1-10 grades from a judge endpoint")
    livebench: LiveBenchConfig | None = Field(None, description="LiveBench with its ground-truth scorers; unset skips")
    constraints: int | None = Field(44, ge=0, description="writing tasks with one verifiable constraint each; 0 skips")
    judge: str | None = Field(None, description="local judge for MT-Bench; default: score.reward.model")
    judge_backend: Literal["transformers", "llamacpp", "vllm"] = Field(
        "llamacpp", description="vllm: a judge too large for one GPU, split over the GPUs that hold it")
    max_new_tokens: int = Field(512, gt=0)
    backend: Literal["transformers", "vllm"] | None = Field(None, description=(
        "what answers the benchmarks: vllm on GPUs (the paper recipes), in its own processes like a source; greedy "
        "either way. Unset: transformers"))
    batch_size: int = SpeedOnly(32, gt=0, description="sequences per generation batch")
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    extra_models: dict[str, str] = Field(default_factory=dict, description="name -> HF folder, evaluated too")
    models: list[Literal["base", "sft", "sft+dpo"]] = Field(
        default_factory=lambda: ["base", "sft", "sft+dpo"], description="which of the run's models to evaluate")
    harness: list[str] = Field(default_factory=list, description=(
        "lm-evaluation-harness task names run on every model (e.g. gsm8k, ifeval, mmlu_pro); their scores "
        "join the eval table with lm-eval's standard errors"))
    harness_limit: int | None = Field(None, gt=0, description="lm-eval: at most this many items a task (a quick look)")
    harness_include: str | None = Field(None, description="lm-eval: a folder of your own task YAMLs (its include_path)")
    harness_chat_template: bool = Field(True, description="lm-eval: prompts in the model's chat template (instruct models)")
    judged: list[JudgedSet] = Field(default_factory=list, description=(
        "AlpacaEval 2 / Arena-Hard questions: answers written in the official tools' formats (run/eval/alpaca_eval, "
        "run/eval/arena_hard), and judged against the baseline when pairwise_judge is set"))
    pairwise_judge: PairwiseJudge | None = None
    judged_baseline: str = Field("base", description="the model every other is judged against")

    @field_validator("judged")
    @classmethod
    def _one_set_per_format(cls, sets: list[JudgedSet]) -> list[JudgedSet]:
        formats = [s.format for s in sets]
        if len(set(formats)) != len(formats):
            raise ValueError(f"one question set per format, got {formats}")
        return sets

    @field_validator("extra_models")
    @classmethod
    def _plain_model_names(cls, extra: dict[str, str]) -> dict[str, str]:
        for name in extra:  # a name becomes a file name (eval shards, the judged-answer files)
            plain_name(name)
            if name in ("base", "sft", "sft+dpo"):
                raise ValueError(f"'{name}' is one of the run's own models; give the extra model another name")
        return extra

    @field_validator("harness")
    @classmethod
    def _sandboxed_code_only(cls, tasks: list[str]) -> list[str]:
        for task in tasks:  # lm-eval runs these tasks' model-written code in its own process, uncaged
            if task.split("_")[0] in ("humaneval", "mbpp"):
                raise ValueError(f"'{task}' runs model-written code outside the sandbox; eval.humaneval is the sandboxed one")
        return tasks


def plain_name(name: str) -> str:
    """A name that becomes a folder name: one path component, nothing that walks out of `runs/`."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", name) or ".." in name:
        raise ValueError(f"'{name}': use letters, digits and _ . + - (it names a folder)")
    return name


def safe_folder(run_dir: str) -> str:
    """A folder template where only a plain `{name}` is substituted: no lookups, no format specs, no '..'."""
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(run_dir) if f is not None]
    except ValueError as e:
        raise ValueError(f"'{run_dir}': {e} (only {{name}} is replaced; write {{{{ for a brace)") from None
    for f, spec, conv in fields:
        if f != "name" or spec or conv:
            raise ValueError(f"'{run_dir}': only {{name}} may be replaced, not {{{f}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}")
    if ".." in Path(run_dir).parts:
        raise ValueError(f"'{run_dir}': '..' is not allowed in the run folder")
    return run_dir


class DataImport(Strict):
    """Start at build from SFT/DPO sets made elsewhere (fusechat.import_data): no prompts, sampling or scoring."""

    sft: str | None = Field(None, description="SFT set: a hub id (FuseAI/FuseChat-3.0-SFT-Data), a local folder or file")
    dpo: str | None = Field(None, description="DPO set: a hub id (FuseAI/FuseChat-3.0-DPO-Data), a local folder or file")
    split: str = "train"
    limit: int | None = Field(None, gt=0, description="the first rows of each set only")
    domain_column: str | None = Field(None, description="a column naming each row's domain (else: instruction)")
    domains: dict[str, Domain] = Field(default_factory=dict, description="that column's values -> our domains")

    @model_validator(mode="after")
    def _some_data(self):
        if not self.sft and not self.dpo:
            raise ValueError("data needs `sft`, `dpo` or both")
        return self


class Recipe(Strict):
    name: str = "fusechat"
    run_dir: str = Field("runs/{name}", description="'{name}' is replaced by the recipe's name")
    seed: int = Field(0, description="base of every sample's seed")
    shard_size: int = Field(16, gt=0, description="prompts per resumable unit of sampling (a kill loses at most one)")
    prompts: PromptsConfig | None = None
    sources: list[Source] = Field(default_factory=list)
    data: DataImport | None = Field(None, description=(
        "start at build from SFT/DPO sets made elsewhere (FuseChat-3.0's released data); no prompts or sources then"))
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    target: TargetConfig | None = None
    sft: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
    dpo: DPOTrainConfig = Field(default_factory=DPOTrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)

    @model_validator(mode="after")
    def _unique_sources(self):
        if self.data is not None and (self.prompts is not None or self.sources):
            raise ValueError("a recipe with `data` starts at build: it has no `prompts` or `sources`")
        if self.data is None and self.prompts is None:
            raise ValueError("prompts: required (or `data`, to start at build from SFT/DPO sets)")
        if self.data is None and not self.sources:
            raise ValueError("sources: list at least one source model")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        math_eval = self.eval.math
        if math_eval is not None:
            train_seeds = {p.seed for p in self.prompts.sets if p.pack == "reasoning-gym"} if self.prompts else set()
            if math_eval.seed in train_seeds:
                raise ValueError(f"eval.math.seed {math_eval.seed} is also a training prompt seed; held-out means unseen")
        for name in (self.build.sources or []) + self.build.exclude_sources + (self.build.tie_break or []):
            if name not in names:
                raise ValueError(f"build refers to unknown source '{name}' (sources: {names})")
        if self.score.reward.only_ranked and not self.build.drop_truncated:
            raise ValueError("score.reward.only_ranked leaves responses cut at max_new_tokens unscored, but "
                             "build.drop_truncated: false would use them; change one of the two")
        if self.eval.mtbench and "base" not in self.eval.models:
            raise ValueError("eval.mtbench is a win rate against the base target: keep 'base' in eval.models or set eval.mtbench: 0")
        if self.eval.judged and self.eval.pairwise_judge and self.eval.judged_baseline not in [
                *self.eval.models, *self.eval.extra_models]:
            raise ValueError(f"eval.judged_baseline '{self.eval.judged_baseline}' is not a model this run evaluates "
                             f"(eval.models, eval.extra_models)")
        if self.build.tie_break is not None and sorted(self.build.tie_break) != sorted(names):
            raise ValueError(f"build.tie_break must list every source once: {names}")
        return self

    _plain_name = field_validator("name")(lambda name: plain_name(name))
    _safe_run_dir = field_validator("run_dir")(lambda run_dir: safe_folder(run_dir))

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir.format(name=self.name))


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, second: int):
        super().__init__(f"key {key!r} appears twice (lines {first} and {second})")
        self.key, self.first, self.second = key, first, second


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping: PyYAML keeps the last one silently,
    which once dropped the paper recipes' dataset blocks without a word."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may override on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: construct_mapping below says so
                pass
        return super().construct_mapping(node, deep)


def strict_yaml(text: str):
    """Safe (a tag like !!python/object is refused, never constructed) and strict (no duplicate keys)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `--set a.b.c=value`; the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in assignment:
        raise FusechatError(f"--set {assignment!r}: expected key.sub=value")
    key, raw = assignment.split("=", 1)
    try:
        value = strict_yaml(raw)
    except DuplicateKey as e:
        raise FusechatError(f"--set {key}: in the value, key {e.key!r} appears twice") from None
    except yaml.YAMLError as e:
        raise FusechatError(f"--set {key}: the value is not valid YAML ({' '.join(str(e).split())[:200]})") from None
    set_value(data, key, value, f"--set {key}")


def set_value(data: dict, key: str, value, where: str) -> None:
    """Set the dotted `key` (mapping keys, list indices, `*` for every item of a list) of recipe data to `value`."""
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        at = ".".join(parts[: i + 1])
        if part == "*" and isinstance(node, list):  # sources.*.backend=transformers: every source
            for j in range(len(node)):
                set_value(data, ".".join([*parts[:i], str(j), *parts[i + 1 :]]), value, where)
            return
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise FusechatError(f"{where}: '{at}' is not an index of a {len(node)}-item list")
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise FusechatError(f"{where}: '{'.'.join(parts[:i])}' is a {type(node).__name__}, not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise FusechatError(f"{where}: '{last}' is not an index of a {len(node)}-item list")
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise FusechatError(f"{where}: '{'.'.join(parts[:-1])}' is not a mapping")


def read_yaml_mapping(path: Path, what: str = "recipe") -> dict:
    """A YAML file that must hold a mapping (a recipe, a study); every failure is one line naming the file."""
    try:
        data = strict_yaml(path.read_text(encoding="utf-8")) or {}
    except DuplicateKey as e:
        raise FusechatError(f"{path}: key {e.key!r} appears twice (lines {e.first} and {e.second}); "
                            f"YAML would keep only the second: remove one") from None
    except FileNotFoundError:
        raise FusechatError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise FusechatError(f"{path}: is a folder; a {what} is a YAML file") from None
    except OSError as e:
        raise FusechatError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise FusechatError(f"{path}: not a text file (a {what} is UTF-8 YAML)") from None
    except yaml.YAMLError as e:
        raise FusechatError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise FusechatError(f"{path}: a {what} is a YAML mapping")
    return data


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    path = Path(path)
    data = read_yaml_mapping(path)
    if "variants" in data and "recipe" in data:
        raise FusechatError(f"{path}: is a study; run `fusechat study {path}`")
    for assignment in overrides:
        apply_override(data, assignment)
    return recipe_from_dict(data, str(path))


def recipe_from_dict(data: dict, where: str = "recipe") -> Recipe:
    return validated(Recipe, data, where)


def validated(schema: type[BaseModel], data: dict, where: str):
    """`data` checked against `schema` (a recipe, a study file); every problem named by its path, in one line."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in e.errors()]
        raise FusechatError(f"{where}: " + "; ".join(problems)) from None


def builtin_recipe(name: str) -> Path:
    return Path(__file__).parent / "recipes" / f"{name}.yaml"


assert set(DEFAULT_SAMPLES) == set(DOMAINS)


# What each stage's result depends on. The run folder hashes these projections: a stage reruns when
# its projection or its input stages' outputs change, and only then.

def settings(section: BaseModel) -> dict:
    """A section's values as plain data, without its speed-only fields (at any depth)."""
    out = {}
    for name, info in type(section).model_fields.items():
        if (info.json_schema_extra or {}).get("speed_only"):
            continue
        out[name] = _plain(getattr(section, name))
    return out


def _plain(value):
    if isinstance(value, BaseModel):
        return settings(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def prompts_settings(recipe: Recipe) -> dict:
    return settings(recipe.prompts)


def sample_settings(recipe: Recipe) -> dict:
    return {"sources": [settings(s) for s in recipe.sources], "seed": recipe.seed, "shard_size": recipe.shard_size}


def score_settings(recipe: Recipe) -> dict:
    return settings(recipe.score)


def build_settings(recipe: Recipe) -> dict:
    out = settings(recipe.build) | {"source_order": recipe.build.tie_break or [s.name for s in recipe.sources]}
    if recipe.build.source_logps:  # the sources read each pair in DPO's window
        out["source_logps_max_length"] = recipe.dpo.max_length
    return out


def data_settings(recipe: Recipe) -> dict:
    return {"data": settings(recipe.data)}


def sft_settings(recipe: Recipe) -> dict:
    return {"target": recipe.target and settings(recipe.target), "sft": settings(recipe.sft)}


def dpo_settings(recipe: Recipe) -> dict:
    return {"dpo": settings(recipe.dpo)}


def math_eval_problem_set(recipe: Recipe) -> tuple[str | None, dict]:
    """The held-out math task and options: eval.math's, else those of the first reasoning-gym prompt set."""
    cfg = recipe.eval.math
    first = next((s for s in recipe.prompts.sets if s.pack == "reasoning-gym"), None) if recipe.prompts else None
    task = cfg.task or (first.task if first else None)
    options = cfg.options if cfg.options is not None else (first.options if first and first.task == task else {})
    return task, options


def eval_judge(recipe: Recipe) -> str | None:
    """The MT-Bench judge: eval.judge, else the score stage's reward model."""
    return recipe.eval.judge or recipe.score.reward.model


def eval_settings(recipe: Recipe) -> dict:
    """Eval's own section plus what it borrows: the target, the scorers' limits, the judge, the math task."""
    cfg = recipe.eval
    out = {"eval": settings(cfg), "target": recipe.target and settings(recipe.target), "mtbench_scoring": "p-yes-grades",
           "constraints_checker": "if-verifiable"}
    if cfg.math is not None:
        task, options = math_eval_problem_set(recipe)
        out["math"] = {"task": task, "options": options, "timeout_s": recipe.score.math_timeout_s}
    if cfg.humaneval or cfg.humaneval_plus or cfg.mbpp_plus or cfg.livecodebench:
        out["sandbox"] = settings(recipe.score.code)
    local = [f for k, f in (cfg.evalplus_data or {}).items() if getattr(cfg, k) and Path(f).exists()]
    local += [f for f in (cfg.livecodebench.data if cfg.livecodebench else []) if Path(f).exists()]
    if local:  # local EvalPlus files are an input like the task files
        out["evalplus_files"] = files_digest(local)
    if cfg.mtbench:
        out["judge"] = eval_judge(recipe)
    if cfg.harness_include:  # your task files are an input: an edit reruns the evaluation
        out["harness_files"] = files_digest([cfg.harness_include])
    if any(task.startswith("fusechat_") for task in cfg.harness):  # so are fusechat's own (the paper's protocol)
        out["fusechat_task_files"] = files_digest([str(Path(__file__).parent / "benchmarks" / "tasks")])
    if cfg.judged:  # so are local question files
        out["judged_files"] = files_digest([s.questions for s in cfg.judged])
    return out


def report_settings(recipe: Recipe) -> dict:
    return {"name": recipe.name}

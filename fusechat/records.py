"""The record types every stage reads and writes, the domains a prompt belongs to, and the stages'
order: the facts every layer shares, declared once.

Records travel between stages as plain dicts (one JSONL line / one dataset row each); these
dataclasses document the fields and give one place to build and check them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from fusechat import FusechatError

DOMAINS = ("instruction", "math", "code", "chinese")
CHECKED_DOMAINS = ("math", "code")  # every prompt has a correctness check (gold answer, tests)
# The stages in the order data flows through them (fusechat.pipeline declares what each one does).
STAGE_ORDER = ("prompts", "sample", "score", "build", "sft", "dpo", "eval", "report")
SOURCE_STAGES = STAGE_ORDER[:3]  # they ask the sources: a `data:` recipe has none, a study's variants share them
DATA_STAGES = STAGE_ORDER[:4]  # they make the training data; a recipe without a target stops after them


@dataclass
class Prompt:
    id: str  # stable: a hash of domain and text unless the input file gives one
    domain: str  # one of DOMAINS
    prompt: str  # the user's turn
    answer: str = ""  # gold answer (math)
    tests: str = ""  # Python code asserting on the solution (code)
    entry_point: str = ""  # the function the tests call (code)
    split: str = "any"  # "sft" / "dpo" for open instruction prompts (seeded 40:60), "any" otherwise
    origin: str = ""  # where the prompt came from: a file path or a built-in pack
    # instruction: verifiable constraints, IFEval ids and arguments ({"id": ..., "kwargs": {...}});
    # a prompt with constraints is scored for correctness like math and code (fusechat.constraints)
    constraints: list = field(default_factory=list)

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.prompt}]


@dataclass
class Sample:
    prompt_id: str
    domain: str
    source: str  # the source's name in the recipe
    sample_index: int
    seed: int
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn), "length" (hit max_new_tokens) or "error"
    error: str = ""  # what the backend said when finish_reason is "error"


@dataclass
class ScoredSample(Sample):
    reward: float | None = None  # reward model / judge score; None when the domain has none
    correct: bool | None = None  # math: equals the gold answer; code: passes its tests
    score_info: str = ""  # why a response failed (extracted answer, sandbox status, ...)


@dataclass
class SFTExample:
    messages: list[dict]
    prompt_id: str
    domain: str
    source: str
    reward: float | None = None


@dataclass
class DPOPair:
    prompt: list[dict]
    chosen: list[dict]
    rejected: list[dict]
    prompt_id: str
    domain: str
    source: str  # the source both responses came from ("+"-joined in cross-source mode)
    chosen_reward: float | None = None
    rejected_reward: float | None = None


def to_dict(record) -> dict:
    return dataclasses.asdict(record)


def from_dict(cls, row: dict, where: str):
    """Build `cls` from a row, naming `where` (file:line or record id) on a missing field."""
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - row.keys())
    if missing:
        raise FusechatError(f"{where}: missing field(s) {', '.join(missing)}")
    return cls(**{k: v for k, v in row.items() if k in names})


def stable_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def stable_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)

"""A source whose responses already exist: a file or dataset of (prompt, response) rows.

The paper took part of its math responses from OpenMathInstruct-2 (Llama-3.1-405B's solutions) rather
than sampling them. Such a source has `backend: dataset` and `responses:`; the sample stage asks it like
any backend, and it answers the k-th request for a prompt with the k-th response the data holds for
that prompt (matched by the prompt's text, or by its id when the data has an id column). A prompt the
data lacks gets an `error` sample saying so: counted, never silently dropped. Scoring and building then
treat the responses like sampled ones.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from fusechat import FusechatError
from fusechat.backends.base import Backend, Generation, Request
from fusechat.readers import dataset_rows, file_rows, user_text


def load_responses(spec) -> dict[str, list[str]]:
    """prompt text (stripped) -> its responses in the data's order."""
    path = Path(spec.dataset)
    columns = spec.columns or {}
    if path.is_file():  # a JSONL or Parquet file: our field names, or `columns` naming them
        rows = ((where, row | {ours: row.get(theirs) for ours, theirs in columns.items()}) for where, row in file_rows(path))
    else:
        rows = dataset_rows(spec.dataset, spec.subset, spec.split, columns)
    out: dict[str, list[str]] = defaultdict(list)
    for where, row in rows:
        response = row.get("response")
        if not isinstance(response, str):
            raise FusechatError(f"{where}: no `response` text (map it with responses.columns.response)")
        out[user_text(row, where).strip()].append(response)
    if not out:
        raise FusechatError(f"{spec.dataset}: no responses in it")
    return dict(out)


class DatasetBackend(Backend):
    def __init__(self, spec):
        self.responses = load_responses(spec)
        self.name = spec.dataset

    def generate(self, requests: list[Request], sampling) -> list[Generation]:
        seen: dict[str, int] = defaultdict(int)  # the k-th request for a prompt gets its k-th response
        out = []
        for r in requests:
            text = next(m["content"] for m in r.messages if m["role"] == "user").strip()
            k = seen[text]
            seen[text] += 1
            answers = self.responses.get(text, [])
            if k < len(answers):
                # token counts are the backend's to give; the data has none (words stand in, labelled in the docs)
                out.append(Generation(answers[k], 0, len(answers[k].split()), "stop", r.seed))
            else:
                out.append(Generation("", 0, 0, "error", r.seed,
                                      error=f"{self.name}: {len(answers)} response(s) for this prompt, asked for #{k + 1}"))
        return out

    def first_token_logprobs(self, messages, top=20):
        raise FusechatError(f"{self.name}: a dataset of responses cannot judge")

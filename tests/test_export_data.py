"""`fusechat export-data`: the build's data in TRL, ShareGPT, LLaMA-Factory and OpenRLHF layouts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fusechat.cli import app
from fusechat.runfolder import jsonl_text

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"}]
SFT = [{"messages": PROMPT + [{"role": "assistant", "content": "4"}], "prompt_id": "p1", "domain": "math",
        "source": "a", "reward": None}]
DPO = [{"prompt": PROMPT, "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}],
        "prompt_id": "p2", "domain": "math", "source": "a", "chosen_reward": None, "rejected_reward": None}]


@pytest.fixture
def run(tmp_path):
    (tmp_path / "run" / "build").mkdir(parents=True)
    (tmp_path / "run" / "build" / "sft.jsonl").write_text(jsonl_text(SFT))
    (tmp_path / "run" / "build" / "dpo.jsonl").write_text(jsonl_text(DPO))
    return tmp_path / "run"


def export(run, fmt):
    result = CliRunner().invoke(app, ["export-data", str(run), "--format", fmt])
    assert result.exit_code == 0, result.output
    return run / "export" / fmt


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_trl_is_the_conversational_format_without_our_fields(run):
    out = export(run, "trl")
    assert lines(out / "sft.jsonl") == [{"messages": SFT[0]["messages"]}]
    assert lines(out / "dpo.jsonl") == [{"prompt": PROMPT, "chosen": DPO[0]["chosen"], "rejected": DPO[0]["rejected"]}]


def test_llama_factory_files_follow_its_documented_sharegpt_schema(run):
    out = export(run, "llama-factory")
    info = json.loads((out / "dataset_info.json").read_text())
    sft_entry, dpo_entry = info["fusechat_sft"], info["fusechat_dpo"]
    assert sft_entry["formatting"] == dpo_entry["formatting"] == "sharegpt" and dpo_entry["ranking"] is True
    [sft] = json.loads((out / sft_entry["file_name"]).read_text())
    [pair] = json.loads((out / dpo_entry["file_name"]).read_text())
    # LLaMA-Factory's sharegpt reader: an optional leading system turn, then human/gpt alternating;
    # an SFT conversation ends with gpt, a preference prompt with human, chosen/rejected are one gpt turn
    turns = sft[sft_entry["columns"]["messages"]]
    assert turns[0] == {"from": "system", "value": "Be brief."}
    assert [t["from"] for t in turns[1:]] == ["human", "gpt"] and turns[-1]["value"] == "4"
    assert [t["from"] for t in pair["conversations"]] == ["system", "human"]
    assert pair["chosen"] == {"from": "gpt", "value": "4"} and pair["rejected"] == {"from": "gpt", "value": "5"}


def test_openrlhf_pairs_are_whole_conversations_under_its_default_keys(run):
    out = export(run, "openrlhf")
    [pair] = lines(out / "dpo.jsonl")
    assert set(pair) == {"chosen", "rejected"}  # --chosen_key chosen --rejected_key rejected, no prompt key
    assert pair["chosen"][:-1] == pair["rejected"][:-1] == PROMPT  # the prompt is what the two share
    assert pair["chosen"][-1]["content"] == "4" and pair["rejected"][-1]["content"] == "5"
    assert lines(out / "sft.jsonl") == [{"messages": SFT[0]["messages"]}]


def test_a_run_without_a_build_or_an_unknown_format_is_one_line(tmp_path, run):
    result = CliRunner().invoke(app, ["export-data", str(tmp_path / "nothing"), "--format", "trl"])
    assert result.exit_code == 2 and "run `fusechat build` first" in result.output
    result = CliRunner().invoke(app, ["export-data", str(run), "--format", "alpaca"])
    assert result.exit_code == 2 and "one of trl, sharegpt, llama-factory, openrlhf" in result.output

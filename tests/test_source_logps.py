"""build.source_logps: each source's log-probs of every pair, checked against a direct forward pass of that
source through its own chat template, and exported in InfiFPO's fields."""

import json
import math
import shutil

import pytest
import torch
import yaml

from fusechat.export_data import export_data
from fusechat.pipeline import run_all, run_stage
from fusechat.recipe import load_recipe
from fusechat.runfolder import Outputs, RunFolder, read_jsonl
from fusechat.source_logps import pair_logps


def direct(model_dir, prompt: list[dict], answer: list[dict]) -> tuple[float, float]:
    """Summed and per-token log-prob of `answer` after `prompt`: the whole conversation in one forward pass."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    head = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    full = tok.apply_chat_template(prompt + answer, tokenize=True, return_dict=False)
    assert full[: len(head)] == head
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([full])).logits[0].double().log_softmax(-1)
    total = sum(logp[i - 1, full[i]].item() for i in range(len(head), len(full)))
    return total, total / (len(full) - len(head))


@pytest.fixture
def other_template_dir(tiny_model_dir, tmp_path):
    """The tiny model with a chat template of its own (a system line first): a source that renders a pair
    differently from the other."""
    folder = tmp_path / "other"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = (folder / "chat_template.jinja").read_text() if (folder / "chat_template.jinja").exists() else config["chat_template"]
    template = "<|im_start|>system\nYou answer briefly.<|im_end|>\n" + template
    if (folder / "chat_template.jinja").exists():
        (folder / "chat_template.jinja").write_text(template)
    else:
        config["chat_template"] = template
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    torch.manual_seed(1)  # and other weights
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    model.save_pretrained(folder)
    return folder


def test_each_sources_logps_of_each_pair_are_its_own_forward_pass(tmp_path, tiny_model_dir, other_template_dir):
    data = {
        "name": "logps", "run_dir": str(tmp_path / "run"), "shard_size": 4,
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 6}]},
        "sources": [{"name": "a", "model": str(tiny_model_dir), "dtype": "float32", "samples_per_prompt": {"math": 3},
                     "sampling": {"max_new_tokens": 12, "temperature": 1.0}},
                    {"name": "b", "model": str(other_template_dir), "dtype": "float32", "samples_per_prompt": {"math": 1},
                     "sampling": {"max_new_tokens": 12}}],
        "build": {"source_logps": True, "gap_window": None},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    recipe = load_recipe(tmp_path / "r.yaml")
    # Tiny random models solve no sum: the verdicts are rewritten so that pairs exist.
    run_all(recipe, until="score")
    folder = RunFolder(recipe.run_path)
    scored = folder.records("score", "scored")
    for r in scored:  # a's first answer right, every other wrong: one same-source pair per prompt
        r["correct"], r["finish_reason"] = r["source"] == "a" and r["sample_index"] == 0, "stop"
    folder.write("score", Outputs({"scored": scored}))
    built = run_stage("build", recipe)
    pairs = folder.records("build", "dpo")
    assert pairs and built["counts"]["source_logps"]["sources"] == ["a", "b"]
    for pair in pairs[:3]:
        for name, model_dir in (("a", tiny_model_dir), ("b", other_template_dir)):
            got = pair["source_logps"][name]
            for side in ("chosen", "rejected"):
                total, mean = direct(model_dir, pair["prompt"], pair[side])
                assert got[side] == pytest.approx(total, rel=1e-4, abs=1e-3)
                assert got[f"mean_{side}"] == pytest.approx(mean, rel=1e-4, abs=1e-4)
        # the two sources read the same text through different templates and weights (both near-uniform: random)
        assert pair["source_logps"]["a"]["chosen"] != pair["source_logps"]["b"]["chosen"]

    export_data(recipe.run_path / "build", tmp_path / "out", "infifpo")
    [row, *_] = read_jsonl(tmp_path / "out" / "dpo.jsonl")
    first = pairs[0]["source_logps"]
    assert row["fuse_sources"] == ["a", "b"] and row["chosen"] == pairs[0]["prompt"] + pairs[0]["chosen"]
    assert row["fuse_chosen_logps"] == [first["a"]["chosen"], first["b"]["chosen"]]
    assert row["fuse_mean_rejected_logps"] == [first["a"]["mean_rejected"], first["b"]["mean_rejected"]]
    assert all(math.isfinite(x) for x in row["fuse_rejected_logps"])


def test_infifpo_export_without_logps_is_one_line(tmp_path):
    from fusechat import FusechatError

    build = tmp_path / "build"
    build.mkdir()
    (build / "sft.jsonl").write_text("")
    pair = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    (build / "dpo.jsonl").write_text(json.dumps(pair) + "\n")
    with pytest.raises(FusechatError, match=r"dpo.jsonl:1: no source log-probs; .*build.source_logps"):
        export_data(build, tmp_path / "out", "infifpo")


@pytest.mark.real
def test_smollm2s_logps_of_a_pair_are_its_forward_pass():
    from fusechat.models import resolve

    path = resolve("smollm2-135m-instruct").hf_path()
    rows = [{"prompt": [{"role": "user", "content": "What is 12 + 30?"}],
             "chosen": [{"role": "assistant", "content": "12 + 30 = 42."}],
             "rejected": [{"role": "assistant", "content": "It is 43, I think."}]},
            {"prompt": [{"role": "user", "content": "Name a colour."}],
             "chosen": [{"role": "assistant", "content": "Blue."}],
             "rejected": [{"role": "assistant", "content": "Seven."}]}]
    found = pair_logps(path, rows, max_length=512)
    for row, got in zip(rows, found):
        for side in ("chosen", "rejected"):
            total, mean = direct(path, row["prompt"], row[side])
            assert got[side] == pytest.approx(total, rel=1e-4) and got[f"mean_{side}"] == pytest.approx(mean, rel=1e-4)
    assert found[0]["mean_chosen"] > found[0]["mean_rejected"]  # the right sum reads likelier than the wrong one

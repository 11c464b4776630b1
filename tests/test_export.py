"""GGUF export: the exported file, run by llama.cpp, answers greedily exactly as the HF model does."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fusechat.recipe import Sampling
from fusechat.backends.base import Request

QUESTIONS = ["What is 7 + 5?", "Write a haiku about the sea.", "Name three colours."]


def greedy_both(folder, gguf):
    from fusechat.backends.hf import TransformersBackend
    from fusechat.backends.llamacpp import LlamaCppBackend

    requests = [Request([{"role": "user", "content": q}], 0) for q in QUESTIONS]
    greedy = Sampling(temperature=0, max_new_tokens=24)
    ours = LlamaCppBackend(gguf, slots=1, ctx_per_slot=1024).generate(requests, greedy)
    theirs = TransformersBackend(str(folder), dtype="float32", batch_size=1).generate(requests, greedy)
    return [g.text for g in ours], [g.text for g in theirs]


@pytest.mark.real
def test_exported_smollm2_matches_hf_greedy_output(tmp_path):
    """Llama architecture (q/k rows permuted for llama.cpp's rotary layout), tied embeddings, f16."""
    from fusechat.cli import app
    from fusechat.models import resolve

    folder = resolve("smollm2-135m-instruct").hf_path()
    out = tmp_path / "smol.gguf"
    result = CliRunner().invoke(app, ["export", folder, "--gguf", "--type", "f16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ours, theirs = greedy_both(folder, out)
    assert all(ours) and ours == theirs


@pytest.mark.slow
def test_exported_qwen2_matches_hf_greedy_output(tmp_path):
    """Qwen2 architecture (q/k/v biases, padded vocabulary, untied head), q8_0."""
    from fusechat.export import export_gguf
    from fusechat.models import resolve

    folder = resolve("qwen2.5-coder-0.5b-instruct").hf_path()
    ours, theirs = greedy_both(folder, export_gguf(folder, tmp_path / "qwen.gguf", "q8_0"))
    assert all(ours) and ours == theirs


def test_export_refuses_what_it_cannot_write(tmp_path, tiny_model_dir):
    from fusechat.cli import app

    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--gguf", "--type", "q2"])
    assert result.exit_code == 2 and "--type must be one of" in result.output
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--gguf"])
    assert result.exit_code == 2 and "not a model folder" in result.output
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir)])
    assert result.exit_code == 2 and "--gguf" in result.output


@pytest.mark.slow
def test_exported_gemma3_matches_hf_greedy_output(tmp_path):
    """Gemma 3 (SentencePiece-style vocabulary with scores, (1 + w) norms, sliding-window metadata), f16.
    The catalog's Gemma-3-270M is a base model without a chat template: a Gemma turn template is added
    to a copy of the folder, and both runtimes use it."""
    import shutil

    from transformers import AutoTokenizer

    from fusechat.export import export_gguf
    from fusechat.models import resolve

    source = resolve("gemma-3-270m").hf_path()
    folder = tmp_path / "gemma"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in Path(source).glob("*.safetensors"):
        (folder / weights.name).symlink_to(weights)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
                               "else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
                               "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    tokenizer.save_pretrained(folder)
    ours, theirs = greedy_both(folder, export_gguf(folder, tmp_path / "gemma.gguf", "f16"))
    assert all(ours) and ours == theirs

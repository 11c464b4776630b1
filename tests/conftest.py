"""Shared fixtures: tiny random models with a real tokenizer and chat template (SmolLM2's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")




@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's real tokenizer and ChatML template, kept in the repo (saved from the catalog GGUF with
    `AutoTokenizer.from_pretrained(..., gguf_file=...).save_pretrained`, tokenizer.json gzipped):
    fast tests install no model."""
    from fusechat.rehearse import unpack_tokenizer

    return unpack_tokenizer(tmp_path_factory.mktemp("smol-tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(smol_tokenizer_dir, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer, as a save_pretrained folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server():
    """llama.cpp's own HTTP server (opened by xllamacpp) with SmolLM2 from the catalog and four slots."""
    import socket

    import xllamacpp

    from fusechat.catalog import prepare

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = xllamacpp.CommonParams()
    params.model.path = str(prepare("smollm2-135m-instruct"))
    params.n_parallel, params.n_ctx, params.port = 4, 8192, port
    params.use_jinja, params.warmup, params.verbosity = True, False, -1
    handle = xllamacpp.Server(params)
    yield f"http://127.0.0.1:{port}/v1"
    del handle

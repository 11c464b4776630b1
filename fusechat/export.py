"""Export a trained HF target to GGUF (`fusechat export MODEL --gguf`), so it runs in llama.cpp and ollama.

Written with the `gguf` package: llama.cpp's metadata keys and tensor names, the byte-level BPE
vocabulary with its merges (Gemma: the SentencePiece-style vocabulary with scores), special-token ids
and the chat template. Architectures: Llama, Qwen2, Gemma 3 (text). Weights are f32, f16 or q8_0; norms and biases stay f32.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fusechat import FusechatError

TYPES = ("f16", "q8_0", "f32")


def pre_tokenizer(config, tokenizer) -> str:
    """llama.cpp's name for the tokenizer's pre-split rules (it hashes a probe string; we know our families)."""
    if config.model_type == "qwen2":
        return "qwen2"
    if config.model_type == "llama" and len(tokenizer) == 49152:
        return "smollm"
    if config.model_type == "llama" and len(tokenizer) >= 128000:
        return "llama-bpe"  # Llama 3
    raise FusechatError(f"export: unknown tokenizer family ({config.model_type}, {len(tokenizer)} tokens); "
                        "pass --pre NAME with llama.cpp's pre-tokenizer name")


def permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """HF Llama stores q/k rows for rotary as two halves per head; llama.cpp wants the pairs interleaved."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def add_spm_vocabulary(writer, tokenizer, vocab_size: int) -> None:
    """Gemma's SentencePiece-style vocabulary (BPE with byte fallback): llama.cpp's "llama" tokenizer
    merges by score, so normal pieces score by id (earlier piece, earlier merge), as SentencePiece does."""
    import re

    import gguf

    special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens, scores, types = [], [], []
    for i in range(vocab_size):
        token = by_id.get(i, f"<unused-{i}>")
        tokens.append(token)
        if i in special or i not in by_id:
            scores.append(-1000.0)
            types.append(gguf.TokenType.CONTROL)
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            scores.append(0.0)
            types.append(gguf.TokenType.BYTE)
        else:
            scores.append(-float(i))
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    add_special_tokens(writer, tokenizer)
    writer.add_add_space_prefix(False)


def add_special_tokens(writer, tokenizer) -> None:
    for setter, token in ((writer.add_bos_token_id, tokenizer.bos_token_id or tokenizer.eos_token_id),
                          (writer.add_eos_token_id, tokenizer.eos_token_id),
                          (writer.add_unk_token_id, tokenizer.unk_token_id),
                          (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if token is not None:
            setter(token)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def add_vocabulary(writer, tokenizer, vocab_size: int, pre: str) -> None:
    import gguf

    tokens, types = [], []
    special = set(tokenizer.all_special_ids)
    added = {t.content for t in tokenizer.added_tokens_decoder.values()} if hasattr(tokenizer, "added_tokens_decoder") else set()
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    for i in range(vocab_size):
        token = by_id.get(i)
        if token is None:  # embedding rows past the tokenizer (Qwen pads its vocabulary)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if i in special or (token in added and token.startswith("<|"))
                         else gguf.TokenType.USER_DEFINED if token in added else gguf.TokenType.NORMAL)
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE":
        raise FusechatError(f"export: only byte-level BPE tokenizers are supported, not {state['model']['type']}")
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    add_special_tokens(writer, tokenizer)


def tensor_data(data: np.ndarray, kind: str):
    """(array, raw type) for one tensor: matrices in the asked type, vectors in f32."""
    import gguf

    if data.ndim == 1 or kind == "f32":
        return data.astype(np.float32), gguf.GGMLQuantizationType.F32
    if kind == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def export_gguf(model_dir: str | Path, out: str | Path, kind: str = "f16", pre: str | None = None) -> Path:
    """Write `out` (a .gguf file) from the save_pretrained folder `model_dir`; atomic."""
    import gguf
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if kind not in TYPES:
        raise FusechatError(f"export: --type must be one of {', '.join(TYPES)}, not {kind!r}")
    model_dir, out = Path(model_dir), Path(out)
    try:
        config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as e:
        raise FusechatError(f"{model_dir}: not a model folder transformers can load ({str(e).splitlines()[0][:200]})") from None
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2,
            "gemma3_text": gguf.MODEL_ARCH.GEMMA3}.get(config.model_type)
    if arch is None:
        raise FusechatError(f"export: architecture '{config.model_type}' is not supported yet (llama, qwen2, gemma3)")
    gemma = arch == gguf.MODEL_ARCH.GEMMA3
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if gemma:  # per layer type; llama.cpp takes the global layers' theta (the local 10k is built in)
        rope = rope.get("full_attention", rope)
    if rope.get("rope_type", "default") not in ("default", None):
        raise FusechatError(f"export: rope scaling '{rope.get('rope_type')}' is not supported yet")
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads

    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_dir.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    if gemma:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_sliding_window(config.sliding_window)
    else:
        writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind])
    if gemma:
        add_spm_vocabulary(writer, tokenizer, config.vocab_size)
    else:
        add_vocabulary(writer, tokenizer, config.vocab_size, pre or pre_tokenizer(config, tokenizer))

    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses the token embedding
        if "rotary_emb" in hf_name:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise FusechatError(f"export: no GGUF name for tensor {hf_name}")
        data = tensor.float().numpy()
        if gemma and hf_name.endswith("norm.weight"):
            data = data + 1.0  # Gemma's RMSNorm scales by (1 + w); llama.cpp's by w
        if arch == gguf.MODEL_ARCH.LLAMA and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            data = permute_for_rope(data, heads if "q_proj" in hf_name else kv_heads)
        data, raw = tensor_data(data, kind)
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return out

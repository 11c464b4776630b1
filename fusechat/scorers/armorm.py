"""ArmoRM (RLHFlow/ArmoRM-Llama3-8B-v0.1), the paper's reward model, without its remote code.

Its remote code imports `LLAMA_INPUTS_DOCSTRING`, which no transformers that fusechat supports still
has, so `trust_remote_code` cannot load it. The model is transformers' own `LlamaModel` plus a small
head that the checkpoint fully specifies, so we rebuild the head here and load the weights by their
names (`model.*`, `regression_layer.weight`, `reward_transform_matrix`, `gating.layers.N.*`,
`gating.logit_scale`; config keys `num_objectives`, `gating_hidden_dim`, `gating_n_hidden`,
`gating_temperature`):

    rewards = regression_layer(h[end])                       # 19 objectives, at the conversation's last token
    gate    = softmax(mlp(h[prompt_end]) / temperature) * logit_scale    # at the user turn's last token
    score   = sum(gate * (rewards @ reward_transform_matrix))

ArmoRM's own code finds `prompt_end` as the last `<|eot_id|>` followed by the assistant header, and `end`
as the token before the first pad (its pad id, 128256, lies outside the embedding matrix, so a padded
batch would crash it: it was only ever run one conversation at a time). Here both come from the
tokenizer's own chat template and the attention mask: any padding, any batch, the same score. A
conversation longer than `max_length` loses prompt tokens from the left, never the assistant header.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from fusechat import FusechatError

ARCHITECTURE = "LlamaForRewardModelWithGating"


def is_armorm(config: dict) -> bool:
    return ARCHITECTURE in (config.get("architectures") or [])


class Gating(nn.Module):
    def __init__(self, hidden_size: int, objectives: int, width: int, layers: int, temperature: float):
        super().__init__()
        sizes = [hidden_size] + [width] * layers
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])] + [nn.Linear(sizes[-1], objectives)])
        self.temperature = temperature
        self.logit_scale = nn.Parameter(torch.ones(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.softmax(self.layers[-1](x) / self.temperature, dim=-1) * self.logit_scale[0]


class ArmoRM(nn.Module):
    def __init__(self, config, backbone: nn.Module | None = None):
        super().__init__()
        from transformers import LlamaModel

        objectives = getattr(config, "num_objectives", 19)
        self.model = backbone if backbone is not None else LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, objectives, bias=False)
        self.reward_transform_matrix = nn.Parameter(torch.eye(objectives), requires_grad=False)
        self.gating = Gating(config.hidden_size, objectives, getattr(config, "gating_hidden_dim", 1024),
                             getattr(config, "gating_n_hidden", 3), getattr(config, "gating_temperature", 10))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, gate_at: torch.Tensor) -> torch.Tensor:
        states = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(len(input_ids), device=input_ids.device)
        end = reward_positions(attention_mask)
        rewards = self.regression_layer(states[rows, end])
        gate = self.gating(states[rows, gate_at])
        return (gate * (rewards @ self.reward_transform_matrix)).sum(-1)


def reward_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's last real token (whatever side the padding is on)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(-1)


def load_armorm(folder: str | Path, dtype: torch.dtype) -> ArmoRM:
    """The model from a local checkpoint folder (a hub id is downloaded first by the caller): the Llama
    backbone by transformers (its `model.*` weights), the head by name from the same files."""
    from safetensors import safe_open
    from transformers import LlamaConfig, LlamaModel

    folder = Path(folder)
    config = LlamaConfig.from_pretrained(folder)
    if config.pad_token_id is not None and not 0 <= config.pad_token_id < config.vocab_size:
        config.pad_token_id = None  # outside the embeddings (ArmoRM's 128256): we pad with a real id, masked
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head's weights are "unexpected" to a bare LlamaModel: we load them next
    try:
        backbone, info = LlamaModel.from_pretrained(folder, config=config, dtype=dtype, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    if info["missing_keys"]:
        raise FusechatError(f"{folder}: not ArmoRM's weights (missing {sorted(info['missing_keys'])[:3]})")
    model = ArmoRM(config, backbone)
    head = {k for k in model.state_dict() if not k.startswith("model.")}
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    found = {}
    for name in files:
        with safe_open(folder / name, framework="pt") as f:
            found.update({k: f.get_tensor(k) for k in f.keys() if k in head})
    if head - set(found):
        raise FusechatError(f"{folder}: not ArmoRM's weights (missing {sorted(head - set(found))[:3]})")
    model.load_state_dict({k: v.to(dtype) for k, v in found.items()}, strict=False)
    model.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def conversation_ids(tokenizer, prompt: str, response: str, max_length: int) -> tuple[list[int], int | None]:
    """The [user, assistant] conversation's token ids by the tokenizer's chat template, and the position of
    the user turn's last token (where ArmoRM's gate reads; None when the template renders the user turn
    differently alone, which only ArmoRM minds). Too long: prompt tokens go from the left (the first
    token, BOS, stays) so the assistant header survives; if the assistant turn alone is too long, its
    end goes."""
    user = [{"role": "user", "content": prompt}]
    full = _ids(tokenizer, user + [{"role": "assistant", "content": response}])
    head = _ids(tokenizer, user)
    gate = len(head) - 1 if full[: len(head)] == head else None
    if len(full) <= max_length:
        return full, gate
    if gate is None:
        return full[:1] + full[len(full) - max_length + 1:], None
    tail = full[gate:]  # the user turn's last token, the assistant header, the response
    room = max_length - 1 - len(tail)  # prompt tokens that fit beside the first one and the tail
    if room < 0:
        return tail[:max_length], 0
    kept = full[gate - room: gate] if room else []
    return full[:1] + kept + tail, 1 + room


def _ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]

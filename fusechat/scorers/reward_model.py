"""Reward model: any Hugging Face sequence classifier scores a [user, assistant] conversation.

ArmoRM, the paper's, is rebuilt natively (scorers/armorm.py: its remote code no longer loads); other
remote-code models with a `score` output and plain classifiers (logits, one label) load through
transformers. Batches always pad on the right, so a response gets the same score alone or in any batch.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fusechat import FusechatError
from fusechat.scorers.armorm import conversation_ids, is_armorm, load_armorm


class RewardModel:
    """Scores [user, assistant] conversations in batches of similar length, padded on the right with a
    valid token id; a conversation longer than `max_length` loses prompt tokens, never the assistant turn's
    start. bf16 where the hardware has it (`precision: auto`). Data parallel: one replica per GPU (or
    `replicas` on the CPU, for tests), batches dealt round-robin, each replica in its own thread (torch
    releases the GIL in its kernels)."""

    def __init__(self, path: str, trust_remote_code: bool = False, batch_size: int = 8, max_length: int = 2048,
                 precision: str = "auto", replicas: int | None = None):
        import copy

        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        from fusechat import hardware

        bf16 = precision == "bf16" or (precision == "auto" and hardware.has_bf16())
        dtype = torch.bfloat16 if bf16 else torch.float32
        self.armorm = None
        try:
            config = AutoConfig.from_pretrained(path).to_dict()  # ArmoRM's config is a plain Llama one
        except Exception:  # noqa: BLE001 (a config only remote code reads: the classifier below says why)
            config = {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            if is_armorm(config):  # the paper's reward model, without the remote code that no longer loads
                self.armorm = module = load_armorm(local_folder(path), dtype)
            else:
                module = AutoModelForSequenceClassification.from_pretrained(
                    path, trust_remote_code=trust_remote_code, dtype=dtype)
        except FusechatError:
            raise
        except Exception as e:
            raise FusechatError(f"reward model '{path}' will not load ({str(e).splitlines()[0][:200]})") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        vocab = (config.get("vocab_size") or len(self.tokenizer))
        pad = self.tokenizer.pad_token_id
        # ArmoRM's pad id (128256) is one past its embedding matrix: pad with a token it has (masked anyway)
        self.pad_id = pad if pad is not None and pad < vocab else self.tokenizer.eos_token_id
        if self.armorm is None:
            module.config.pad_token_id = self.pad_id  # where HF's classifiers find the last real token
        gpus = torch.cuda.device_count()
        devices = [f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"] * (replicas or 1)
        self.replicas = [(module if i == 0 else copy.deepcopy(module)).to(d).eval() for i, d in enumerate(devices)]
        self.devices = devices
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, pairs: list[tuple[str, str]]) -> list[float]:
        from concurrent.futures import ThreadPoolExecutor

        encoded = [conversation_ids(self.tokenizer, p, r, self.max_length) for p, r in pairs]
        if self.armorm is not None and any(gate is None for _, gate in encoded):
            raise FusechatError("the reward model's chat template renders the user turn differently alone and in a "
                                "conversation: cannot tell where ArmoRM's gate reads")
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths: less padding
        chunks = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        scores = [0.0] * len(encoded)

        def run(k: int) -> None:
            replica = k % len(self.replicas)
            for chunk in chunks[k :: len(self.replicas)]:
                for i, v in zip(chunk, self._batch([encoded[i] for i in chunk], replica)):
                    scores[i] = v

        with ThreadPoolExecutor(len(self.replicas)) as pool:
            list(pool.map(run, range(len(self.replicas))))
        return scores

    @torch.inference_mode()
    def _batch(self, items: list[tuple[list[int], int | None]], replica: int) -> list[float]:
        module, device = self.replicas[replica], self.devices[replica]
        width = max(len(tokens) for tokens, _ in items)
        ids = torch.tensor([tokens + [self.pad_id] * (width - len(tokens)) for tokens, _ in items], device=device)
        mask = torch.tensor([[1] * len(tokens) + [0] * (width - len(tokens)) for tokens, _ in items], device=device)
        if self.armorm is not None:
            values = module(ids, mask, torch.tensor([gate for _, gate in items], device=device))
        else:
            out = module(input_ids=ids, attention_mask=mask)
            values = out.score if getattr(out, "score", None) is not None else out.logits[:, -1]
        return values.float().reshape(len(items), -1)[:, 0].tolist()

    def close(self) -> None:
        self.replicas.clear()


def local_folder(path: str) -> str:
    """A checkpoint folder: `path` itself, or the hub repository's weights, config and tokenizer downloaded."""
    if Path(path).is_dir():
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "tokenizer*"])

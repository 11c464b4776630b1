"""The fast training paths compute the same loss and gradients as the plain ones on a fixed batch.

SFT: padding-free packed batches vs padded batches. DPO: token-budget micro-batches with logits for
the completions only vs the whole batch with every position's logits. Both in fp32 (equal up to
rounding) and with bf16 autocast against the fp32 plain path (equal within bf16's precision). On the
tiny random model and, in the `real` group, on SmolLM2-135M-Instruct (its bf16 leg only where the
device has bf16 units).
"""

import pytest
import torch

from fusechat.recipe import DPOTrainConfig, SFTTrainConfig
from fusechat.train.common import load_model, load_tokenizer
from fusechat.sequences import collate, sequence_logps, tokenize_pairs
from fusechat.train.dpo_loss import dpo_loss, micro_batches
from fusechat.train.sft import sft_trainer

QUESTIONS = ["What is 7 + 5?", "Name a prime number larger than 10.", "Say hello.",
             "Write the word 'cat' backwards, then explain in one sentence how you did it."]
ANSWERS = ["7 + 5 = 12.", "13 is a prime number larger than 10.", "Hello!",
           "tac. I read the letters of 'cat' from the last to the first."]
WRONG = ["It is 13, I believe, though I did not check it carefully.", "10.", "Goodbye, and good luck to you.", "cta."]
SFT_ROWS = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "prompt_id": str(i)}
            for i, (q, a) in enumerate(zip(QUESTIONS, ANSWERS))]
DPO_ROWS = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
             "rejected": [{"role": "assistant", "content": w}]} for q, a, w in zip(QUESTIONS, ANSWERS, WRONG)]


@pytest.fixture(params=["tiny", pytest.param("smollm2", marks=pytest.mark.real)])
def model_dir(request):
    if request.param == "tiny":
        return str(request.getfixturevalue("tiny_model_dir"))
    from fusechat.models import resolve

    return resolve("smollm2-135m-instruct").hf_path()


def bf16_too(request) -> bool:
    """Check bf16 autocast too: always on the tiny model, on SmolLM2 only where the device has bf16 units.
    Elsewhere bf16 is emulated in software (these few pairs took ~100 s instead of seconds) and fusechat
    trains in fp32 there (`common.use_bf16`)."""
    from fusechat.hardware import has_bf16

    return request.node.callspec.params["model_dir"] == "tiny" or has_bf16()


def grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    return (a - b).norm().item() <= rel * b.norm().item()


def sft_loss_and_grads(model, tokenizer, padding_free: bool, bf16: bool, tmp_path):
    cfg = SFTTrainConfig(padding_free=padding_free, precision="fp32", batch_size=4)
    trainer = sft_trainer(model, tokenizer, SFT_ROWS, cfg, tmp_path / f"sft-{padding_free}-{bf16}")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(SFT_ROWS))])
    assert ("attention_mask" not in batch) == padding_free and batch["input_ids"].shape[0] == (1 if padding_free else 4)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = trainer.compute_loss(model, batch)
    loss.backward()
    return loss.item(), grads(model)


def test_sft_padding_free_matches_padded_batches(model_dir, tmp_path, request):
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, SFTTrainConfig())
    plain_loss, plain_grads = sft_loss_and_grads(model, tokenizer, padding_free=False, bf16=False, tmp_path=tmp_path)
    fast_loss, fast_grads = sft_loss_and_grads(model, tokenizer, padding_free=True, bf16=False, tmp_path=tmp_path)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-5) and close(fast_grads, plain_grads, 1e-4)
    if not bf16_too(request):
        return
    bf16_loss, bf16_grads = sft_loss_and_grads(model, tokenizer, padding_free=True, bf16=True, tmp_path=tmp_path)
    assert bf16_loss == pytest.approx(plain_loss, rel=5e-3) and close(bf16_grads, plain_grads, 0.1)


def dpo_loss_and_grads(model, pairs, pad_id: int, max_tokens: int | None, bf16: bool, loss: str, beta: float):
    """The plain path (max_tokens None): one forward over the whole batch, every position's logits."""
    model.zero_grad()
    total = 0.0
    chunks = [pairs] if max_tokens is None else micro_batches(pairs, max_tokens)
    for chunk in chunks:
        batch = collate(chunk, pad_id)
        logps, lengths = sequence_logps(model, batch, bf16, completion_only=max_tokens is not None)
        out = dpo_loss(logps, batch["ref"], lengths, beta, loss)
        (out["loss"] * len(chunk) / len(pairs)).backward()
        total += out["loss"].item() * len(chunk) / len(pairs)
    return total, grads(model), len(chunks)


@pytest.mark.parametrize("loss, beta", [("dpo", 0.1), ("ln-dpo", 10.0)])
def test_dpo_micro_batches_with_completion_logits_match_the_plain_path(model_dir, loss, beta, request):
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, DPOTrainConfig())
    pairs = tokenize_pairs(DPO_ROWS, tokenizer, max_length=256)
    for i, p in enumerate(pairs):  # a fixed reference away from the policy, so the loss is not log 2
        p.ref_chosen, p.ref_rejected = -30.0 - 3 * i, -40.0 + 5 * i
    pad = tokenizer.pad_token_id
    plain_loss, plain_grads, _ = dpo_loss_and_grads(model, pairs, pad, None, False, loss, beta)
    fast_loss, fast_grads, n = dpo_loss_and_grads(model, pairs, pad, 120, False, loss, beta)
    assert n >= 3  # the budget really split the batch
    assert fast_loss == pytest.approx(plain_loss, rel=1e-5) and close(fast_grads, plain_grads, 1e-4)
    if not bf16_too(request):
        return
    bf16_loss, bf16_grads, _ = dpo_loss_and_grads(model, pairs, pad, 120, True, loss, beta)
    assert bf16_loss == pytest.approx(plain_loss, rel=5e-2) and close(bf16_grads, plain_grads, 0.2)


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_activation_checkpointing_trains_the_same_model(tiny_model_dir, tmp_path, stage):
    """The recipe switch reaches the model, and recomputing activations changes no number."""
    from fusechat.train.dpo_loop import train_dpo
    from fusechat.train.sft import train_sft

    tokenizer = load_tokenizer(str(tiny_model_dir))
    common = {"learning_rate": 1e-2, "batch_size": 2, "grad_accum": 1, "epochs": 1, "warmup_ratio": 0.0,
              "precision": "fp32", "save_steps": 100}
    models = []
    for on in (False, True):
        if stage == "sft":
            cfg = SFTTrainConfig(**common, activation_checkpointing=on)
            trainer, _ = train_sft(load_model(str(tiny_model_dir), cfg), tokenizer, SFT_ROWS, cfg, tmp_path / f"sft-{on}")
            model = trainer.model
        else:
            cfg = DPOTrainConfig(**common, eval_fraction=0.0, activation_checkpointing=on)
            model, _, _ = train_dpo(load_model(str(tiny_model_dir), cfg), tokenizer, DPO_ROWS, cfg, tmp_path / f"dpo-{on}")
        flag = "is_activation_checkpointing" if hasattr(type(model), "is_activation_checkpointing") else "is_gradient_checkpointing"
        assert getattr(model, flag) == on
        models.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert close(models[1], models[0], 1e-5)

"""DPO / LN-DPO: losses checked by hand, a few steps change every parameter, resume, checkpoint choice."""

import math

import pytest
import torch

from fusechat.recipe import DPOTrainConfig
from fusechat.train.dpo_loop import train_dpo
from fusechat.sequences import collate, sequence_logps, tokenize_pairs
from fusechat.train.dpo_loss import dpo_loss
from fusechat.train.common import load_model, load_tokenizer

ROWS = [
    {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
     "chosen": [{"role": "assistant", "content": f"{i} + {i} = {2 * i}."}],
     "rejected": [{"role": "assistant", "content": f"I think it is {2 * i + 1}, but I am not sure at all."}]}
    for i in range(6)
]


def by_hand_logp(model, prompt_ids, completion_ids):
    """Sum of log p(token) over the completion, one position at a time."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    total = 0.0
    for pos in range(len(prompt_ids), len(prompt_ids) + len(completion_ids)):
        total += torch.log_softmax(logits[pos - 1].double(), dim=-1)[ids[0, pos]].item()
    return total


@pytest.mark.parametrize("loss, beta", [("dpo", 0.1), ("ln-dpo", 10.0)])
def test_loss_matches_hand_computation(tiny_model_dir, loss, beta):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), DPOTrainConfig()).eval()
    pairs = tokenize_pairs(ROWS[:3], tokenizer, max_length=256)
    refs = [(-40.0 - i, -55.0 + 2 * i) for i in range(3)]  # a fixed reference, unlike the policy
    for p, (c, r) in zip(pairs, refs):
        p.ref_chosen, p.ref_rejected = c, r
    batch = collate(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        logps, lengths = sequence_logps(model, batch, bf16=False)
    got = dpo_loss(logps, batch["ref"], lengths, beta, loss)

    expected, norm_margins, summed_margins, rewards, normalised_rewards, logps_chosen = 0.0, [], [], [], [], []
    for p, (ref_c, ref_r) in zip(pairs, refs):
        lc, lr = by_hand_logp(model, p.prompt_ids, p.chosen_ids), by_hand_logp(model, p.prompt_ids, p.rejected_ids)
        summed = (lc - ref_c) - (lr - ref_r)
        normalised = (lc - ref_c) / len(p.chosen_ids) - (lr - ref_r) / len(p.rejected_ids)
        z = beta * (summed if loss == "dpo" else normalised)
        expected += -math.log(1 / (1 + math.exp(-z))) / len(pairs)
        summed_margins.append(summed)
        norm_margins.append(normalised)
        # TRL's implicit rewards: beta x the summed log-ratio, for every loss (TRL 1.16's DPOTrainer);
        # the length-normalised ones under our own name
        rewards.append((beta * (lc - ref_c), beta * (lr - ref_r)))
        normalised_rewards.append((beta * (lc - ref_c) / len(p.chosen_ids), beta * (lr - ref_r) / len(p.rejected_ids)))
        logps_chosen.append(lc)
    assert got["loss"].item() == pytest.approx(expected, rel=1e-4)
    assert got["margin_summed"].tolist() == pytest.approx(summed_margins, rel=1e-4)
    assert got["margin_normalised"].tolist() == pytest.approx(norm_margins, rel=1e-4)
    assert got["rewards/chosen"].tolist() == pytest.approx([c for c, _ in rewards], rel=1e-4)
    assert got["rewards/rejected"].tolist() == pytest.approx([r for _, r in rewards], rel=1e-4)
    assert got["rewards/margins"].tolist() == pytest.approx([c - r for c, r in rewards], rel=1e-4)
    assert got["rewards/accuracies"].tolist() == [float(c > r) for c, r in rewards]
    assert got["normalised_rewards/chosen"].tolist() == pytest.approx([c for c, _ in normalised_rewards], rel=1e-4)
    assert got["normalised_rewards/margins"].tolist() == pytest.approx([c - r for c, r in normalised_rewards], rel=1e-4)
    assert got["logps/chosen"].tolist() == pytest.approx(logps_chosen, rel=1e-4)


@pytest.mark.parametrize("loss, beta, sft_weight, smoothing", [
    ("ipo", 0.5, 0.0, 0.0), ("simpo", 2.0, 0.0, 0.0), ("dpo", 0.1, 0.0, 0.2), ("ln-dpo", 10.0, 0.5, 0.0),
    ("simpo", 2.0, 1.0, 0.1)])
def test_every_loss_and_the_sft_term_match_hand_computation(tiny_model_dir, loss, beta, sft_weight, smoothing):
    """IPO, SimPO, cDPO's label smoothing and the SFT term (RPO), each pair by hand from its log-probs."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), DPOTrainConfig()).eval()
    pairs = tokenize_pairs(ROWS[:3], tokenizer, max_length=256)
    refs = [(-40.0 - i, -55.0 + 2 * i) for i in range(3)]
    for p, (c, r) in zip(pairs, refs):
        p.ref_chosen, p.ref_rejected = c, r
    batch = collate(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        logps, lengths = sequence_logps(model, batch, bf16=False)
    got = dpo_loss(logps, batch["ref"], lengths, beta, loss, sft_weight, smoothing, simpo_gamma=0.3)

    def logsig(x):
        return -math.log1p(math.exp(-x))

    expected, nll = 0.0, []
    for p, (ref_c, ref_r) in zip(pairs, refs):
        lc, lr = by_hand_logp(model, p.prompt_ids, p.chosen_ids), by_hand_logp(model, p.prompt_ids, p.rejected_ids)
        nc, nr = len(p.chosen_ids), len(p.rejected_ids)
        if loss == "simpo":  # no reference: per-token log-probs against a margin gamma
            z = beta * (lc / nc - lr / nr) - 0.3
        else:
            m = (lc - ref_c) / nc - (lr - ref_r) / nr if loss in ("ln-dpo", "ipo") else (lc - ref_c) - (lr - ref_r)
            z = beta * m
        if loss == "ipo":
            term = (m - 1 / (2 * beta)) ** 2
        else:
            term = -(1 - smoothing) * logsig(z) - smoothing * logsig(-z)
        nll.append(-lc / nc)
        expected += (term + sft_weight * (-lc / nc)) / len(pairs)
    assert got["loss"].item() == pytest.approx(expected, rel=1e-4)
    assert got["nll_loss"].tolist() == pytest.approx(nll, rel=1e-4)


def test_the_sft_term_at_weight_0_leaves_the_gradients_exactly_as_they_were(tiny_model_dir):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir), DPOTrainConfig())
    pairs = tokenize_pairs(ROWS[:3], tokenizer, max_length=256)
    batch = collate(pairs, tokenizer.pad_token_id)

    def grads(loss_of):
        model.zero_grad()
        logps, lengths = sequence_logps(model, batch, bf16=False)
        loss_of(logps, lengths).backward()
        return [p.grad.clone() for p in model.parameters()]

    def before(logps, lengths):  # the LN-DPO loss as it was written before the SFT term existed
        normalised = (logps - batch["ref"]) / lengths.clamp(min=1)
        return -torch.nn.functional.logsigmoid(10.0 * (normalised[:3] - normalised[3:])).mean()

    old = grads(before)
    now = grads(lambda logps, lengths: dpo_loss(logps, batch["ref"], lengths, 10.0, "ln-dpo", 0.0)["loss"])
    assert all(torch.equal(a, b) for a, b in zip(old, now))
    with_term = grads(lambda logps, lengths: dpo_loss(logps, batch["ref"], lengths, 10.0, "ln-dpo", 1.0)["loss"])
    assert not all(torch.equal(a, b) for a, b in zip(old, with_term))


@pytest.mark.parametrize("loss", ["dpo", "ln-dpo", "ipo", "simpo"])
def test_few_steps_change_every_parameter(tiny_model_dir, tmp_path, loss):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    beta = {"dpo": 0.5, "ln-dpo": 5.0, "ipo": 0.5, "simpo": 2.0}[loss]
    cfg = DPOTrainConfig(loss=loss, beta=beta, learning_rate=1e-2, batch_size=2, grad_accum=1, sft_weight=0.1,
                         epochs=1, warmup_ratio=0.0, precision="fp32", eval_fraction=0.0, save_steps=100)
    model = load_model(str(tiny_model_dir), cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model, log, summary = train_dpo(model, tokenizer, ROWS, cfg, tmp_path)
    assert summary["steps"] == 3 and all(math.isfinite(e["loss"]) for e in log)
    start = log[0]["loss"] - 0.1 * log[0]["nll_loss"]  # the preference part, where policy = reference
    if loss in ("dpo", "ln-dpo"):
        assert start == pytest.approx(math.log(2), abs=1e-4)
    elif loss == "ipo":
        assert start == pytest.approx((1 / (2 * beta)) ** 2, abs=1e-4)
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged


def test_resume_after_a_kill_gives_the_same_model(tiny_model_dir, tmp_path, monkeypatch):
    import json

    import fusechat.train.dpo_loop as dpo

    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = DPOTrainConfig(learning_rate=1e-3, batch_size=1, grad_accum=1, epochs=1, precision="fp32",
                         eval_fraction=0.0, save_steps=2, warmup_ratio=0.34)  # warmup: the schedule must resume too
    straight, _, _ = train_dpo(load_model(str(tiny_model_dir), cfg), tokenizer, ROWS, cfg, tmp_path / "a")

    real_share, real_fill, calls = dpo.step_share, dpo.fill_reference, []
    def killed_at_step_three(*args):
        calls.append(1)
        if len(calls) == 3:  # one batch a step: the checkpoint of step 2 is complete, die as step 3 starts
            raise KeyboardInterrupt
        return real_share(*args)
    monkeypatch.setattr(dpo, "step_share", killed_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(load_model(str(tiny_model_dir), cfg), tokenizer, ROWS, cfg, tmp_path / "b")
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 2
    monkeypatch.setattr(dpo, "step_share", real_share)
    monkeypatch.setattr(dpo, "fill_reference", lambda *a: pytest.fail("a resumed run must reuse the saved reference"))
    resumed, log, summary = train_dpo(load_model(str(tiny_model_dir), cfg), tokenizer, ROWS, cfg, tmp_path / "b")
    assert summary["steps"] == 6 and [e["step"] for e in log] == list(range(1, 7))
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name

    # A state file damaged from outside (torn, or naming a checkpoint that is gone): start over, and finish.
    for damage in ('{"step": 4, "log": [', '{"step": 4, "log": [], "checkpoints": [{"folder": "gone"}], "reference": []}'):
        (tmp_path / "b" / "state.json").write_text(damage)
        monkeypatch.setattr(dpo, "fill_reference", real_fill)
        again, log, summary = train_dpo(load_model(str(tiny_model_dir), cfg), tokenizer, ROWS, cfg, tmp_path / "b")
        assert summary["steps"] == 6 and [e["step"] for e in log] == list(range(1, 7))
        for (name, a), b in zip(straight.named_parameters(), again.parameters()):
            assert torch.allclose(a, b, atol=1e-6), name


def test_keeps_the_better_of_the_last_two_checkpoints(tiny_model_dir, tmp_path, monkeypatch):
    import fusechat.train.dpo_loop as dpo

    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = DPOTrainConfig(learning_rate=1e-3, batch_size=1, grad_accum=1, epochs=1, precision="fp32",
                         eval_fraction=0.34, save_steps=1, warmup_ratio=0.0)
    scores = iter([0.99, 0.1, 0.6, 0.5])  # steps 1-4: step 1 is best overall, step 3 the better of the last two
    monkeypatch.setattr(dpo, "preference_accuracy", lambda *a: next(scores))
    _, _, summary = train_dpo(load_model(str(tiny_model_dir), cfg), tokenizer, ROWS, cfg, tmp_path)
    assert summary["steps"] == 4 and summary["held_out"] == 2
    assert summary["kept_step"] == 3 and summary["held_out_accuracy"] == 0.6
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-3", "step-4"]


def test_length_grouped_batches_cover_every_example_once_with_less_padding():
    import random

    from fusechat.train.common import length_grouped_batches

    lengths = [random.Random(i).randint(5, 400) for i in range(203)]
    batches = length_grouped_batches(lengths, 8, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(203)) and all(len(b) <= 8 for b in batches)
    assert batches == length_grouped_batches(lengths, 8, seed=3) != length_grouped_batches(lengths, 8, seed=4)
    padded = lambda bs: sum(len(b) * max(lengths[i] for i in b) for b in bs)  # noqa: E731
    order = list(range(203))
    random.Random(0).shuffle(order)
    assert padded(batches) < 0.7 * padded([order[i : i + 8] for i in range(0, 203, 8)])


def test_micro_batches_keep_pairs_whole_and_within_the_token_budget(tiny_model_dir):
    from fusechat.train.dpo_loss import micro_batches, pair_length

    pairs = tokenize_pairs(ROWS, load_tokenizer(str(tiny_model_dir)), max_length=256)
    for budget in (1, 60, 130, 10_000):
        chunks = micro_batches(pairs, budget)
        assert [p for c in chunks for p in c] == pairs  # every pair once, in order
        for c in chunks:
            assert len(c) == 1 or 2 * len(c) * max(map(pair_length, c)) <= budget
    assert len(micro_batches(pairs, 1)) == len(pairs) and len(micro_batches(pairs, 10_000)) == 1


def test_each_process_takes_its_share_of_a_batch_and_never_a_duplicate():
    from fusechat.train.dpo_loss import step_share

    # 3 pairs over 2 processes of 2: rank 0 takes two, rank 1 one; DDP's mean over processes makes
    # the step's loss the mean over the 3 pairs.
    assert step_share([7, 8, 9], 0, 2, 2) == ([7, 8], 2 * 2 / 3)
    assert step_share([7, 8, 9], 1, 2, 2) == ([9], 1 * 2 / 3)
    # a last batch of 1 pair: rank 1 has nothing of its own and must not train on rank 0's pair again
    mine, weight = step_share([7], 1, 2, 2)
    assert weight == 0.0 and mine == [7]  # a pass at weight 0: it joins the all-reduce and adds nothing
    for batch in ([7, 8, 9], [7], [1, 2, 3, 4]):
        shares = [step_share(batch, rank, 2, 2) for rank in range(2)]
        assert sum(w for _, w in shares) / 2 == pytest.approx(1.0)


def test_a_pair_whose_prompt_is_longer_than_max_length_fits(tiny_model_dir):
    long = [{"prompt": [{"role": "user", "content": "word " * 300}], "chosen": [{"role": "assistant", "content": "Yes it is."}],
             "rejected": [{"role": "assistant", "content": "No."}]}]
    [pair] = tokenize_pairs(long, load_tokenizer(str(tiny_model_dir)), max_length=64)
    assert len(pair.prompt_ids) + len(pair.chosen_ids) <= 64 and len(pair.prompt_ids) + len(pair.rejected_ids) <= 64
    assert pair.chosen_ids and pair.rejected_ids


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in the TensorBoard event files under `folder`, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in {p.parent for p in folder.rglob("events.out.tfevents.*")}:
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_report_to_tensorboard_writes_every_step_under_trl_names(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(str(tiny_model_dir))
    cfg = DPOTrainConfig(loss="ln-dpo", beta=5.0, learning_rate=1e-2, batch_size=2, grad_accum=1, epochs=1,
                         warmup_ratio=0.0, precision="fp32", eval_fraction=0.0, save_steps=100, report_to=["tensorboard"])
    model = load_model(str(tiny_model_dir), cfg)
    _, log, _ = train_dpo(model, tokenizer, ROWS, cfg, tmp_path / "work", tracking=tmp_path / "tracking")
    written = scalars(tmp_path / "tracking")
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
                 "logps/chosen", "logps/rejected", "margin_normalised"):
        assert [step for step, _ in written[name]] == [1, 2, 3], name
        assert [v for _, v in written[name]] == pytest.approx([e[name] for e in log], abs=1e-5), name

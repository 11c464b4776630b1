"""ArmoRM without its remote code: a tiny random checkpoint with ArmoRM's state-dict names and config layout,
a Llama-3 chat template, and its pad id outside the embedding matrix, scored against a hand computation of
its formula (written the way ArmoRM's own code finds its positions: by token pattern, one at a time)."""

import json

import pytest
import torch

from fusechat.scorers.armorm import conversation_ids
from fusechat.scorers.reward_model import RewardModel

LLAMA3_TEMPLATE = ("{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
                   "'<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                   "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
OBJECTIVES, GATE_WIDTH, GATE_LAYERS = 19, 16, 3


@pytest.fixture(scope="module")
def armorm_dir(smol_tokenizer_dir, tmp_path_factory):
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    folder = tmp_path_factory.mktemp("armorm")
    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    tokenizer.add_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], special_tokens=True)
    vocab = len(tokenizer)
    tokenizer.add_tokens(["[PAD]"], special_tokens=True)  # like ArmoRM's: id == vocab size, outside the embeddings
    tokenizer.pad_token = "[PAD]"
    tokenizer.chat_template = LLAMA3_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, pad_token_id=vocab, num_objectives=OBJECTIVES, gating_hidden_dim=GATE_WIDTH,
                         gating_n_hidden=GATE_LAYERS, gating_temperature=10)
    config.architectures = ["LlamaForRewardModelWithGating"]
    config.auto_map = {"AutoModelForSequenceClassification": "modeling_custom.LlamaForRewardModelWithGating"}
    config.save_pretrained(folder)  # with pad_token_id = vocab size, as ArmoRM's
    torch.manual_seed(0)
    config.pad_token_id = None  # LlamaModel refuses a padding index outside its embeddings; the file keeps it
    state = {f"model.{k}": v for k, v in LlamaModel(config).state_dict().items()}
    sizes = [32] + [GATE_WIDTH] * GATE_LAYERS + [OBJECTIVES]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        state[f"gating.layers.{i}.weight"] = torch.randn(b, a) / a ** 0.5
        state[f"gating.layers.{i}.bias"] = torch.randn(b) * 0.1
    state["gating.logit_scale"] = torch.tensor([2.5])
    state["regression_layer.weight"] = torch.randn(OBJECTIVES, 32) * 0.1
    state["reward_transform_matrix"] = torch.eye(OBJECTIVES) + 0.1 * torch.randn(OBJECTIVES, OBJECTIVES)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    return folder


def by_hand(folder, ids: list[int]) -> float:
    """ArmoRM's formula, one conversation, no padding, positions found as its own code finds them."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    config = LlamaConfig.from_pretrained(folder)
    config.pad_token_id = None  # ArmoRM's lies outside the embeddings; one unpadded conversation needs none
    weights = load_file(folder / "model.safetensors")
    model = LlamaModel(config)
    model.load_state_dict({k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")})
    with torch.no_grad():
        states = model(input_ids=torch.tensor([ids])).last_hidden_state[0].double()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    # ArmoRM's pattern ends in "\n\n" (one token for Llama-3; this test tokenizer splits it before a word):
    # its start, the position ArmoRM takes, is the same without it
    pattern = tokenizer.encode("<|eot_id|><|start_header_id|>assistant<|end_header_id|>", add_special_tokens=False)
    gate_at = max(j for j in range(len(ids) - len(pattern) + 1) if ids[j:j + len(pattern)] == pattern)
    w = {k: v.double() for k, v in weights.items()}
    rewards = w["regression_layer.weight"] @ states[-1]
    x = states[gate_at]
    for i in range(GATE_LAYERS + 1):
        x = w[f"gating.layers.{i}.weight"] @ x + w[f"gating.layers.{i}.bias"]
        if i < GATE_LAYERS:
            x = torch.relu(x)
    gate = torch.softmax(x / 10, dim=0) * w["gating.logit_scale"][0]
    return float((gate * (rewards @ w["reward_transform_matrix"])).sum())


PAIRS = [("What is 2+2?", "4"), ("Write a poem about rain.", "Rain taps the glass, " * 6), ("Hi", "Hello! How can I help?")]


def test_the_score_is_armorms_formula_and_the_same_in_any_batch(armorm_dir):
    rm = RewardModel(str(armorm_dir), batch_size=8, precision="fp32")
    assert rm.armorm is not None  # loaded natively: no remote code (the folder has none)
    batched = rm.score(PAIRS)
    single = RewardModel(str(armorm_dir), batch_size=1, precision="fp32").score(PAIRS)
    assert batched == pytest.approx(single, abs=1e-5)  # a padded batch, pad id outside the embeddings
    # data parallel: batches dealt to replicas (one per GPU; two on the CPU here), the same scores
    parallel = RewardModel(str(armorm_dir), batch_size=1, precision="fp32", replicas=2)
    assert len(parallel.replicas) == 2 and parallel.score(PAIRS) == pytest.approx(single, abs=1e-6)
    for (prompt, response), got in zip(PAIRS, batched):
        ids, _ = conversation_ids(rm.tokenizer, prompt, response, 4096)
        assert got == pytest.approx(by_hand(armorm_dir, ids), abs=1e-5)
    assert len({round(s, 5) for s in batched}) == 3


def test_the_gate_reads_the_user_turns_end_and_the_reward_the_assistant_turns_end(armorm_dir):
    rm = RewardModel(str(armorm_dir), precision="fp32")
    tok = rm.tokenizer
    header = tok.encode("<|start_header_id|>assistant<|end_header_id|>", add_special_tokens=False)
    ids, gate = conversation_ids(tok, "Name a colour.", "Blue.", 4096)
    assert ids[gate] == tok.convert_tokens_to_ids("<|eot_id|>") and ids[gate + 1: gate + 1 + len(header)] == header
    end = len(ids) - 1  # where the reward is read (the last real token; see reward_positions)
    assert end > gate + len(header) and ids[end] == tok.convert_tokens_to_ids("<|eot_id|>")  # inside the assistant turn
    assert tok.decode(ids[gate + 1 + len(header): end]).strip() == "Blue."


def test_a_long_conversation_loses_prompt_tokens_never_the_assistant_header(armorm_dir):
    rm = RewardModel(str(armorm_dir), precision="fp32", max_length=48)
    tok = rm.tokenizer
    prompt = "Tell me everything about " + "the history of rivers and " * 30 + "lakes."
    ids, gate = conversation_ids(tok, prompt, "Rivers flow.", 48)
    assert len(ids) == 48 and ids[0] == tok.convert_tokens_to_ids("<|begin_of_text|>")
    assert tok.decode(ids[gate + 1:]).startswith("<|start_header_id|>assistant<|end_header_id|>")
    assert tok.decode(ids).endswith("Rivers flow.<|eot_id|>")
    assert rm.score([(prompt, "Rivers flow.")])[0] == pytest.approx(by_hand(armorm_dir, ids), abs=1e-5)
    # a response longer than the window: its start and the header stay
    ids, gate = conversation_ids(tok, "Hi", "word " * 200, 48)
    assert len(ids) == 48 and gate == 0 and tok.decode(ids[1:]).startswith("<|start_header_id|>assistant")


def test_a_folder_that_is_not_armorm_is_named(armorm_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from fusechat import FusechatError

    broken = tmp_path / "broken"
    shutil.copytree(armorm_dir, broken)
    weights = load_file(broken / "model.safetensors")
    del weights["gating.logit_scale"]
    save_file(weights, broken / "model.safetensors")
    with pytest.raises(FusechatError, match=r"not ArmoRM's weights \(missing \['gating.logit_scale'\]"):
        RewardModel(str(broken), precision="fp32")
    assert json.loads((armorm_dir / "config.json").read_text())["architectures"] == ["LlamaForRewardModelWithGating"]

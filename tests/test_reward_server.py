"""The reward model over HTTP (fusechat.scorers.reward_server) against a local server that speaks vLLM's
pooling API (`POST /pooling`, chat messages in, the head's output out) and scores with a real, tiny
sequence-classification model through fusechat's in-process RewardModel: the served scores must be the
in-process ones. `scripts/vllm_cpu_check.sh 6` runs the same client against `vllm serve --runner pooling`."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

PAIRS = [("What is 2 + 2?", "4."), ("Name a colour.", "Blue, the colour of a clear sky."),
         ("Say hi.", "Hello there! " * 40), ("Is 7 prime?", "Yes.")]


@pytest.fixture(scope="module")
def rm_dir(smol_tokenizer_dir, tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-rm")
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def serve(rm, refuse: bool = False, seen: list | None = None):
    """A pooling server on a free port: the `data` vLLM returns for a one-label classifier, raw."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if seen is not None:
                seen.append(body)
            if refuse or self.path != "/pooling" or body["model"] != "tiny-rm":
                self._answer(400, {"error": {"message": "refused", "code": 400}})
                return
            user, assistant = body["messages"]
            rm.max_length = body["truncate_prompt_tokens"]
            [score] = rm.score([(user["content"], assistant["content"])])
            self._answer(200, {"object": "list", "model": body["model"],
                               "data": [{"index": 0, "object": "pooling", "data": [score]}]})

        def _answer(self, code, payload):
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_served_scores_are_the_in_process_scores(rm_dir):
    from fusechat.scorers.reward_model import RewardModel
    from fusechat.scorers.reward_server import RewardServer

    here = RewardModel(str(rm_dir), precision="fp32", max_length=64)
    want = here.score(PAIRS)
    seen = []
    server = serve(RewardModel(str(rm_dir), precision="fp32"), seen=seen)
    try:
        got = RewardServer(url(server) + "/v1", "tiny-rm", concurrency=3, max_length=64).score(PAIRS)  # /v1 or not: one server
    finally:
        server.shutdown()
    assert got == pytest.approx(want, abs=1e-5) and len(set(got)) == len(got)
    # the contract with vLLM: raw head output, over-long conversations cut from the left like in-process
    assert all(b["use_activation"] is False and b["truncate_prompt_tokens"] == 64 and b["truncation_side"] == "left"
               for b in seen)


def test_a_refused_conversation_is_a_nan_reward_and_a_dead_replica_costs_nothing(rm_dir):
    from fusechat.scorers.reward_model import RewardModel
    from fusechat.scorers.reward_server import RewardServer

    refusing = serve(None, refuse=True)
    try:
        assert all(math.isnan(x) for x in RewardServer(url(refusing), "tiny-rm").score(PAIRS))
    finally:
        refusing.shutdown()

    alive, dead = serve(RewardModel(str(rm_dir), precision="fp32")), serve(None)
    dead_url = url(dead)
    dead.shutdown()
    dead.server_close()  # nothing listens there now
    try:
        scores = RewardServer([dead_url, url(alive)], "tiny-rm", concurrency=2).score(PAIRS)
    finally:
        alive.shutdown()
    assert len(scores) == len(PAIRS) and not any(math.isnan(x) for x in scores)


def test_the_score_stage_opens_the_endpoint_from_the_recipe():
    from fusechat import FusechatError
    from fusechat.recipe import RewardConfig
    from fusechat.score import open_reward

    cfg = RewardConfig(kind="reward-model", model="tiny-rm", endpoint="http://127.0.0.1:9", batch_size=4)
    with pytest.raises(FusechatError, match="unreachable"):  # checked before any scoring starts
        open_reward(cfg)
    with pytest.raises(ValueError, match="endpoint is for kind reward-model"):
        RewardConfig(kind="judge", model="x", endpoint="http://127.0.0.1:9")

"""MT-Bench under the paper's protocol: both turns, graded 1-10 with FastChat's prompts by a judge endpoint.
The judge here is a local OpenAI-compatible server that is told the answers: it grades an answer 10 when it
holds the expected text and 1 when it does not, so a right and a wrong answer must come out 10 and 1."""

import pytest
import yaml

from fusechat.backends.base import Request
from fusechat.backends.openai_api import OpenAIBackend
from fusechat.benchmarks import mtbench_graded
from fusechat.recipe import Sampling
from http_stub import chat_reply, serve  # tests/ is on sys.path


EXPECTED = "42"


def grade(body: dict) -> dict:
    """Told the answer: 10 when the answer under grade (after the last "Assistant" marker) holds it, else 1."""
    prompt = body["messages"][-1]["content"]
    answer = prompt.rsplit("Assistant A:", 1)[-1] if "Assistant A:" in prompt else prompt.split("[The Start of Assistant's Answer]")[-1]
    answer = answer.split("<|The End")[0].split("[The End")[0]
    return chat_reply(f"Fair enough. Rating: [[{10 if EXPECTED in answer else 1}]]")


@pytest.fixture
def judge():
    with serve(grade, "told-the-answer") as (url, seen):
        yield url, seen


def test_the_ratings_are_read_as_fastchat_reads_them():
    assert mtbench_graded.rating("Good answer. Rating: [[8]]") == 8.0
    assert mtbench_graded.rating("Rating: [7.5]") == 7.5
    assert mtbench_graded.rating("I cannot rate this.") is None
    assert mtbench_graded.question_score([8.0, None]) == 8.0 and mtbench_graded.question_score([None, None]) is None


def test_a_right_answer_gets_10_and_a_wrong_one_1_on_both_turns(judge):
    judge_url, seen = judge
    prompts = mtbench_graded.judge_prompts()
    math_q = {"id": "mtbench-x", "turns": ["What is 6 x 7?", "And 84 / 2?"], "category": "math",
              "reference": ["6 x 7 = 42", "84 / 2 = 42"]}
    backend = OpenAIBackend(judge_url, "told-the-answer", concurrency=2)
    grades = {}
    for kind, answers in (("right", ("It is 42.", "Also 42.")), ("wrong", ("It is 41.", "Also 41."))):
        requests = [Request(mtbench_graded.judge_messages(prompts, math_q, answers, turn), 0) for turn in (1, 2)]
        texts = [g.text for g in backend.generate(requests, Sampling(temperature=0, max_new_tokens=64))]
        grades[kind] = [mtbench_graded.rating(t) for t in texts]
    assert grades == {"right": [10.0, 10.0], "wrong": [1.0, 1.0]}
    # two requests in flight: the server may see them in either order
    [first] = [b["messages"] for b in seen[:2] if "### User:" not in b["messages"][1]["content"]]
    [second] = [b["messages"] for b in seen[:2] if "### User:" in b["messages"][1]["content"]]
    # a math question is graded against the reference answer; the second turn sees the whole conversation
    assert "[The Start of Reference Answer]\n6 x 7 = 42" in first[1]["content"] and first[0]["content"] == "You are a helpful assistant."
    assert "### User:\nAnd 84 / 2?" in second[1]["content"] and "### Reference answer:\n84 / 2 = 42" in second[1]["content"]
    assert "### Assistant A:\nIt is 42." in second[1]["content"] and seen[0]["temperature"] == 0


def test_both_turns_through_the_eval_stage(tmp_path, tiny_model_dir, judge):
    """Every model answers both turns (the second after its own first answer); the judge grades each turn;
    the score is on FastChat's 1-10 scale and its label names the judge."""
    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import RunFolder

    judge_url, seen = judge
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "mt", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": str(tiny_model_dir)}],
        "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                 "max_new_tokens": 6, "batch_size": 4,
                 "mtbench_graded": {"n": 3, "judge": {"endpoint": judge_url, "model": "told-the-answer"}}}}))
    recipe = load_recipe(path)
    run_stage("eval", recipe)
    folder = RunFolder(recipe.run_path)
    [result] = folder.records("eval", "results")
    assert result["benchmark"] == "mtbench_graded" and result["n"] == 3 and "judge: told-the-answer" in result["label"]
    items = folder.records("eval", "items")
    assert all(isinstance(r["turn_2"], str) and r["grades"] == [1.0, 1.0] and r["score"] == 1.0 for r in items)
    assert result["score"] == 1.0  # a random tiny model never says what the judge expects
    assert len(seen) == 6  # two turns of three questions
    multi = [b["messages"][1]["content"] for b in seen if "### User:" in b["messages"][1]["content"]]
    assert len(multi) == 3 and all(f"### Assistant A:\n{r['turn_2']}" in "".join(multi) for r in items)
    assert run_stage("eval", recipe)["skipped"]

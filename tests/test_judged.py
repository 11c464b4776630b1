"""AlpacaEval 2 / Arena-Hard: answers in the official tools' formats and the pairwise judged comparison
through an OpenAI-compatible judge (llama.cpp's own server here), both orders."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from fusechat import FusechatError
from fusechat.benchmarks import judged
from fusechat.pipeline import run_stage
from fusechat.recipe import JudgedSet, PairwiseJudge, load_recipe, recipe_from_dict
from fusechat.runfolder import RunFolder

ALPACA = [{"instruction": "Name a primary colour.", "dataset": "helpful_base", "output": "red", "generator": "gpt4"},
          {"instruction": "Say hello in French.", "dataset": "oasst", "output": "bonjour", "generator": "gpt4"}]
ARENA_V01 = [{"question_id": "q1", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "What is 2 + 2?"}]},
             {"question_id": "q2", "category": "arena-hard-v0.1", "cluster": "c", "turns": [{"content": "Spell 'cat'."}]}]
ARENA_V2 = [{"uid": "u1", "category": "hard_prompt", "subcategory": "math", "prompt": "What is 3 + 3?"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_swapping_the_answers_cancels_a_judge_that_always_picks_a():
    assert judged.item_score(1.0, 1.0) == 0.5  # "A" whatever is shown: no preference left
    assert judged.item_score(0.9, 0.1) == pytest.approx(0.9)  # prefers the candidate in both places
    assert judged.item_score(0.2, 0.8) == pytest.approx(0.2)
    assert judged.item_score(None, None) == 0.5  # no verdict in either order: a tie
    assert judged.agrees(0.9, 0.1) and not judged.agrees(1.0, 1.0) and not judged.agrees(None, 0.1)
    assert judged.p_first({"A": -0.1, " B": -2.3, "The": -0.5}) == pytest.approx(0.9 / (0.9 + 0.1), abs=0.01)
    assert judged.p_first({"Sure": 0.0}) is None


def test_questions_of_each_format_and_a_bad_row_named(tmp_path):
    alpaca = tmp_path / "alpaca_eval.json"
    alpaca.write_text(json.dumps(ALPACA))
    rows = judged.questions(JudgedSet(format="alpaca_eval", questions=str(alpaca)))
    assert [r["prompt"] for r in rows] == [a["instruction"] for a in ALPACA] and rows[1]["dataset"] == "oasst"
    v01 = judged.questions(JudgedSet(format="arena_hard", questions=write_jsonl(tmp_path / "q.jsonl", ARENA_V01), n=1))
    assert v01 == [{"id": "q1", "prompt": "What is 2 + 2?", "category": "arena-hard-v0.1", "version": "v0.1"}]
    v2 = judged.questions(JudgedSet(format="arena_hard", questions=write_jsonl(tmp_path / "q2.jsonl", ARENA_V2)))
    assert v2[0]["id"] == "u1" and v2[0]["version"] == "v2"
    with pytest.raises(FusechatError, match=r"q3.jsonl.*row 0.*question_id"):
        judged.questions(JudgedSet(format="arena_hard", questions=write_jsonl(tmp_path / "q3.jsonl", [{"text": "x"}])))
    with pytest.raises(FusechatError, match=r"q4.jsonl.*row 0.*`turns` is a list of"):
        judged.questions(JudgedSet(format="arena_hard", questions=write_jsonl(
            tmp_path / "q4.jsonl", [{"question_id": "q", "turns": ["What is 2 + 2?"]}])))
    with pytest.raises(FusechatError, match=r"a5.jsonl.*row 0.*`instruction` \(a string\)"):
        judged.questions(JudgedSet(format="alpaca_eval", questions=write_jsonl(tmp_path / "a5.jsonl", [{"instruction": 7}])))


def test_a_judged_answer_file_is_never_written_outside_its_folder(tmp_path):
    with pytest.raises(FusechatError, match="outside"):
        judged.write_official(tmp_path / "eval", "alpaca_eval", "../../../escaped", [])
    assert not list(tmp_path.rglob("escaped*"))


def test_answer_files_are_what_the_official_tools_read(tmp_path):
    rows = [{"id": "q1", "prompt": "What is 2 + 2?", "response": "4", "version": "v0.1"}]
    path = judged.write_official(tmp_path, "arena_hard", "sft+dpo", rows)
    assert path == tmp_path / "arena_hard" / "model_answer" / "sft+dpo.jsonl"
    [record] = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["question_id"] == "q1" and record["model_id"] == "sft+dpo"
    assert record["choices"] == [{"index": 0, "turns": [{"content": "4"}]}] and {"answer_id", "tstamp"} <= set(record)
    v2 = judged.write_official(tmp_path / "v2", "arena_hard", "m", [dict(rows[0], version="v2")])
    record = json.loads(v2.read_text())
    assert record["uid"] == "q1" and record["messages"][-1] == {"role": "assistant", "content": {"answer": "4"}}
    alpaca = judged.write_official(tmp_path, "alpaca_eval", "m", [{"id": "a", "prompt": "Hi", "response": "Hello", "dataset": "d"}])
    assert json.loads(alpaca.read_text()) == [{"instruction": "Hi", "output": "Hello", "generator": "m", "dataset": "d"}]


def test_the_judged_baseline_must_be_evaluated():
    with pytest.raises(FusechatError, match="judged_baseline"):
        recipe_from_dict({"prompts": {"sets": [{"domain": "instruction", "pack": "sharegpt", "n": 1}]},
                          "sources": [{"name": "s", "model": "m"}],
                          "eval": {"models": ["sft+dpo"], "mtbench": 0, "judged": [{"format": "alpaca_eval", "questions": "q.json"}],
                                   "pairwise_judge": {"endpoint": "http://localhost:1/v1", "model": "j"}}})


@pytest.mark.real
def test_a_real_judge_prefers_the_right_answer_in_both_orders(server):
    client = judged.PairwiseJudgeClient(PairwiseJudge(endpoint=server, model="smollm2-135m", concurrency=2))
    [(candidate_first, baseline_first)] = client.verdicts(
        [("What is the capital of France?", "The capital of France is Paris.", "The capital of France is Berlin.")])
    assert candidate_first is not None and baseline_first is not None  # the judge answers with a letter
    assert judged.item_score(candidate_first, baseline_first) > 0.5


@pytest.mark.real
def test_judged_sets_through_the_eval_stage(tmp_path, tiny_model_dir, server):
    """The tiny model answers both sets as `base` and as `copy` (the same weights): the files are written
    for both, and since the two answers to every question are the same text, a judge that sees them in
    both orders must give exactly 0.5, whatever its own bias."""
    alpaca = tmp_path / "alpaca_eval.json"
    alpaca.write_text(json.dumps(ALPACA))
    arena = write_jsonl(tmp_path / "question.jsonl", ARENA_V01)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": str(tiny_model_dir)}],
        "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                 "max_new_tokens": 8, "extra_models": {"copy": str(tiny_model_dir)},
                 "judged": [{"format": "alpaca_eval", "questions": str(alpaca)}, {"format": "arena_hard", "questions": arena}],
                 "pairwise_judge": {"endpoint": server, "model": "smollm2-135m-judge", "concurrency": 2}}}))
    recipe = load_recipe(path)
    run_stage("eval", recipe)
    folder = RunFolder(recipe.run_path)
    stage = folder.stage_dir("eval")
    for model in ("base", "copy"):
        outputs = json.loads((stage / "alpaca_eval" / f"{model}.json").read_text())
        assert [o["instruction"] for o in outputs] == [a["instruction"] for a in ALPACA] and outputs[0]["generator"] == model
        answers = [json.loads(x) for x in (stage / "arena_hard" / "model_answer" / f"{model}.jsonl").read_text().splitlines()]
        assert [a["question_id"] for a in answers] == ["q1", "q2"]
    results = {r["benchmark"]: r for r in folder.records("eval", "results")}
    assert set(results) == {"alpaca_eval", "arena_hard"}  # the baseline itself is not judged
    for bench, n in (("alpaca_eval", 2), ("arena_hard", 2)):
        r = results[bench]
        # (llama.cpp's log-probabilities move in the third digit with how requests share a batch)
        assert r["model"] == "copy" and r["n"] == n and r["score"] == pytest.approx(0.5, abs=0.02)
        assert "smollm2-135m-judge" in r["label"] and "both orders" in r["label"]
    assert run_stage("eval", recipe)["skipped"]


def test_every_model_is_judged_against_the_sets_own_baseline_answers(tmp_path, tiny_model_dir):
    """Arena-Hard v0.1 against gpt-4-0314's answers, as published: the base is judged too, the judge sees the
    baseline's own text, and the label names both. The judge here is told the answer ("4"): P(A) 0.9 when only
    A holds it, 0.1 when only B does; the tiny model never says it, so every model scores 0.1."""
    from http_stub import chat_reply, serve

    arena = write_jsonl(tmp_path / "question.jsonl", ARENA_V01[:1])
    baseline = write_jsonl(tmp_path / "gpt-4-0314.jsonl", [{
        "question_id": "q1", "answer_id": "a", "model_id": "gpt-4-0314", "tstamp": 0,
        "choices": [{"index": 0, "turns": [{"content": "2 + 2 = 4"}]}]}])

    def told(body):
        prompt = body["messages"][-1]["content"]
        a = prompt.split("[Assistant A's answer]")[1].split("[Assistant B's answer]")[0]
        b = prompt.split("[Assistant B's answer]")[1].split("Which answer is better?")[0]
        p = 0.9 if "= 4" in a and "= 4" not in b else 0.1 if "= 4" in b and "= 4" not in a else 0.5
        return chat_reply("A", {"A": math.log(p), "B": math.log(1 - p)})

    with serve(told, "told-the-answer") as (url, seen):
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({
            "name": "t", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
            "sources": [{"name": "s", "model": str(tiny_model_dir)}],
            "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                     "max_new_tokens": 4, "extra_models": {"copy": str(tiny_model_dir)},
                     "judged": [{"format": "arena_hard", "questions": arena, "baseline": baseline}],
                     "pairwise_judge": {"endpoint": url, "model": "told-the-answer", "concurrency": 2}}}))
        run_stage("eval", load_recipe(path))
        results = {r["model"]: r for r in RunFolder(load_recipe(path).run_path).records("eval", "results")}
        assert set(results) == {"base", "copy"}  # the base is judged too: the baseline is gpt-4-0314
        assert all(r["score"] == pytest.approx(0.1) for r in results.values())
        assert "told-the-answer; vs gpt-4-0314" in results["base"]["label"]
        assert len(seen) == 4 and all("2 + 2 = 4" in b["messages"][-1]["content"] for b in seen)  # 2 models x 2 orders


def test_a_question_the_baseline_did_not_answer_is_named(tmp_path):
    spec = JudgedSet(format="alpaca_eval", questions="x", baseline=write_jsonl(tmp_path / "ref.jsonl", ALPACA[:1]))
    with pytest.raises(FusechatError, match="no baseline answer to question alpaca-1"):
        judged.baseline_answers(spec, [{"id": "alpaca-0", "prompt": ALPACA[0]["instruction"]},
                                       {"id": "alpaca-1", "prompt": ALPACA[1]["instruction"]}])
    name, answers = judged.baseline_answers(spec, [{"id": "alpaca-0", "prompt": ALPACA[0]["instruction"]}])
    assert name == "gpt4" and answers == {"alpaca-0": "red"}


def test_alpaca_eval_against_its_baseline_writes_alpaca_evals_annotations(tmp_path, tiny_model_dir, monkeypatch):
    """Judged against AlpacaEval's reference outputs, every model's judgments are written as alpaca_eval's
    annotations (preference 1 + P(model better), in the set's order); without alpaca_eval's virtualenv the
    stage says how to get the length-controlled win rate instead of computing it (tests/test_alpaca_lc.py)."""
    from http_stub import chat_reply, serve

    monkeypatch.setenv("FUSECHAT_ALPACA_EVAL_PYTHON", str(tmp_path / "no-such-python"))
    questions = tmp_path / "alpaca_eval.json"
    questions.write_text(json.dumps([{k: r[k] for k in ("instruction", "dataset")} for r in ALPACA]))
    reference = tmp_path / "gpt4_turbo.json"
    reference.write_text(json.dumps([{**r, "generator": "gpt4_1106_preview"} for r in ALPACA]))
    with serve(lambda body: chat_reply("A", {"A": math.log(0.7), "B": math.log(0.3)}), "j") as (url, seen):
        path = tmp_path / "r.yaml"
        path.write_text(yaml.safe_dump({
            "name": "t", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
            "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
            "sources": [{"name": "s", "model": str(tiny_model_dir)}],
            "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                     "max_new_tokens": 4, "judged": [{"format": "alpaca_eval", "questions": str(questions),
                                                      "baseline": str(reference)}],
                     "pairwise_judge": {"endpoint": url, "model": "j", "concurrency": 2}}}))
        manifest = run_stage("eval", load_recipe(path))
    run = load_recipe(path).run_path
    annotations = json.loads((run / "eval" / "alpaca_eval" / "annotations" / "base.json").read_text())
    # a judge that always says A with P 0.7: each question 0.5 over both orders
    assert [(a["instruction"], a["output_1"], a["generator_1"], a["preference"]) for a in annotations] == [
        ("Name a primary colour.", "red", "gpt4_1106_preview", 1.5), ("Say hello in French.", "bonjour", "gpt4_1106_preview", 1.5)]
    assert "scripts/alpaca_eval_venv.sh" in json.dumps(manifest)
    results = RunFolder(run).records("eval", "results")
    assert [r["benchmark"] for r in results] == ["alpaca_eval"]  # no length-controlled row without alpaca_eval

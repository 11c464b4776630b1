"""AlignBench under the paper's protocol: each answer graded 1-10 with AlignBench's rubric by a judge endpoint.
The fixture is four real v1.1 questions in the repository's layout (its config files unchanged); the judge is a
local OpenAI-compatible server told the answers: it grades 9 when the answer holds the reference's key
text and 1 when it does not, in AlignBench's dictionary format, so a right and a wrong answer come out 9 and 1."""

from pathlib import Path

import pytest
import yaml

from fusechat.backends.base import Request
from fusechat.backends.openai_api import OpenAIBackend
from fusechat.benchmarks import alignbench
from fusechat.recipe import Sampling
from http_stub import chat_reply, serve  # tests/ is on sys.path

FIXTURE = Path(__file__).parent / "fixtures" / "alignbench"
KEY = {"alignbench-164": "100.5", "alignbench-136": "64", "alignbench-237": "三人行", "alignbench-305": "北极"}


def grade(body: dict) -> dict:
    prompt = body["messages"][-1]["content"]
    answer = prompt.split("[助手的答案开始]\n")[1].split("\n[助手的答案结束]")[0]
    reference = prompt.split("[参考答案开始]\n")[1].split("\n[参考答案结束]")[0]
    right = any(key in answer and key in reference for key in KEY.values())
    g = 9 if right else 1
    return chat_reply(f"比较参考答案……事实正确性: {g}。\n{{'事实正确性': {g}, '满足用户需求': {g}, '综合得分': {g}}}")


@pytest.fixture
def judge():
    with serve(grade, "told-the-answer") as (url, seen):
        yield url, seen


def test_the_grade_is_read_as_alignbench_reads_it():
    assert alignbench.rating("解释……{'事实正确性': 9, '满足用户需求': 6, '综合得分': 7}") == 7.0
    # the last dictionary counts; without one, the first "'综合得分': n" anywhere
    assert alignbench.rating("{'综合得分': 2} 修正： {'事实正确性': 8, '综合得分': 8}") == 8.0
    assert alignbench.rating("'综合得分': 6.5 然后 {'清晰度': 3}") == 6.5
    assert alignbench.rating("无法评分") is None


def test_the_overall_score_is_the_mean_of_the_reasoning_and_language_halves():
    rows = [{"group": "数学计算", "score": 8.0}, {"group": "数学计算", "score": 6.0},  # 7
            {"group": "逻辑推理", "score": 3.0},  # reasoning: (7 + 3) / 2 = 5
            {"group": "基本任务", "score": 9.0}, {"group": "中文理解", "score": 5.0}]  # language: 7
    assert alignbench.overall(rows) == pytest.approx(6.0)  # a plain mean of the five would be 6.2
    score, low, high = alignbench.summary(rows)
    assert score == pytest.approx(6.0) and low <= score <= high and low < high


def test_the_prompt_lists_the_subcategorys_dimensions_with_their_definitions():
    [math_q, translation] = [q for q in _questions() if q["id"] in ("alignbench-164", "alignbench-237")]
    [asked] = alignbench.judge_messages(FIXTURE, math_q, "一百点五")
    text = asked["content"]
    # 初等数学 is a 逻辑推理型回答: its four dimensions, numbered and defined, then the question and reference
    assert "由于您评估的回答类型是数学计算" in text and "3. 逻辑连贯性: 回答是否在整体上保持一致" in text
    assert "4. 完备性:" in text and "创造性" not in text
    assert "用户的提问： 201斤等于多少千克\n[参考答案开始]\n100.5千克\n[参考答案结束]\n[助手的答案开始]\n一百点五\n" in text
    assert "5. 丰富度:" in alignbench.judge_messages(FIXTURE, translation, "x")[0]["content"]  # 翻译: 生成型回答


def _recipe_for(folder, n=None):
    from fusechat.recipe import recipe_from_dict

    return recipe_from_dict({"name": "a", "target": {"model": "m"}, "sources": [{"name": "s", "model": "m"}],
                             "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
                             "eval": {"alignbench": {"n": n, "data": str(folder),
                                                     "judge": {"endpoint": "http://x/v1", "model": "j"}}}}, "test")


def _questions(n=None):
    return alignbench.items(_recipe_for(FIXTURE, n), set())


def test_a_right_answer_gets_9_and_a_wrong_one_1(judge):
    judge_url, seen = judge
    backend = OpenAIBackend(judge_url, "told-the-answer", concurrency=2)
    questions = _questions()
    assert [q["id"] for q in questions] == ["alignbench-136", "alignbench-164", "alignbench-237", "alignbench-305"]
    for kind, expected in (("right", 9.0), ("wrong", 1.0)):
        answers = [f"答案是{KEY[q['id']]}。" if kind == "right" else "我不知道。" for q in questions]
        requests = [Request(alignbench.judge_messages(FIXTURE, q, a), 0) for q, a in zip(questions, answers)]
        texts = [g.text for g in backend.generate(requests, Sampling(temperature=0, max_new_tokens=64))]
        assert [alignbench.rating(t) for t in texts] == [expected] * 4
    assert seen[0]["temperature"] == 0


def test_a_question_without_a_rubric_is_one_line_naming_its_line(tmp_path):
    from fusechat import FusechatError

    (tmp_path / "config").mkdir()
    (tmp_path / "data").mkdir()
    for f in alignbench.FILES[1:]:
        (tmp_path / f).write_text((FIXTURE / f).read_text())
    rows = (FIXTURE / alignbench.FILES[0]).read_text().splitlines()
    (tmp_path / alignbench.FILES[0]).write_text(rows[0] + "\n" + rows[1].replace('"初等数学"', '"占星"') + "\n")
    with pytest.raises(FusechatError, match=r"data_v1.1_release.jsonl:2: subcategory '占星' has no rubric"):
        alignbench.items(_recipe_for(tmp_path), set())
    with pytest.raises(FusechatError, match="has no data/data_v1.1_release.jsonl"):
        alignbench.files(str(tmp_path / "nowhere"))


def test_alignbench_through_the_eval_stage(tmp_path, tiny_model_dir, judge):
    """The eval stage grades every model's answers; the score is AlignBench's overall on its 1-10 scale, the
    items keep the judgments and their category, and the label names the judge."""
    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import RunFolder

    judge_url, seen = judge
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ab", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": str(tiny_model_dir)}],
        "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                 "max_new_tokens": 6, "batch_size": 4,
                 "alignbench": {"data": str(FIXTURE), "judge": {"endpoint": judge_url, "model": "told-the-answer"}}}}))
    recipe = load_recipe(path)
    run_stage("eval", recipe)
    folder = RunFolder(recipe.run_path)
    [result] = folder.records("eval", "results")
    assert result["benchmark"] == "alignbench" and result["n"] == 4 and "judge: told-the-answer" in result["label"]
    items = folder.records("eval", "items")
    assert all(r["score"] == 1.0 and "综合得分" in r["judgments"][0] and r["group"] for r in items)
    assert result["score"] == 1.0 and len(seen) == 4  # a random tiny model never says what the judge expects
    assert run_stage("eval", recipe)["skipped"]

"""LiveBench with its ground-truth scorers: a right answer scores 1 and a wrong one 0 on each of the 18 tasks
(partial credit where LiveBench gives it), the release's questions only, LiveBench's aggregate. The fixtures
are rows in the hub sets' layout, a few per task."""

from pathlib import Path

import pytest
import yaml

from fusechat.benchmarks import livebench, livebench_scorers
from fusechat.recipe import recipe_from_dict

FIXTURE = Path(__file__).parent / "fixtures" / "livebench"
AMC = ("What is $2+3$? $\\textbf{(A) }4\\qquad\\textbf{(B) }5\\qquad\\textbf{(C) }6\\qquad\\textbf{(D) }7\\qquad"
       "\\textbf{(E) }8$")

# task, ground truth, right answers, wrong answers (LiveBench's own parsing: bold, <solution>, \boxed, last line)
CASES = [
    ("amc_12a_2023", "B", ["So the answer is BBBBB", "<solution>BBBBB</solution>", "The sum is \\boxed{B}", "...\n(B)"],
     ["So the answer is CCCCC", "\\boxed{C}", "I do not know."]),
    ("aime_2024_I", "204", ["Thus the answer is 204.", "<solution>204</solution>"], ["Thus the answer is 203."]),
    ("web_of_lies_v2", "yes, no, yes", ["**yes, no, yes**", "Ann: **yes**; Bob: **no**; Cy: **yes**", "so: yes, no, yes"],
     ["**no, no, yes**", "**yes, no**"]),
    ("spatial", "3", ["There are **3** triangles.", "**three**", "\\boxed{3}"], ["There are **4** triangles.", "\\boxed{4}"]),
    ("spatial", "triangle", ["**equilateral triangle**"], ["**circle square triangle and more**"]),
    ("zebra_puzzle", "2", ["The cat is at ***2***", "The cat lives at position 2"], ["***3***", "position 2 or 3"]),
    ("connections", "apple,pear,plum,fig,red,blue,green,cyan",
     ["**apple, pear, plum, fig, red, blue, green, cyan**", "**Red, Blue, Green, Cyan, Fig, Plum, Pear, Apple**"],
     ["no bold list here", "**apple, red, plum, fig, pear, blue, green, cyan**"]),
    ("typos", "The model learns quickly.", ["The model learns quickly.", "<solution>The model learns quickly.</solution>"],
     ["The modle lerns quickly."]),
    ("plot_unscrambling", "Ann meets Bob. They marry. Bob dies.", ["<PLOT_SUMMARY>Ann meets Bob. They marry. Bob dies.</PLOT_SUMMARY>"],
     []),
    ("cta", "birthDate", ["birthDate", "The class is: birthDate", "\\boxed{\\text{birthDate}}"], ["name", "birthDate or name"]),
    ("tablejoin", "{'a': 'x', 'b': 'y'}", ["{'a': 'x', 'b': 'y'}", "```python\n{'a': 'x',\n 'b': 'y'}\n```",
                                           "<solution>{\"a\": \"x\", \"b\": \"y\"}</solution>"],
     ["{'a': 'y', 'b': 'x'}", "no mapping"]),
    ("usamo_2024_p2", "3,1,2", ["So the order is:\nAnswer: 3, 1, 2", "\\boxed{3,1,2}"], ["Answer: 5, 6, 7", "no idea"]),
]


@pytest.mark.parametrize("task, truth, right, wrong", CASES, ids=[c[0] for c in CASES])
def test_a_right_answer_scores_1_and_a_wrong_one_0(task, truth, right, wrong):
    for answer in right:
        assert livebench_scorers.score(task, truth, answer, AMC) == 1.0, answer
    for answer in wrong:
        assert livebench_scorers.score(task, truth, answer, AMC) == 0.0, answer


def test_partial_credit_where_livebench_gives_it():
    # plot_unscrambling: 1 - edit distance of the sentence order / sentences; one swap of three costs 2/3
    assert livebench_scorers.score("plot_unscrambling", "A b. C d. E f.", "C d. A b. E f.", "") == pytest.approx(1 / 3)
    # connections: the share of groups found; tablejoin: F1 of the mapping, rounded to 2 places
    assert livebench_scorers.score("connections", "a,b,c,d,e,f,g,h", "**a, b, c, d, e, h, g, x**", "") == 0.5
    assert livebench_scorers.score("tablejoin", "{'a': 'x', 'b': 'y'}", "{'a': 'x'}", "") == pytest.approx(0.67)
    # a reasoning model's <think> block is dropped first; a task without a scorer says None
    assert livebench_scorers.score("spatial", "3", "<think>**4**</think>It is **3**.", "") == 1.0
    assert livebench_scorers.score("no_such_task", "1", "1", "") is None
    # olympiad: one step out of place of three costs 2/3 (two edits)
    assert livebench_scorers.score("imo_2024_p1", "3,1,2", "Answer: 1, 3, 2", "") == pytest.approx(1 / 3)


CATEGORIES = ("math", "reasoning", "coding", "language", "data_analysis", "instruction_following")
DATA = {c: str(FIXTURE / f"{c}.jsonl") for c in CATEGORIES}


def _recipe(n=None, release="2024-08-31"):
    return recipe_from_dict({"name": "l", "target": {"model": "m"}, "sources": [{"name": "s", "model": "m"}],
                             "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
                             "eval": {"livebench": {"release": release, "n": n, "data": DATA}}}, "test")


def test_the_releases_questions_of_every_task():
    """A question released after the release, or removed by it, is not one of its questions."""
    got = livebench.items(_recipe(), set())
    assert [q["id"] for q in got] == ["livebench-" + i for i in ("m1", "m2", "m3", "m5", "r1", "r2", "r3", "c1", "c2",
                                                                   "l1", "l2", "l3", "d1", "d2", "d3", "i1", "i2", "i3", "i4")]
    assert got[0]["task"] == "amc_12a_2023" and got[0]["group"] == "math/math_comp" and got[0]["answer"] == "B"
    coding = {q["id"]: q for q in got}["livebench-c2"]
    assert coding["func_name"] == "add" and len(coding["cases"]) == 2 and coding["partial_solution"].startswith("class")
    # the earlier release still had r4 (removed 2024-08-31), and none of the questions released with 2024-08-31
    assert [q["id"] for q in livebench.items(_recipe(release="2024-07-26"), set())] == ["livebench-r4"]
    assert len(livebench.items(_recipe(n=1), set())) == 18  # one a task: math_comp's second is cut


RIGHT = {"m1": "So BBBBB", "m2": "The answer is 204", "m3": "$\\int x\\,dx = \\boxed{\\frac{x^2}{2} + C}$", "m5": "Answer: 3, 1, 2",
         "r1": "**yes, no, yes**", "r2": "**3**", "r3": "***2***", "c1": "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
         "c2": "```python\nclass Solution:\n    def add(self, a: int, b: int) -> int:\n        return a + b\n```",
         "l1": "**apple, pear, plum, fig, red, blue, green, cyan**", "l2": "The model learns quickly.",
         "l3": "<PLOT_SUMMARY>Ann meets Bob. They marry. Bob dies.</PLOT_SUMMARY>", "d1": "birthDate",
         "d2": "{'a': 'x', 'b': 'y'}", "d3": "a,b\n1,2\n3,4", "i1": "the river flows on in silence.",
         "i2": "* Rivers flow.\n* They reach the sea.", "i3": "A river ran. The end.", "i4": "The river floods."}
WRONG = {"m1": "So CCCCC", "m2": "The answer is 203", "m3": "$\\boxed{x^2}$", "m5": "Answer: 4, 5, 6",
         "r1": "**no, no, no**", "r2": "**4**", "r3": "***3***", "c1": "```python\nprint(0)\n```",
         "c2": "```python\n        return a - b\n```", "l1": "**apple, red, plum, fig, pear, blue, green, cyan**",
         "l2": "The modle lerns quickly.", "l3": "<PLOT_SUMMARY>Bob dies. They marry. Ann meets Bob.</PLOT_SUMMARY>",
         "d1": "name", "d2": "{'a': 'y'}", "d3": "a,b\n1,2\n3,5", "i1": "The River, Runs Quietly.",
         "i2": "* Rivers flow.", "i3": "A river ran. The end", "i4": "The stream floods."}


def test_a_right_answer_scores_1_and_a_wrong_one_0_on_each_of_the_18_tasks():
    """Through the benchmark's own scoring: the coding tasks run in the sandbox (the completion task continues
    the given start of the solution), instruction following by IFEval's checkers, AMPS_Hard by math-verify."""
    recipe = _recipe()
    got = livebench.items(recipe, set())
    tasks = {q["group"].split("/")[1] for q in got}
    assert tasks == set(livebench.SCORED) and len(livebench.SCORED) == 18
    keys = [q["id"].removeprefix("livebench-") for q in got]
    right = livebench.score(got, [RIGHT[k] for k in keys], recipe)
    wrong = livebench.score(got, [WRONG[k] for k in keys], recipe)
    assert dict(zip(keys, right)) == {k: 1.0 for k in keys}
    # plot_unscrambling's reversed order keeps one sentence in place: 1 - 2/3
    assert dict(zip(keys, wrong)) == {k: (pytest.approx(1 / 3) if k == "l3" else 0.0) for k in keys}
    # instruction following: the mean of "all followed" and the share followed (lowercase kept, a comma not)
    [i1] = [q for q in got if q["id"] == "livebench-i1"]
    assert livebench.score([i1], ["the river runs, quietly."], recipe) == [0.25]


def test_the_score_is_livebenchs_mean_of_categories_of_tasks():
    rows = [{"group": "math/math_comp", "score": 1.0}, {"group": "math/math_comp", "score": 0.0},  # task 0.5
            {"group": "math/olympiad", "score": 1.0},  # math: (0.5 + 1) / 2 = 0.75
            {"group": "language/typos", "score": 0.25}]  # language 0.25; overall 0.5
    assert livebench.overall(rows) == pytest.approx(0.5)  # a plain mean would be 0.5625
    score, low, high = livebench.summary(rows)
    assert score == pytest.approx(0.5) and low <= score <= high


def test_livebench_through_the_eval_stage(tmp_path, tiny_model_dir):
    from fusechat.pipeline import run_stage
    from fusechat.recipe import load_recipe
    from fusechat.runfolder import RunFolder

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "lb", "run_dir": str(tmp_path / "run"), "target": {"model": str(tiny_model_dir)},
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
        "sources": [{"name": "s", "model": str(tiny_model_dir)}],
        "eval": {"math": None, "humaneval": 0, "mtbench": 0, "constraints": 0, "models": ["base"], "dtype": "float32",
                 "max_new_tokens": 4, "batch_size": 4,
                 "livebench": {"data": DATA}}}))
    recipe = load_recipe(path)
    run_stage("eval", recipe)
    folder = RunFolder(recipe.run_path)
    [result] = folder.records("eval", "results")
    items = folder.records("eval", "items")
    assert result["benchmark"] == "livebench" and result["n"] == 19 and "LiveBench 2024-08-31" in result["label"]
    assert {r["group"] for r in items} == {f"{c}/{t}" for c, tasks in livebench.TASKS.items() for t in tasks}
    assert result["score"] == pytest.approx(livebench.overall(items))


def test_the_report_pairs_livebench_items_with_livebenchs_weights():
    """The run report's means and paired steps weigh items as LiveBench's score does: a step is the
    difference of the two models' LiveBench scores, not of their plain item means."""
    from fusechat import benchmarks
    from fusechat.analysis import fusion_table
    from fusechat.stats import paired_bootstrap

    groups = ["math/math_comp", "math/math_comp", "math/math_comp", "language/typos"]
    base, fused = [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]
    items = [{"benchmark": "livebench", "model": m, "id": f"q{i}", "group": g, "score": s}
             for m, scores in (("base", base), ("sft+dpo", fused)) for i, (g, s) in enumerate(zip(groups, scores))]
    [row] = fusion_table(items, set(), benchmarks.item_weights)
    assert row["means"] == {"base": 0.0, "sft+dpo": pytest.approx(0.5)}  # math 1, language 0; a plain mean says 0.75
    assert row["steps"]["fused - base"]["diff"] == pytest.approx(0.5)
    # equal weights are the plain paired bootstrap
    assert paired_bootstrap(fused, base, weights=[1.0] * 4) == pytest.approx(paired_bootstrap(fused, base))

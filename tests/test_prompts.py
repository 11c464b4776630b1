import json
import subprocess
import sys

import datasets
import pytest
import yaml

from fusechat import FusechatError
from fusechat.prompts import collect_prompts, load_prompt_file
from fusechat.pipeline import run_stage
from fusechat.recipe import recipe_from_dict
from fusechat.runfolder import RunFolder


def recipe(tmp_path, sets, **extra):
    return recipe_from_dict({"name": "t", "run_dir": str(tmp_path / "run"), "prompts": {"sets": sets, **extra},
                             "sources": [{"name": "s", "model": "smollm2-135m-instruct"}]})


def test_alpaca_input_is_part_of_the_prompt(tmp_path):
    path = tmp_path / "alpaca.jsonl"
    path.write_text(json.dumps({"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}) + "\n"
                    + json.dumps({"instruction": "Name a colour.", "input": "", "output": "Blue"}) + "\n")
    assert [p["prompt"] for p in load_prompt_file(path, "instruction")] == ["Translate to French.\n\nGood morning",
                                                                            "Name a colour."]


def test_jsonl_parquet_and_dataset_folder_load_alike(tmp_path):
    rows = [{"id": "a", "prompt": "What is 2+2?", "answer": "4"}, {"messages": [{"role": "user", "content": "1+1?"}], "answer": 2}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    datasets.Dataset.from_list([{"prompt": "What is 2+2?", "answer": "4"}, {"prompt": "1+1?", "answer": "2"}]).to_parquet(str(tmp_path / "p.parquet"))
    datasets.Dataset.from_list([{"prompt": "What is 2+2?", "answer": "4"}, {"prompt": "1+1?", "answer": "2"}]).save_to_disk(str(tmp_path / "ds"))
    for path in (jsonl, tmp_path / "p.parquet", tmp_path / "ds"):
        loaded = load_prompt_file(path, "math")
        assert [(p["prompt"], p["answer"]) for p in loaded] == [("What is 2+2?", "4"), ("1+1?", "2")]


def test_malformed_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "answer": "1"}\n{"prompt": "broken\n')
    with pytest.raises(FusechatError, match=r"bad\.jsonl:2: malformed JSON"):
        load_prompt_file(path, "math")


def test_missing_fields_are_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "x"}\n')
    with pytest.raises(FusechatError, match=r"p\.jsonl:1: math prompts need a gold `answer`"):
        load_prompt_file(path, "math")
    with pytest.raises(FusechatError, match=r"p\.jsonl:1: code prompts need `tests`"):
        load_prompt_file(path, "code")
    path.write_text('{"text": "x"}\n')
    with pytest.raises(FusechatError, match=r"p\.jsonl:1: no prompt text"):
        load_prompt_file(path, "instruction")


def test_cli_malformed_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\nnot json\n')
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"),
                                           "prompts": {"sets": [{"domain": "instruction", "path": str(path)}]},
                                           "sources": [{"name": "s", "model": "smollm2-135m-instruct"}]}))
    result = subprocess.run([sys.executable, "-m", "fusechat", "prompts", str(recipe_path)], capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and f"{path}:2" in lines[0].replace("\n", "") and "Traceback" not in result.stderr


def test_duplicates_removed_and_instruction_split_is_seeded_40_60(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Tell me about topic {i % 50}"}) + "\n" for i in range(60)))
    r = recipe(tmp_path, [{"domain": "instruction", "path": str(path)}])
    prompts, dropped = collect_prompts(r)
    assert len(prompts) == 50 and dropped["duplicate"] == 10
    split = {p.id: p.split for p in prompts}
    assert sum(s == "sft" for s in split.values()) == 20
    again, _ = collect_prompts(r)
    assert {p.id: p.split for p in again} == split  # same seed, same split
    other, _ = collect_prompts(recipe(tmp_path, [{"domain": "instruction", "path": str(path)}], split_seed=1))
    assert {p.id: p.split for p in other} != split


def test_builtin_packs(tmp_path):
    r = recipe(tmp_path, [
        {"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 5, "options": {"min_terms": 2, "max_terms": 3}},
        {"domain": "code", "pack": "code-functions", "n": 14},
        {"domain": "instruction", "pack": "sharegpt", "n": 5},
        {"domain": "chinese", "pack": "sharegpt", "n": 2},
    ])
    prompts, _ = collect_prompts(r)
    by = {d: [p for p in prompts if p.domain == d] for d in ("math", "code", "instruction", "chinese")}
    assert len(by["math"]) == 5 and all(p.answer.lstrip("-").isdigit() for p in by["math"])
    assert len(by["code"]) == 14 and all("assert " in p.tests and p.entry_point for p in by["code"])
    assert len(by["instruction"]) == 5 and all(p.split in ("sft", "dpo") for p in by["instruction"])
    assert len(by["chinese"]) == 2 and all(p.split == "sft" for p in by["chinese"])


def test_code_pack_tests_pass_on_reference_and_fail_on_wrong_code():
    from fusechat.packs import CODE_TEMPLATES, code_function_prompts
    from fusechat.recipe import SandboxConfig
    from fusechat.scorers.code import check_many

    made = code_function_prompts(len(CODE_TEMPLATES), seed=3)
    assert [p["entry_point"] for p in made] == [t[0] for t in CODE_TEMPLATES]
    jobs = []
    for p in made:
        off_by_one = p["solution"].replace("    return ", "    return _broken(").rstrip() + ")\n"
        broken = f"def _broken(v):\n    return v + 1 if isinstance(v, int) else v[:-1] if v else [0]\n{off_by_one}"
        jobs += [(p["solution"], p["tests"]), (broken, p["tests"])]
    verdicts = check_many(jobs, SandboxConfig(), workers=2, extract=False)
    for p, right, wrong in zip(made, verdicts[::2], verdicts[1::2]):
        assert right == (True, "passed"), p["entry_point"]
        assert not wrong[0] and wrong[1].startswith("failed"), p["entry_point"]


def test_humaneval_prompts_never_enter_training(tmp_path):
    """Matched by the problem's text, whitespace aside; a function that merely shares a name is kept."""
    from fusechat.benchmarks.humaneval import problems

    leaked = "Complete this function:\n" + " ".join(problems(1)[0]["code_prompt"].split())  # HumanEval/0, re-wrapped
    own = ["Write def add(a, b) that returns the sum.", "def has_close_elements(numbers, threshold):\n    pass"]
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps({"prompt": text, "tests": "assert True"}) + "\n" for text in [leaked, *own]))
    prompts, dropped = collect_prompts(recipe(tmp_path, [{"domain": "code", "path": str(path)}]))
    assert [p.prompt for p in prompts] == own and dropped["humaneval_overlap"] == 1


def test_stage_writes_dataset_and_skips_when_unchanged(tmp_path):
    r = recipe(tmp_path, [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 3}])
    first = run_stage("prompts", r)
    assert first["counts"]["prompts"] == 3 and not first.get("skipped")
    ds = datasets.load_from_disk(str(r.run_path / "prompts" / "prompts"))
    assert len(ds) == 3 and set(ds.column_names) >= {"id", "domain", "prompt", "answer", "split"}
    assert run_stage("prompts", r)["skipped"]
    changed = recipe(tmp_path, [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 4}])
    assert run_stage("prompts", changed)["counts"]["prompts"] == 4
    records = RunFolder(r.run_path).records("prompts", "prompts")
    assert len(records) == 4 and RunFolder(r.run_path).manifest("prompts")["output_fingerprint"]


def test_ifeval_format_files_become_constraint_prompts(tmp_path):
    """IFEval's rows (`instruction_id_list`, `kwargs` with nulls for unused arguments) load as checked prompts."""
    import json

    from fusechat import FusechatError
    from fusechat.constraints import check
    from fusechat.prompts import load_prompt_file

    row = {"key": 1, "prompt": "Write a haiku about rain. Do not use any commas.",
           "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
           "kwargs": [{"num_words": None, "relation": None}, {"num_words": 20, "relation": "less than"}]}
    path = tmp_path / "ifeval.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({"prompt": "An open question."}) + "\n")
    constrained, open_ = load_prompt_file(path, "instruction")
    assert constrained["constraints"] == [{"id": "punctuation:no_comma", "kwargs": {}},
                                          {"id": "length_constraints:number_words", "kwargs": {"num_words": 20, "relation": "less than"}}]
    assert "constraints" not in open_
    assert check("Rain taps the roof", constrained["constraints"]) and not check("Rain, rain", constrained["constraints"])
    path.write_text(json.dumps(row | {"instruction_id_list": ["nosuch:thing"], "kwargs": [{}]}) + "\n")
    with pytest.raises(FusechatError, match="ifeval.jsonl:1: unknown IFEval instruction id 'nosuch:thing'"):
        load_prompt_file(path, "instruction")


def test_prompts_by_dataset_id_with_a_column_map_filters_and_a_limit(tmp_path):
    # A folder of data files, read by datasets.load_dataset like a hub id (OpenMathInstruct-2's columns)
    folder = tmp_path / "openmath"
    (folder / "data").mkdir(parents=True)
    rows = [{"problem": f"What is {i} + {i}?", "expected_answer": str(2 * i), "problem_source": src}
            for i, src in enumerate(["gsm8k", "math", "augmented_math", "math"] * 5)]
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"domain": "math", "dataset": str(folder), "split": "train", "n": 6,
            "columns": {"prompt": "problem", "answer": "expected_answer"}, "where": {"problem_source": ["math", "gsm8k"]}}
    recipe = recipe_from_dict({"name": "t", "prompts": {"sets": [spec]}, "sources": [{"name": "s", "model": "smollm2-135m-instruct"}]})
    prompts, _ = collect_prompts(recipe)
    assert len(prompts) == 6
    by_text = {r["problem"]: r for r in rows}
    for p in prompts:  # the mapped columns, only the kept sources
        assert by_text[p.prompt]["expected_answer"] == p.answer and by_text[p.prompt]["problem_source"] != "augmented_math"
    again, _ = collect_prompts(recipe)
    assert [p.prompt for p in again] == [p.prompt for p in prompts]  # the seeded choice repeats

    # a column the dataset lacks is one line naming it, and the columns it has
    bad = recipe_from_dict({"name": "t", "prompts": {"sets": [spec | {"columns": {"prompt": "question"}}]},
                            "sources": [{"name": "s", "model": "smollm2-135m-instruct"}]})
    with pytest.raises(FusechatError, match=r"no column 'question' \(it has: problem, expected_answer, problem_source\)"):
        collect_prompts(bad)
    with pytest.raises(Exception, match="exactly one of `pack`, `path` or `dataset`"):
        recipe_from_dict({"name": "t", "prompts": {"sets": [spec | {"path": "x.jsonl"}]},
                          "sources": [{"name": "s", "model": "smollm2-135m-instruct"}]})


def test_a_hub_dataset_with_no_hub_in_reach_is_one_line_at_once(monkeypatch):
    from fusechat import readers

    monkeypatch.setattr(readers, "hub_reachable", lambda: False)
    recipe = recipe_from_dict({"name": "t", "sources": [{"name": "s", "model": "smollm2-135m-instruct"}],
                               "prompts": {"sets": [{"domain": "instruction", "dataset": "openbmb/UltraFeedback"}]}})
    with pytest.raises(FusechatError, match="openbmb/UltraFeedback: not a local folder, and the Hugging Face hub is not reachable"):
        collect_prompts(recipe)


def test_n_is_drawn_after_duplicates_and_filters_so_a_set_yields_exactly_n(tmp_path):
    """HelpSteer2 repeats each prompt (one row per response): drawing n before de-duplication fell short."""
    path = tmp_path / "helpsteer.jsonl"
    rows = [{"prompt": f"Describe place number {i // 2}."} for i in range(80)]  # 40 prompts, each twice
    rows += [{"prompt": "Solve 3x + 2 = 11 for x."}, {"prompt": "Write a Python function that reverses a list."},
             {"prompt": "```js\nconsole.log(1)\n```\nWhat does this print?"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"domain": "instruction", "path": str(path), "n": 30, "drop_math_and_code": True}
    prompts, dropped = collect_prompts(recipe(tmp_path, [spec]))
    assert len(prompts) == 30 and len({p.prompt for p in prompts}) == 30
    assert dropped["duplicate"] == 40 and dropped["math_or_code"] == 3 and dropped["not_drawn"] == 10
    # a prompt already taken by an earlier set is not drawn again by a later one
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"prompt": f"Describe place number {i}."}) + "\n" for i in range(45)))
    both, _ = collect_prompts(recipe(tmp_path, [spec, {"domain": "instruction", "path": str(other), "n": 15}]))
    assert len(both) == 45  # 30 from the first, and the 15 the second holds beyond them
    with pytest.raises(Exception, match="`drop_math_and_code` is for instruction sets"):
        recipe(tmp_path, [{"domain": "math", "path": str(path), "drop_math_and_code": True}])

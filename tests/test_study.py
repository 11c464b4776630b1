"""`fusechat study`: paired statistics, the source and reward-bias tables, and a study that shares samples."""

import json
import math

import pytest
import yaml

from fusechat.analysis import reward_bias, source_table
from fusechat.stats import detectable_difference, mcnemar, paired_bootstrap, seeded_bootstrap


def test_paired_bootstrap_matches_a_hand_computed_case():
    # Per-item differences [0, 1]: resampling two items gives means 0, 0.5, 1 with chances 1/4, 1/2, 1/4,
    # so the 2.5th percentile is 0 and the 97.5th is 1.
    diff, low, high = paired_bootstrap([1.0, 1.0], [1.0, 0.0], resamples=4000)
    assert diff == 0.5 and (low, high) == (0.0, 1.0)
    # Pairing: two models that agree on every item differ by exactly 0, however noisy the items are.
    a = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0] * 5
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)
    # A model that gains on 12 of 40 items and loses on none: the interval excludes zero.
    better = [1.0] * 12 + [0.0] * 28
    _, low, high = paired_bootstrap(better, [0.0] * 40)
    assert 0 < low < 0.3 < high <= 0.5
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_mcnemar_exact_p_value_by_hand():
    # 8 items only A passes, 2 only B passes: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 112/1024.
    a = [1.0] * 8 + [0.0] * 2 + [1.0] * 5 + [0.0] * 5
    b = [0.0] * 8 + [1.0] * 2 + [1.0] * 5 + [0.0] * 5
    assert mcnemar(a, b) == (8, 2, pytest.approx(112 / 1024))
    assert mcnemar(a, a) == (0, 0, 1.0)
    assert mcnemar([1.0] * 3, [0.0] * 3)[2] == pytest.approx(0.25)  # 2 * (1/8)


def rec(pid, source, i, text, reward=None, correct=None, domain="math"):
    return {"prompt_id": pid, "source": source, "sample_index": i, "text": text, "reward": reward,
            "correct": correct, "domain": domain}


def test_source_table_on_hand_made_records():
    scored = [rec("p1", "a", 0, "x", correct=True), rec("p1", "a", 1, "x", correct=False), rec("p1", "b", 0, "x", correct=False),
              rec("p2", "a", 0, "x", correct=False), rec("p2", "b", 0, "x", correct=True),
              rec("p3", "a", 0, "x", correct=False), rec("p3", "b", 0, "x", correct=False),
              rec("q1", "a", 0, "x", reward=0.8, domain="instruction"), rec("q1", "b", 0, "x", reward=0.4, domain="instruction")]
    sft = [{"domain": "math", "source": "b"}]
    dpo = [{"domain": "math", "source": "a"}, {"domain": "instruction", "source": "b+a"}]
    table = source_table(scored, sft, dpo, ["a", "b"])
    rows = {(r["domain"], r["source"]): r for r in table["rows"]}
    assert rows[("math", "a")] | {} == {"domain": "math", "source": "a", "samples": 4, "correct_rate": 0.25,
                                        "mean_reward": None, "sft_share": 0.0, "dpo_share": 1.0}
    assert rows[("math", "b")]["correct_rate"] == round(1 / 3, 4) and rows[("math", "b")]["sft_share"] == 1.0
    assert rows[("instruction", "a")]["mean_reward"] == 0.8 and rows[("instruction", "b")]["dpo_share"] == 1.0  # chosen is b
    # p1 solved by a, p2 by b, p3 by nobody: the oracle is 2/3, each source alone 1/3.
    assert table["oracle"] == {"math": {"prompts": 3, "any": round(2 / 3, 4), "a": round(1 / 3, 4), "b": round(1 / 3, 4)}}


def test_training_lengths_on_hand_made_records():
    from fusechat.analysis import training_lengths

    msg = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    sft = [{"domain": "math", "messages": [{"role": "user", "content": "q" * 50}] + msg("x" * n)} for n in (10, 12, 30)]
    dpo = [{"domain": "math", "chosen": msg("x" * c), "rejected": msg("x" * r)} for c, r in ((100, 200), (140, 90))]
    assert training_lengths(sft, dpo) == {"math": {"sft": 3, "sft_median": 12, "pairs": 2, "chosen_median": 120.0,
                                                   "rejected_median": 145.0}}
    assert training_lengths([], dpo)["math"]["sft_median"] is None


def test_reward_bias_on_hand_made_records():
    # Source a is long and highly rewarded, b short and low: across sources reward tracks length.
    scored = [rec("p1", "a", 0, "x" * 100, 0.9), rec("p1", "a", 1, "x" * 80, 0.7), rec("p1", "b", 0, "x" * 10, 0.2),
              rec("p1", "b", 1, "x" * 30, 0.3), rec("p2", "a", 0, "x" * 60, 0.8), rec("p2", "a", 1, "x" * 120, 0.6),
              rec("p2", "b", 0, "x" * 20, 0.1), rec("p2", "b", 1, "x" * 20, 0.1), rec("p3", "a", 0, "no reward")]
    bias = reward_bias(scored, ["a", "b"])
    assert bias["rewarded"] == 8
    a, b = bias["per_source"]
    assert (a["source"], a["n"], a["mean"], a["mean_length"]) == ("a", 4, 0.75, 90.0)
    # b: lengths 10, 30, 20, 20 and rewards .2, .3, .1, .1: cov 1.0 / (sqrt(200) * sqrt(.0275)) = 0.4264
    assert b["length_corr"] == 0.4264
    assert bias["length_corr_all"] > 0.7
    # p1: best (0.9) is the longest; p2: best (0.8, 60 chars) is not (120 chars).
    assert bias["best_is_longest"] == {"prompts": 2, "rate": 0.5, "chance": 0.25}
    # same-source pairs: a/p1 100 vs 80, b/p1 30 vs 10, a/p2 60 vs 120 (b/p2 ties: no pair)
    assert bias["same_source_pairs"]["pairs"] == 3 and bias["same_source_pairs"]["median_ratio"] == 1.25
    # cross-source pairs: p1 100 vs 10, p2 60 vs 20 (the tie at 0.1 broken by source order, then index)
    assert bias["cross_source_pairs"] == {"pairs": 2, "median_ratio": 6.5, "chosen_longer": 1.0}


def study_file(tmp_path, model_dir, variants=None):
    recipe = {
        "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 4},
                             {"domain": "instruction", "pack": "constraints", "n": 8}]},
        "sources": [{"name": "t1", "model": str(model_dir), "backend": "transformers", "dtype": "float32",
                     "samples_per_prompt": {"math": 2, "instruction": 3}, "sampling": {"max_new_tokens": 6}},
                    {"name": "t2", "model": str(model_dir), "backend": "transformers", "dtype": "float32",
                     "samples_per_prompt": {"math": 2, "instruction": 3}, "sampling": {"max_new_tokens": 6, "temperature": 1.2}}],
        "build": {"drop_truncated": False},  # 6-token answers are all cut short
        "target": {"model": str(model_dir)},
        "sft": {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "precision": "fp32"},
        "dpo": {"epochs": 1, "batch_size": 2, "grad_accum": 1, "learning_rate": 1e-3, "precision": "fp32", "eval_fraction": 0},
        "eval": {"math": {"n": 4}, "humaneval": 0, "mtbench": 0, "constraints": 3, "max_new_tokens": 6, "dtype": "float32"},
    }
    study = {
        "name": "tiny-study", "study_dir": str(tmp_path / "study"), "reference": "fused", "recipe": recipe,
        "variants": variants or {"fused": {"seeds": [0, 1]}, "sft-only": {"final": "sft", "seeds": [0, 1]}, "plain-dpo": {"dpo.loss": "dpo", "dpo.beta": 0.1},
                                 "only-t2": {"build.sources": ["t2"]}, "without-t1": {"build.exclude_sources": ["t1"]}},
        "claims": [{"claim": "fusion beats the base", "better": "fused", "worse": "base", "benchmarks": ["math", "constraints"]}],
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def stage_dirs(folder):
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def test_a_study_samples_once_shares_identical_stages_and_reruns_nothing(tmp_path, tiny_model_dir, monkeypatch):
    from typer.testing import CliRunner

    import fusechat.constraints
    from fusechat.cli import app
    from fusechat.hardware import describe

    # A random tiny model keeps no constraint. A stand-in checker: every answer to an even-length prompt
    # passes (an SFT example), answers to the others by their length's parity (pairs).
    monkeypatch.setattr(fusechat.constraints, "check",
                        lambda response, constraints, prompt="": len(prompt) % 2 == 0 or len(response) % 2 == 0)

    path = study_file(tmp_path, tiny_model_dir)
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "study"
    assert stage_dirs(root / "fused") == ["build", "dpo", "eval", "prompts", "sample", "score", "sft"]
    for variant in ("sft-only", "plain-dpo", "only-t2", "without-t1"):  # nobody else samples or scores
        assert not {"prompts", "sample", "score"} & set(stage_dirs(root / variant))
    assert stage_dirs(root / "sft-only") == []  # its data, SFT model and scores are the reference's
    assert stage_dirs(root / "plain-dpo") == ["dpo", "eval"]  # same data and SFT: only DPO redone
    assert stage_dirs(root / "only-t2") == ["build", "dpo", "eval", "sft"]
    assert stage_dirs(root / "without-t1") == ["build"]  # with two sources, "without t1" is "only t2"
    # a second training seed: the same data, its own SFT and DPO; SFT-only at that seed evaluates that SFT model
    assert stage_dirs(root / "fused-seed-1") == ["dpo", "eval", "sft"]
    assert stage_dirs(root / "sft-only-seed-1") == ["eval"]
    assert json.loads((root / "fused-seed-1" / "dpo" / "manifest.json").read_text())["config"]["dpo"]["seed"] == 1
    assert "shared" in result.output
    assert f"study tiny-study: 7 runs, folder {root}, on {describe()}" in result.output

    tables = json.loads((root / "report" / "tables.json").read_text())
    models = {s["model"] for s in tables["scores"]}
    assert models == {"base", "fused", "sft-only", "plain-dpo", "only-t2", "without-t1"}
    diffs = {(d["model"], d["benchmark"]): d for d in tables["differences"]}
    assert diffs[("without-t1", "math")]["diff"] == diffs[("only-t2", "math")]["diff"]
    assert all(d["n"] == {"math": 4, "constraints": 3}[d["benchmark"]] for d in tables["differences"])
    assert all(d["ci_low"] <= d["diff"] <= d["ci_high"] for d in tables["differences"])
    assert tables["seeded"] == {"fused": 2, "sft-only": 2} and diffs[("sft-only", "math")]["seeds"] == [[0, 1], [0, 1]]
    assert diffs[("plain-dpo", "math")]["seeds"] == [[0], [0]]
    claim = tables["claims"][0]
    assert claim["verdict"] in ("supported", "contradicted", "partly supported", "mixed", "undecided at this sample size")
    assert claim["sentence"].startswith("fusion beats the base:")
    report = (root / "report" / "report.md").read_text()
    assert "## Claims" in report and "Source contribution" in report and "Reward bias" in report
    assert "Training answers" in report and "Sizing" in report and "Mean answer length" in report
    assert (root / "report" / "differences.png").stat().st_size > 0 and "<table>" in (root / "report" / "report.html").read_text()
    # every stage says what its seconds were measured on, and the time table names it
    assert json.loads((root / "fused" / "dpo" / "manifest.json").read_text())["hardware"] == describe()
    assert tables["hardware"] == {describe(): sum(isinstance(v, float) for row in tables["stage_times"] for v in row.values())}
    assert f"stage time, measured on {describe()}." in report

    sampled_at = json.loads((root / "fused" / "sample" / "manifest.json").read_text())["finished_at"]
    again = CliRunner().invoke(app, ["study", str(path)])
    assert again.exit_code == 0, again.output
    assert " done in " not in again.output and "(up to date)" in again.output
    assert json.loads((root / "fused" / "sample" / "manifest.json").read_text())["finished_at"] == sampled_at


def test_a_study_resumed_on_another_machine_says_its_times_mix_machines():
    from fusechat.hardware import measured_on

    assert measured_on({"CPU A, 2 cores, bf16 units": 20}) == ", measured on CPU A, 2 cores, bf16 units"
    mixed = measured_on({"CPU B, 2 cores, no bf16 units (fp32)": 3, "CPU A, 2 cores, bf16 units": 20})
    assert mixed == (", measured on 2 machines, so the total mixes their speeds: CPU A, 2 cores, bf16 units (20 stages); "
                     "CPU B, 2 cores, no bf16 units (fp32) (3 stages)")
    assert measured_on({}) == ""


def test_a_variant_that_changes_sampling_is_refused_in_one_line(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from fusechat.cli import app

    path = study_file(tmp_path, tiny_model_dir, {"fused": {}, "hot": {"sources.0.sampling.temperature": 1.5}})
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 2 and "variant 'hot' changes sample settings" in result.output
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("change, message", [
    ({"claims": [{"claim": "x", "better": "fused", "worse": "nope", "benchmarks": ["math"]}]}, "claims.0: unknown variant 'nope'"),
    ({"reference": "missing"}, "reference 'missing' is not one of the variants"),
    ({"variants": {"fused": {"seeds": [0, 0]}}}, "variants.fused.seeds: a list of distinct training seeds"),
    ({"variants": {"fused": {"seeds": [0, 1], "sft.seed": 2}}}, "variants.fused: `seeds` sets sft.seed and dpo.seed"),
    ({"variants": {"fused": {"seeds": [0, 1]}, "fused-seed-1": {}}}, "'fused-seed-1' is also a variant's name"),
    ({"variants": {"fused": {"final": "sft"}}}, "the reference variant must go through dpo"),
    ({"variants": {"fused": {}, "bad": {"build.nosuch": 1}}}, "variants.bad: build.nosuch: Extra inputs are not permitted"),
    ({"claims": [{"claim": "x", "better": "fused", "worse": "base", "benchmarks": ["maths"]}]},
     "claims.0: no variant evaluates 'maths'"),
])
def test_bad_study_files_get_one_line(tmp_path, tiny_model_dir, change, message):
    from typer.testing import CliRunner

    from fusechat.cli import app

    path = study_file(tmp_path, tiny_model_dir)
    data = yaml.safe_load(path.read_text()) | change
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["study", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2 and "study file not found" in missing.output


def test_claims_give_verdicts_by_the_interval_and_wait_for_unfinished_variants():
    from types import SimpleNamespace

    from fusechat.study import Claim
    from fusechat.study_report import study_tables

    n = 40
    items = {"base": {("math", str(i)): 0.0 for i in range(n)},
             "fused": {("math", str(i)): float(i < 12) for i in range(n)},  # +12 items, none lost: supported
             "worse": {("math", str(i)): float(i < 20) for i in range(n)}}  # fused loses 8 of these: contradicted
    claims = [Claim(claim="fused beats base", better="fused", worse="base", benchmarks=["math"]),
              Claim(claim="fused beats worse", better="fused", worse="worse", benchmarks=["math"]),
              Claim(claim="fused beats later", better="fused", worse="later", benchmarks=["math"])]
    study = SimpleNamespace(reference="fused", resamples=2000, claims=claims)
    tables = study_tables(study, items)
    verdicts = [c["verdict"] for c in tables["claims"]]
    assert verdicts == ["supported", "contradicted", "not run yet"]
    row = tables["claims"][0]["rows"][0]
    assert row["diff"] == 0.3 and (row["only_better"], row["only_worse"]) == (12, 0) and row["mcnemar_p"] < 0.001
    assert {(d["model"], d["benchmark"]) for d in tables["differences"]} == {("base", "math"), ("worse", "math")}


def test_seeded_bootstrap_resamples_seeds_by_hand():
    # Seed 0 passes both items, seed 1 neither; the base fails both. Items are identical within a seed, so
    # the spread is all seeds: two draws give a mean of 1 (1/4), 0.5 (1/2) or 0 (1/4): interval [0, 1].
    assert seeded_bootstrap([[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0]], resamples=4000) == (0.5, 0.0, 1.0)
    # Averaging the seeds first would hide that: the item-only interval of the means is [0.5, 0.5].
    assert paired_bootstrap([0.5, 0.5], [0.0, 0.0]) == (0.5, 0.5, 0.5)
    # Paired seeds: at each seed B scores 0.5 below A on every item (seed 1 is the harder one for both),
    # so every draw differs by exactly 0.5.
    a, b = [[1.0, 1.0], [0.5, 0.5]], [[0.5, 0.5], [0.0, 0.0]]
    assert seeded_bootstrap(a, b, pair_seeds=True) == (0.5, 0.5, 0.5)
    _, low, high = seeded_bootstrap(a, b)  # unpaired, A's seed 1 meets B's seed 0: the draws spread
    assert low <= 0.0 and high >= 1.0
    # one run a side: the plain paired bootstrap, number for number
    assert seeded_bootstrap([[1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0]]) == paired_bootstrap([1.0, 0.0, 1.0], [0.0, 0.0, 1.0])


def test_sizing_by_hand():
    # 200 items: 50 won, 50 lost, 100 tied. sd of the differences = sqrt(100 / 199) = 0.7089; with
    # z = 1.96 + 0.8416 the detectable difference is 2.8016 * 0.7089 / sqrt(200) = 0.1404, and 0.05 needs
    # (2.8016 * 0.7089 / 0.05)^2 = 1577.8 -> 1578 items.
    mde, needed = detectable_difference([1.0, -1.0] * 50 + [0.0] * 100)
    assert mde == pytest.approx(0.1404, abs=1e-4) and needed == 1578
    # a study's sizing line comes from the reference against the base, seeds averaged
    from types import SimpleNamespace

    from fusechat.study_report import study_tables
    items = {"base": {None: {("math", str(i)): float(i % 2) for i in range(100)}},
             "fused": {0: {("math", str(i)): 1.0 for i in range(100)}, 1: {("math", str(i)): 0.0 for i in range(100)}}}
    tables = study_tables(SimpleNamespace(reference="fused", resamples=200, claims=[]), items)
    # seed mean 0.5 on every item against 0/1: differences +-0.5, sd 0.5025, 0.05 needs (2.8016*0.5025/0.05)^2 = 793
    assert tables["sizing"]["math"]["n"] == 100 and tables["sizing"]["math"]["items_for_0.05"] == 793


def test_seeds_average_compare_seed_with_seed_and_set_the_noise_for_single_seed_variants():
    from types import SimpleNamespace

    from fusechat.study import Claim
    from fusechat.study_report import markdown, study_tables

    n = 200
    run = lambda wins: {("math", str(i)): float(i < wins) for i in range(n)}  # noqa: E731
    items = {"base": {None: run(0)},
             "fused": {0: run(20), 1: run(44)},  # +0.10 and +0.12 over base: seeds 0.12 apart
             "sft": {0: run(0), 1: run(24)},     # each seed 0.10 below fused's same seed
             "variant": {0: run(36)},            # +0.08 over fused seed 0: inside the seed spread
             "big": {0: run(80)}}                # +0.30 over fused seed 0
    claims = [Claim(claim="fused beats base", better="fused", worse="base", benchmarks=["math"]),
              Claim(claim="fused beats sft", better="fused", worse="sft", benchmarks=["math"]),
              Claim(claim="variant beats fused", better="variant", worse="fused", benchmarks=["math"]),
              Claim(claim="big beats fused", better="big", worse="fused", benchmarks=["math"])]
    study = SimpleNamespace(name="s", reference="fused", resamples=2000, claims=claims)
    tables = study_tables(study, items)
    assert tables["seed_noise"] == {"math": pytest.approx(0.12)} and tables["seeded"] == {"fused": 2, "sft": 2}
    scores = {s["model"]: s for s in tables["scores"]}
    assert scores["fused"]["score"] == pytest.approx(0.16) and scores["fused"]["seed_scores"] == [0.1, 0.22]
    base, sft, variant, big = (c["rows"][0] for c in tables["claims"])
    # fused against the base: both seeds, resampled; a seed draw of (0, 0) is a +0.10 world, (1, 1) +0.22
    assert base["diff"] == pytest.approx(0.16) and base["seeds"] == [[0, 1], [None]] and "seed_noise" not in base
    assert 0.05 < base["ci_low"] < 0.1 and 0.22 < base["ci_high"] < 0.3 and "mcnemar_p" not in base
    # fused against SFT seed by seed: +0.10 at both, so the seed draws cannot move it
    assert sft["seeds"] == [[0, 1], [0, 1]] and sft["diff"] == pytest.approx(0.1) and sft["verdict"] == "supported"
    # a single-seed variant meets fused's seed 0 only (McNemar as before), and the seed spread judges it
    assert variant["seeds"] == [[0], [0]] and variant["diff"] == pytest.approx(0.08) and variant["mcnemar_p"] < 0.001
    assert variant["ci_low"] > 0 and variant["verdict"] == "within seed noise" and variant["seed_noise"] == pytest.approx(0.12)
    assert big["verdict"] == "supported"
    assert "undecided: within seed noise" == tables["claims"][2]["verdict"]
    assert "seeds 0,1 vs —" in tables["claims"][0]["sentence"]
    text = markdown(study, tables, [], None, None)
    assert "`fused` at 2 seeds, `sft` at 2 seeds" in text and "0.160 (seeds: 0.100, 0.220)" in text
    # without seeded variants nothing is within seed noise: the intervals alone decide
    plain = study_tables(study, {m: {s: r for s, r in runs.items() if s in (None, 0)} for m, runs in items.items()})
    assert plain["seed_noise"] == {} and plain["claims"][2]["verdict"] == "supported"


def test_models_evaluated_on_more_items_are_compared_on_the_items_both_answered():
    # The study evaluates the models its main claims rest on with more items than the one-seed ablations
    # (the items are a prefix of one generator): a comparison pairs only the items both sides answered.
    from fusechat.study_report import compare

    fused = {0: {("math", str(i)): float(i < 30 or i >= 100) for i in range(200)}}  # passes 0-29 and 100-199
    ablation = {0: {("math", str(i)): 0.0 for i in range(100)}}  # answered items 0-99 only, passes none
    base = {None: {("math", str(i)): 0.0 for i in range(200)}}
    row = compare(fused, ablation, "math")
    assert row["n"] == 100 and row["diff"] == pytest.approx(0.30) and row["only_better"] == 30
    assert compare(fused, base, "math")["n"] == 200 and compare(fused, base, "math")["diff"] == pytest.approx(0.65)
    # the constraint prompts really are a prefix of one generator: 256 are the first 256 of 448
    from fusechat import constraints
    assert constraints.make_prompts(448, seed=0, split="eval")[:256] == constraints.make_prompts(256, seed=0, split="eval")

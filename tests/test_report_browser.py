"""The run report in a real browser (headless Chromium through chromedriver, by Selenium): the answer comes
first, and the data viewer shows exactly the run folder's rows, tab by tab, filter by filter, page by page.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); skipped where they are missing."""

import shutil

import pytest
import yaml

from fusechat.records import Prompt, ScoredSample, to_dict
from fusechat.runfolder import Outputs, RunFolder

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")


def make_run(tmp_path):
    """A finished run written record by record: 30 math prompts x 2 sources x 4 samples (240 samples, so
    the samples of one source and domain span three pages), pairs, SFT examples, dropped prompts, eval."""
    from fusechat.recipe import load_recipe

    prompts = [Prompt(id=f"p{i:02d}", domain="math", prompt=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(30)]
    scored = [ScoredSample(prompt_id=p.id, domain="math", source=src, sample_index=k, seed=k, text=f"{src} says {2 * i + k % 2}",
                           prompt_tokens=9, completion_tokens=4, finish_reason="stop", reward=0.1 * k, correct=k % 2 == 0)
              for i, p in enumerate(prompts) for src in ("alpha", "beta") for k in range(4)]
    sft = [{"messages": [{"role": "user", "content": p.prompt}, {"role": "assistant", "content": f"{2 * i}"}],
            "prompt_id": p.id, "domain": "math", "source": "alpha", "reward": 0.2} for i, p in enumerate(prompts[:10])]
    dpo = [{"prompt": [{"role": "user", "content": p.prompt}], "chosen": [{"role": "assistant", "content": f"chosen {2 * i}"}],
            "rejected": [{"role": "assistant", "content": f"rejected {2 * i + 1}"}], "prompt_id": p.id, "domain": "math",
            "source": "beta", "chosen_reward": 0.9, "rejected_reward": 0.4} for i, p in enumerate(prompts[10:25], 10)]
    dropped = [{"prompt_id": p.id, "domain": "math", "reason": "no_correct", "prompt": p.prompt} for p in prompts[25:]]
    items = [{"model": m, "benchmark": "math", "id": f"q{j}", "prompt": f"Question {j}", "response": f"{m} answer {j}",
              "gold": str(j), "score": float(m != "base" or j < 3)} for m in ("base", "sft", "sft+dpo") for j in range(12)]
    results = [{"model": m, "benchmark": "math", "score": sum(r["score"] for r in items if r["model"] == m) / 12,
                "ci_low": 0.0, "ci_high": 1.0, "n": 12, "label": "held-out math accuracy"} for m in ("base", "sft", "sft+dpo")]
    folder = RunFolder(tmp_path / "run")
    folder.write("prompts", Outputs({"prompts": [to_dict(p) for p in prompts]}))
    folder.write("score", Outputs({"scored": [to_dict(s) for s in scored]}))
    folder.write("build", Outputs({"sft": sft, "dpo": dpo, "dropped": dropped}))
    folder.write("eval", Outputs({"results": results, "items": items}))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "browser", "run_dir": str(tmp_path / "run"),
                                    "prompts": {"sets": [{"domain": "math", "pack": "reasoning-gym", "task": "chain_sum", "n": 1}]},
                                    "sources": [{"name": "alpha", "model": "smollm2-135m-instruct"},
                                                {"name": "beta", "model": "smollm2-135m-instruct"}]}))
    return load_recipe(path), scored, dpo, dropped


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                 "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def test_the_report_leads_with_the_answer_and_its_viewer_shows_the_run_folders_rows(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from fusechat.pipeline import run_stage

    recipe, scored, dpo, dropped = make_run(tmp_path)
    run_stage("report", recipe)
    browser.get((recipe.run_path / "report" / "report.html").resolve().as_uri())
    wait = WebDriverWait(browser, 20)

    # Above the fold: the sentence, then the paired table (base 3/12 -> fused 12/12: better)
    answer = browser.find_element(By.CSS_SELECTOR, "p.answer")
    assert answer.text.startswith("Did fusion pay?") and "better on 1 (math)" in answer.text
    assert answer.location["y"] < browser.find_element(By.TAG_NAME, "img").location["y"]
    first_row = browser.find_elements(By.CSS_SELECTOR, "table.answer tr")[1].text
    assert "0.250" in first_row and "1.000" in first_row and "better" in first_row

    def rows():
        return [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#rows .row")]

    def position():
        return browser.find_element(By.ID, "position").text

    def tab(name):
        browser.find_element(By.CSS_SELECTOR, f"#tabs button[data-set='{name}']").click()

    # Samples: 240 in all, a page per group (source, check) of 60 here; alpha's right answers are 60 rows
    # (30 prompts x samples 0 and 2)
    wait.until(lambda _: rows())
    assert position() == "page 1 of 4 · 240 rows" and len(rows()) == 60
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-field='source']")).select_by_value("alpha")
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-field='check']")).select_by_value("right")
    wait.until(lambda _: "60 rows" in position())
    want = [s for s in scored if s.source == "alpha" and s.correct]
    shown = rows()
    assert len(shown) == len(want) and all(f"{s.text}" in text and s.prompt_id in text for s, text in zip(want, shown))

    # DPO pairs side by side, with rewards and the gap; then every dropped prompt with its reason
    tab("dpo")
    wait.until(lambda _: "15 rows" in position())
    first = rows()[0]
    assert dpo[0]["chosen"][0]["content"] in first and dpo[0]["rejected"][0]["content"] in first and "gap 0.500" in first
    tab("dropped")
    wait.until(lambda _: "5 rows" in position())
    assert [t.split("\n")[0] for t in rows()] == [f"math · dropped: no_correct · {d['prompt_id']}" for d in dropped]

    # Paging: beta's 120 samples are two pages
    tab("samples")
    Select(browser.find_element(By.CSS_SELECTOR, "select[data-field='source']")).select_by_value("beta")
    wait.until(lambda _: "120 rows" in position() and "page 1 of" in position())
    browser.find_element(By.ID, "next").click()
    wait.until(lambda _: position().startswith("page 2"))
    assert all("beta says" in t for t in rows())

    # The items where base and fused disagree: 9 of 12, base wrong and fused right
    tab("disagree")
    wait.until(lambda _: "9 rows" in position())
    assert all("fused better" in t and "base answer" not in t.split("\n")[0] for t in rows())

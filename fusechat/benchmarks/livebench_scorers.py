"""LiveBench's ground-truth scorers, ported from LiveBench (github.com/LiveBench/LiveBench,
livebench/process_results, Apache-2.0) for the 18 tasks of its releases up to 2024-08-31.

Why a port and not the package: LiveBench is not on PyPI, its package pins some forty dependencies
(docker, litellm, spacy, anthropic, ...) for its agentic and API parts, and its coding grader runs model
code in the evaluating process without a cage. The text scorers here follow LiveBench's code line for
line (the evaluator a question of those releases gets: the "old" connections and zebra-puzzle parsers,
tablereformat's v1 reader), without its debug printing; each returns LiveBench's score in [0, 1] for one
answer. Three tasks use the library the field uses for the same check instead of LiveBench's copy of it:
instruction following asks if-verifiable's IFEval checkers (LiveBench ships Google's IFEval code), AMPS_Hard
asks math-verify (LiveBench parses with sympy and, where sympy is unsure, asks an OpenAI model), and the
two coding tasks run every test case in fusechat's sandbox (fusechat.benchmarks.livebench).
"""

from __future__ import annotations

import ast
import difflib
import itertools
import json
import re


def last_boxed_only_string(string: str) -> str | None:
    idx = string.rfind("\\boxed")
    if "\\boxed " in string:
        return "\\boxed " + string.split("\\boxed ")[-1].split("$")[0]
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    depth = 0
    for i in range(idx, len(string)):
        if string[i] == "{":
            depth += 1
        if string[i] == "}":
            depth -= 1
            if depth == 0:
                return string[idx: i + 1].replace("$", "").replace("fbox", "boxed")
    return None


def remove_boxed(s: str) -> str:
    if "\\boxed " in s:
        return s[len("\\boxed "):]
    if not (s.startswith("\\boxed{") and s.endswith("}")):
        return s  # LiveBench asserts; a malformed answer scores 0 downstream instead of stopping the stage
    return s[len("\\boxed{"): -1]


def _levenshtein(a, b) -> int:
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            current[j] = previous[j - 1] if a[i - 1] == b[j - 1] else 1 + min(previous[j], current[j - 1], previous[j - 1])
        previous = current
    return previous[len(b)]


# ---- math ------------------------------------------------------------------------------------------------

def _contest_value(statement: str, letter: str) -> str:
    answers = {m[0]: m[1].strip() for m in re.findall(r"\\textbf{\(([A-E])\)\s?}(.*?)(?:\\qquad|\$)", statement)}
    answer = answers.get(letter) or "FAILURE"  # one question's answer is too long to repeat
    return answer.strip().strip("$").strip("~")


def math_contest(ground_truth: str, answer: str, question: str) -> float:
    """AMC / SMC multiple choice (mathcontest_process_results)."""
    if not (len(ground_truth) == 1 and "A" <= ground_truth <= "E"):
        raise ValueError("an AMC answer is one capital letter from A to E")
    solutions = re.findall(r"<solution>(.*?)</solution>", answer)
    if solutions and len(set(solutions[-1])) == 1 and solutions[-1][0].lower() == ground_truth.lower():
        return 1.0
    if ground_truth * 4 in answer:  # the prompt asks for the letter five times
        return 1.0
    boxed = last_boxed_only_string(answer.replace("\\\\fbox{", "\\\\boxed{"))
    if boxed and remove_boxed(boxed).replace("\\text{", "").replace("}", "").replace("\\", "").lower() == ground_truth.lower():
        return 1.0
    value = _contest_value(question, ground_truth)
    if value in answer[-(20 + len(value)):]:
        return 1.0
    last_line = answer.strip().split("\n")[-1]
    if last_line.strip().replace("*", "").lower() == ground_truth.lower():
        return 1.0
    if "(" in last_line and ")" in last_line and last_line.split("(")[1].split(")")[0].lower() == ground_truth.lower():
        return 1.0
    return 0.0


def aime(ground_truth: str, answer: str) -> float:
    solutions = re.findall(r"<solution>(.*?)</solution>", answer)
    if solutions and len(set(solutions[-1])) == 1 and solutions[-1][0].lower() == ground_truth.lower():
        return 1.0
    return float(ground_truth in answer[-50:])


# ---- reasoning -------------------------------------------------------------------------------------------

def web_of_lies(ground_truth: str, answer: str) -> float:
    """web_of_lies_v2: three yes/no/unknown answers, in <solution> tags, bold, \\boxed or plain."""
    parsed = None
    solutions = re.findall(r"<solution>(.*?)</solution>", answer) or re.findall(r"</solution>(.*?)</solution>", answer)
    if solutions:
        parsed = solutions[-1]
    bold = re.findall(r"\*\*(.*?)\*\*", answer)
    if parsed is None and bold:
        words = [w.lower().strip().replace(",", "").replace(".", "")[0:max(len(w), 3)] for m in bold for w in m.split()]
        found = [w for w in words if w in ("yes", "no", "unknown")][-3:]
        parsed = ", ".join(found) if found else None
    if parsed is None or parsed.strip() == "":
        text = answer.replace("\\\\boxed{\\\\textbf{", "\\\\boxed{").replace("\\\\fbox{", "\\\\boxed{").replace("\\textbf{", "\\boxed{")
        boxed = last_boxed_only_string(text)
        if boxed:
            parsed = remove_boxed(boxed)
    if parsed is None:
        best, where = None, -1
        for comb in itertools.product(["yes", "no", "unknown"], repeat=3):
            index = answer.lower().find(", ".join(comb))
            if index > where:
                best, where = comb, index
        parsed = ", ".join(best) if best else None
    if parsed and parsed == ground_truth.lower():
        return 1.0
    counted = parsed and parsed.count("yes") + parsed.count("no") + parsed.count("unknown") == 3
    return float(bool(counted and ground_truth.lower() in parsed))


NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
                "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
                "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18",
                "nineteen": "19", "twenty": "20"}


def spatial(ground_truth: str, answer: str) -> float:
    if answer == ground_truth:
        return 1.0
    truth = ground_truth.strip().lower()
    for word in [w.strip().lower() for w in re.findall(r"\*\*([^\*]+)\*\*", answer)[-3:]]:
        if word == truth or NUMBER_WORDS.get(word) == truth:
            return 1.0
        # "two tetrahedra" is "tetrahedra", "equilateral triangle" a "triangle"; "circle square triangle" is not
        if any(truth == shape and shape in word and len(word) < 2 * len(shape) + 5
               for shape in ("tetrahedra", "tetrahedron", "triangle", "square")):
            return 1.0
    boxed = last_boxed_only_string(answer.replace("\\\\fbox{", "\\\\boxed{"))
    if boxed:
        parsed = remove_boxed(boxed)
        for markup in ("\\textbf{", "\\mathbf{", "\\text{", "}"):
            parsed = parsed.replace(markup, "")
        return float(parsed == ground_truth)
    return 0.0


def zebra_puzzle(ground_truth: str, answer: str) -> float:
    """The parser of questions released before 2024-11-25: the last ***bold*** word, else the last word."""
    number_words = {"1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
                    "8": "eight", "9": "nine"}
    bold = re.findall(r"\*\*\*(\w+)\*\*\*", answer)
    words = re.findall(r"\b\w+\b", answer)
    last = bold[-1] if bold else (words[-1] if words else "")
    truth = ground_truth.lower()
    return float(last.lower() == truth or number_words.get(last, "").lower() == truth or last.lower() + " movies" == truth)


# ---- language --------------------------------------------------------------------------------------------

def _groups(words: list[str]) -> list[set]:
    groups = [set()]
    for word in (w.strip().lower() for w in words):
        if len(groups[-1]) == 4:
            groups.append(set())
        groups[-1].add(word)
    return groups


def connections(ground_truth: str, answer: str) -> float:
    """The parser of questions released before 2024-11-25: groups of four in bold, the best bold list counts."""
    bold = re.findall(r"\*\*(.*?)\*\*", answer.replace("\n", ""))
    truth = _groups(ground_truth.split(","))
    best = 0.0
    for output in (_groups(words.split(",")) for words in bold):
        correct = sum(any(all(w in out for w in group) for out in output) for group in truth)
        best = max(best, correct / len(truth))
    return best


def typos(ground_truth: str, answer: str) -> float:
    solutions = re.findall(r"<solution>(.*?)</solution>", answer)
    if solutions:
        parsed = solutions[-1]
    else:
        parsed = answer.replace("<solution>", "").replace("</solution>", "")
        match = re.search(r".* --- (.*?) --- .*", parsed)
        parsed = match.group(1) if match else parsed
    parsed = " ".join(filter(None, parsed.strip().split("\n")))
    return float(ground_truth in parsed)


def plot_unscrambling(ground_truth: str, answer: str) -> float:
    """1 - the edit distance between the true sentence order and the answer's, over the sentences."""
    match = re.search(r"<PLOT_SUMMARY>(.*)</PLOT_SUMMARY>", answer, re.DOTALL) or re.search(r"<PLOT_SUMMARY>(.*)", answer, re.DOTALL)
    text = match.group(1) if match else answer
    truth = [s for s in (s.strip() for s in ground_truth.split(".")) if s]
    sentences = [s for s in (s.strip() for s in text.split(".")) if s and s not in ("</PLOT_SUMMARY>", "**End of Plot Summary**")]
    order = []
    for sentence in truth:
        best = difflib.get_close_matches(sentence, sentences, n=1, cutoff=0.0)
        if best:
            order.append(sentences.index(best[0]))
    return 1 - _levenshtein(list(range(len(truth))), order) / len(truth)


# ---- data analysis ---------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    return re.sub(r"[^\w]", "", text.lower().strip())


def cta(ground_truth: str, answer: str) -> float:
    """Column type annotation: the class name, alone or at the answer's end."""
    parsed = answer
    if "\\boxed{" in parsed:
        parsed = remove_boxed(last_boxed_only_string(parsed) or "").replace("\\text{", "").replace("}", "").replace("\\", "")
    truth = _clean(ground_truth)
    return float(truth == _clean(parsed) or truth == _clean(parsed)[-len(truth):])


def _mapping(text: str) -> dict:
    """The join mapping in an answer: a Python/JSON dict in <solution> tags, a code block, \\boxed or bare."""
    if len(text) > 100_000:  # literal_eval of a huge answer costs memory; no real mapping is that long
        return {}
    solutions = re.findall(r"<solution>(.*?)</solution>", text, re.DOTALL)
    if solutions:
        return _mapping(solutions[-1].strip())
    try:
        found = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        flat = text.replace("\n", "")
        matches = (re.findall("```python(.*?)```", flat) or re.findall("```json(.*?)```", flat)
                   or re.findall("```(.*?)```", flat))
        if not matches and "\\boxed" in text:
            boxed = last_boxed_only_string(flat)
            if boxed:
                matches = [re.sub(r"\\text{[\'|\"](.*?)[\'|\"]}", r"'\1'", remove_boxed(boxed)).replace("\\", "")]
        try:
            found = ast.literal_eval((matches or [text])[-1].replace("null", "None"))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return {}
    return {k: v for k, v in found.items() if v is not None} if isinstance(found, dict) else {}


def tablejoin(ground_truth: str, answer: str) -> float:
    """F1 of the answer's column mapping against the true one, rounded to 2 places."""
    truth = ast.literal_eval(ground_truth) if isinstance(ground_truth, str) else ground_truth
    mine = _mapping(answer)
    if not mine:
        return 0.0
    tp = fp = fn = 0
    for k, v in mine.items():
        expected = truth.get(k)
        if not expected:
            fp += 1
        elif expected == v:
            tp += 1
        else:
            fp += 1
            fn += 1
    fn += sum(1 for k in truth if not mine.get(k))
    return round(2 * tp / (2 * tp + fp + fn), 2)


def _step_numbers(answer: str) -> list:
    """The ordered list of step numbers a proof-rearrangement answer gives (LiveBench's olympiad extraction)."""
    def digits_at_ends(text: str) -> tuple[str, int]:
        start = 0
        while start < len(text) and not text[start].isdigit():
            start += 1
        end = start
        while end < len(text) and text[end].isdigit():
            end += 1
        return text[start:end], len(text) - (end - start)

    def as_ints(parts) -> list | None:
        out = []
        for part in parts:
            try:
                out.append(int(part))
            except ValueError:
                out.append("NO ANSWER")
        return None if not out or set(out) == {"NO ANSWER"} else out

    lower = answer.lower()
    if "answer:" in lower:
        lines = lower.strip().split("\n")
        index = max(i for i, line in enumerate(lines) if "answer:" in line)
        text = lines[index].split("answer:")[1].replace("**", "").replace(".", "").strip()
        if text == "" and index < len(lines) - 1:
            text = lines[index + 1].replace("answer:", "").replace("**", "").replace(".", "").strip()
        cleaned = [n.strip().split(" ")[-1] for n in text.split(",")]
        for junk in ("$", "{", "}", "\\", "boxed", "<", ">"):
            cleaned = [n.replace(junk, "") for n in cleaned]
        found = as_ints(cleaned)
        if found is not None:
            return found
    if "\\boxed" in answer:
        boxed = last_boxed_only_string(answer)
        text = (remove_boxed(boxed) if boxed else answer).replace("\\text{", "").replace("}", "").replace("\\", "")
        found = as_ints([n.strip() for n in text.strip().split(",")])
        if found is not None:
            return found
    last = [digits_at_ends(n)[0] for n in lower.strip().split("\n")[-1].strip().split(",")]
    found = as_ints([n.strip() for n in last if n.strip()])
    if found is not None:
        return found
    numbers = []
    for i, part in enumerate(k.strip() for k in lower.split("answer:")[-1].split(",")):
        digits, removed = digits_at_ends(part)
        if digits != "" and digits != "₂":
            numbers.append(int(digits))
        if i > 0 and removed > 0:
            break
    return numbers


def proof_rearrangement(ground_truth: str, answer: str) -> float:
    """olympiad (IMO, USAMO): the order of the proof's missing steps; 1 - edit distance / the longer length."""
    truth = [int(n) for n in ground_truth.split(",")]
    mine = _step_numbers(answer)
    longest = max(len(mine), len(truth))
    return 1 - _levenshtein(mine, truth) / longest if longest else 0.0


def _read_table(kind: str, text: str):
    """tablereformat's v1 reader: a table in `kind` (json, jsonl, html, csv, markdown, tsv) as a DataFrame."""
    from io import StringIO

    import pandas as pd

    if kind == "json":
        for orient, lines in (("index", False), ("records", False), ("records", True), ("table", False)):
            try:
                return pd.read_json(StringIO(text), orient=orient, lines=lines)
            except Exception:  # pandas raises many kinds on text that is not this orientation
                pass
        return pd.read_json(StringIO(text), orient="values")
    if kind == "jsonl":
        return pd.read_json(StringIO(text), orient="records", lines=True)
    if kind == "html":
        return pd.concat(pd.read_html(StringIO(text)), axis=0)
    if kind == "csv":
        return pd.read_csv(StringIO(text))
    if kind == "markdown":
        return pd.read_table(StringIO(text), sep="|", header=0, index_col=1, skipinitialspace=True)
    if kind == "tsv":
        return pd.read_csv(StringIO(text), sep="\t")
    raise ValueError(f"table format {kind!r}")


def _table_text(answer: str) -> str:
    solutions = re.findall(r"<solution>(.*?)</solution>", answer, re.DOTALL)
    if solutions:
        return _table_text(solutions[-1].strip())
    for fence in (r"```json\n(.*?)```", r"```html\n(.*?)```"):
        found = re.findall(fence, answer, re.DOTALL)
        if found:
            return found[-1].strip()
    text = re.sub(r"^```.*\n", "", answer).replace("&amp;", "&").replace("```", "").strip()
    # "Here is the table in the new format:" and the like
    return re.sub(r"^\s*(Here|Input)\b.*?\b(format|table)\s*[:)]\s*", "", text, flags=re.IGNORECASE).strip()


def _table_after_header(text: str, header: str, sep: str):
    from io import StringIO

    import pandas as pd

    lines = text.strip().split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == header.strip()), None)
    if start is None:
        return None
    table = lines[start:]
    while table:  # text after the table: drop lines from the end until it parses (LiveBench loops forever on none)
        try:
            return pd.read_csv(StringIO("\n".join(table)), sep=sep)
        except Exception:
            table = table[:-1]
    return None


def _jsonl_rows(text: str, header) -> object:
    import pandas as pd

    rows = []
    for line in text.strip().split("\n"):
        if len(line) >= 2 and line[0] == "{" and line[-1] == "}" and all(key in line for key in header):
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return pd.DataFrame(rows) if rows else None


def _same_table(mine, truth) -> bool:
    import math as pymath

    from pandas.api.types import is_numeric_dtype

    try:
        truth.columns = [str(c).strip() for c in truth.columns]
        mine.columns = [str(c).strip() for c in mine.columns]
        truth = truth.drop(columns=["index"]) if "index" in truth.columns else truth
        mine = mine.drop(columns=["index"]) if "index" in mine.columns else mine
        if len(mine) != len(truth) or sorted(mine.columns) != sorted(truth.columns):
            return False
        for i in range(len(mine)):
            for key in mine.columns:
                a, b = mine.iloc[i][key], truth.iloc[i][key]
                a, b = (a.strip() if isinstance(a, str) else a), (b.strip() if isinstance(b, str) else b)
                if (isinstance(a, float) or is_numeric_dtype(a)) and (isinstance(b, float) or is_numeric_dtype(b)):
                    try:
                        a, b = float(a), float(b)
                    except (TypeError, ValueError):
                        if str(a).strip() != str(b).strip():
                            return False
                        continue
                    if not (pymath.isnan(a) and pymath.isnan(b)) and not abs(a - b) < 1e-6:
                        return False
                elif not bool(a == b):
                    return False
    except Exception:  # LiveBench scores any failure to compare as 0
        return False
    return True


def tablereformat(question: str, ground_truth: str, answer: str) -> float:
    """The table converted to the format the question asks for, compared cell by cell (v1, before 2025-04-25)."""
    asked = question.split("Please convert the Input Table from ")[1]
    target = asked.split("format to ")[1].split(" format")[0].lower()
    truth = _read_table(target, ground_truth)
    text = _table_text(answer)
    try:
        mine = _read_table(target, text)
    except Exception:  # not a table in that format: LiveBench looks for one inside the text
        mine = None
        if target in ("csv", "tsv"):
            mine = _table_after_header(text, ("\t" if target == "tsv" else ",").join(truth.columns), "\t" if target == "tsv" else ",")
        elif target == "jsonl":
            mine = _jsonl_rows(text, truth.columns)
        if mine is None:
            return 0.0
    if _same_table(mine, truth.copy()):
        return 1.0
    again = (_table_after_header(text, ",".join(truth.columns), ",") if target == "csv"
             else _jsonl_rows(text, truth.columns) if target == "jsonl" else None)
    return float(again is not None and _same_table(again, truth.copy()))


def instruction_following(instructions: list[str], kwargs: list[dict], prompt: str, answer: str) -> float:
    """paraphrase, simplify, story_generation, summarize: IFEval's strict checks of the instructions the
    prompt gives; LiveBench's score is the mean of "all followed" and the share followed."""
    from if_verifiable.common import evaluate_instructions

    from fusechat.constraints import registry

    _, scores = evaluate_instructions(answer, instructions, [k or {} for k in kwargs], prompt, registry())
    return (scores.binary_strict + scores.partial_strict) / 2


def score(task: str, ground_truth: str, answer: str, question: str) -> float | None:
    """LiveBench's score of one answer to a question of `task` (its subtask where it has one), or None for a
    task fusechat has no scorer for yet."""
    answer = re.sub(r"<think>.*?</think>", "", answer, flags=re.DOTALL)
    head = task.split("_")
    if head[0] in ("amc", "smc") or (len(head) > 1 and head[1] == "amc"):
        return math_contest(ground_truth, answer, question)
    if head[0] == "aime":
        return aime(ground_truth, answer)
    if head[0] in ("imo", "usamo"):
        return proof_rearrangement(ground_truth, answer)
    if task == "tablereformat":
        return tablereformat(question, ground_truth, answer)
    scorer = {"web_of_lies_v2": web_of_lies, "spatial": spatial, "zebra_puzzle": zebra_puzzle,
              "connections": connections, "typos": typos, "plot_unscrambling": plot_unscrambling,
              "cta": cta, "tablejoin": tablejoin}.get(task)
    return None if scorer is None else float(scorer(ground_truth, answer))

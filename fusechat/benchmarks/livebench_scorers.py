"""LiveBench's ground-truth scorers, ported from LiveBench (github.com/LiveBench/LiveBench,
livebench/process_results, Apache-2.0) for the tasks of its 2024-08-31 release that fusechat scores.

Why a port and not the package: LiveBench is not on PyPI, its package pins some forty dependencies
(docker, litellm, spacy, anthropic, ...) for its agentic and API parts, and its coding grader runs model
code in the evaluating process without a cage. These scorers are plain text matching; they follow
LiveBench's code line for line (the evaluator a question of that release gets: the "old" connections and
zebra-puzzle parsers before 2024-11-25), without its debug printing. Each returns LiveBench's score in
[0, 1] for one answer.
"""

from __future__ import annotations

import ast
import difflib
import itertools
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


def score(task: str, ground_truth: str, answer: str, question: str) -> float | None:
    """LiveBench's score of one answer to a question of `task` (its subtask where it has one), or None for a
    task fusechat has no scorer for yet."""
    answer = re.sub(r"<think>.*?</think>", "", answer, flags=re.DOTALL)
    head = task.split("_")
    if head[0] in ("amc", "smc") or (len(head) > 1 and head[1] == "amc"):
        return math_contest(ground_truth, answer, question)
    if head[0] == "aime":
        return aime(ground_truth, answer)
    scorer = {"web_of_lies_v2": web_of_lies, "spatial": spatial, "zebra_puzzle": zebra_puzzle,
              "connections": connections, "typos": typos, "plot_unscrambling": plot_unscrambling,
              "cta": cta, "tablejoin": tablejoin}.get(task)
    return None if scorer is None else float(scorer(ground_truth, answer))

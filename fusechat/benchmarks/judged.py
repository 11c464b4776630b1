"""AlpacaEval 2 and Arena-Hard: every model's answers in the official tools' formats, and a judged
pairwise comparison through any OpenAI-compatible judge (`eval.judged`, `eval.pairwise_judge`).

The official numbers come from the official tools: alpaca_eval judges against its GPT-4-Turbo
reference outputs with its own annotator configs, arena-hard-auto against its baseline model's
answers, both with hosted GPT-4-class judges. fusechat writes each model's answers where those tools
read them, so a user runs them unchanged:
- `run/eval/alpaca_eval/<model>.json`: a JSON list of {instruction, output, generator, dataset}
  (`alpaca_eval --model_outputs run/eval/alpaca_eval/sft+dpo.json`);
- `run/eval/arena_hard/model_answer/<model>.jsonl`: arena-hard-auto's answer records, v0.1
  (`question_id`, `choices[0].turns`) or v2 (`uid`, `messages`), whichever the question file is.

Inside the run, a judged comparison answers the question the run asks (did fusion improve the
target?): each model against the baseline model of the same run (`eval.judged_baseline`, the base
target), on the same questions, judged by the endpoint named in `eval.pairwise_judge`. Neither
official tool fits here: both judge against their own fixed references with prompts tuned for GPT-4
and parse free-text verdicts, which small local judges rarely produce. So the judge is asked for one
letter, A or B, and its first-token log-probabilities give P(A better) (OpenAI's API, vLLM and
llama.cpp's server all return them). Every question is judged twice with the answers' places
swapped; the candidate's score on a question is the mean of P(candidate better) over the two orders,
which cancels a judge's preference for a position. The win rate is the mean over questions, with a
bootstrap interval, and per question scores, so a study pairs them like its other benchmarks. The
label always names the judge; the share of questions on which both orders agree is reported too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from fusechat import FusechatError
from fusechat.readers import dataset_rows
from fusechat.recipe import JudgedSet, PairwiseJudge, Recipe
from fusechat.records import stable_id
from fusechat.runfolder import inside

MAX_CHARS = 6000  # each answer and question, so that a judge prompt fits a small judge's context
SYSTEM = ("You are an impartial judge of two AI assistants' answers to the same user question. Judge which "
          "answer serves the user better: correct, helpful, relevant and as detailed as the question needs. "
          "The order in which the answers appear and their length alone must not decide.")
TEMPLATE = ("[User question]\n{question}\n\n[Assistant A's answer]\n{a}\n\n[Assistant B's answer]\n{b}\n\n"
            "Which answer is better? Reply with one letter: A or B.")
DIGITS = 6


@dataclass(frozen=True)
class JudgedBenchmark:
    """AlpacaEval 2 or Arena-Hard: the facts a benchmark module declares (fusechat.benchmarks), for the two
    sets that share everything but their names and sizes. Answers are judged after every model answered."""

    NAME: str
    LABEL: str
    SHORT: str
    SIZE: int  # questions in the whole set
    WIN_RATE = True

    def spec(self, recipe: Recipe) -> JudgedSet | None:
        return next((s for s in recipe.eval.judged if s.format == self.NAME), None)

    def count(self, recipe: Recipe) -> int:
        chosen = self.spec(recipe)
        return 0 if chosen is None else min(chosen.n or self.SIZE, self.SIZE)

    def max_new_tokens(self, recipe: Recipe) -> int:
        return recipe.eval.max_new_tokens

    def items(self, recipe: Recipe, seen: set[str]) -> list[dict]:
        return questions(self.spec(recipe))

    def score(self, items, answers, recipe, math=None) -> None:
        return None  # judged against the baseline's answers once every model has answered


ALPACA_EVAL = JudgedBenchmark("alpaca_eval", "AlpacaEval 2 questions: win rate (judge: {judge}, both orders)",
                              "AlpacaEval 2 win rate", 805)
ARENA_HARD = JudgedBenchmark("arena_hard", "Arena-Hard questions: win rate (judge: {judge}, both orders)",
                             "Arena-Hard win rate", 500)  # v0.1; v2 has 750


def questions(spec: JudgedSet) -> list[dict]:
    """The benchmark's questions as {id, prompt, ...}: AlpacaEval rows carry `instruction` (and `dataset`),
    Arena-Hard v0.1 rows `question_id` and `turns`, v2 rows `uid` and `prompt`."""
    out = []
    for where, row in dataset_rows(spec.questions, split=spec.split):
        if spec.format == "alpaca_eval":
            if not isinstance(row.get("instruction"), str):
                raise FusechatError(f"{where}: an AlpacaEval question needs `instruction` (a string)")
            out.append({"id": f"alpaca-{len(out)}", "prompt": row["instruction"], "dataset": str(row.get("dataset") or ""),
                        "version": "alpaca_eval"})
        elif "question_id" in row and row.get("turns"):
            turn = row["turns"][0] if isinstance(row["turns"], list) else None
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
                raise FusechatError(f"{where}: Arena-Hard v0.1 `turns` is a list of {{content: text}}")
            out.append({"id": str(row["question_id"]), "prompt": turn["content"],
                        "category": row.get("category") or "", "version": "v0.1"})
        elif "uid" in row and isinstance(row.get("prompt"), str):
            out.append({"id": str(row["uid"]), "prompt": row["prompt"], "category": row.get("category") or "",
                        "version": "v2"})
        else:
            raise FusechatError(f"{where}: an Arena-Hard question needs `question_id` and `turns` (v0.1) "
                                f"or `uid` and `prompt` (v2)")
        if spec.n and len(out) == spec.n:
            break
    if not out:
        raise FusechatError(f"eval.judged: {spec.questions} holds no questions")
    return out


def baseline_answers(spec: JudgedSet, questions: list[dict]) -> tuple[str, dict[str, str]]:
    """The benchmark's own baseline (its name, and its answer to each question by id), from the file its tool
    ships: AlpacaEval's reference outputs ({instruction, output, generator}), matched by instruction;
    Arena-Hard's model answers (v0.1 `question_id` and `choices[0].turns[0].content`, v2 `uid` and the last
    message's answer)."""
    by_text, by_id, names = {}, {}, set()
    for where, row in dataset_rows(spec.baseline, split="train"):
        try:
            if spec.format == "alpaca_eval":
                by_text[row["instruction"]] = row["output"]
                names.add(str(row.get("generator") or ""))
            elif "question_id" in row:
                by_id[str(row["question_id"])] = row["choices"][0]["turns"][0]["content"]
                names.add(str(row.get("model_id") or ""))
            else:
                answer = row["messages"][-1]["content"]
                by_id[str(row["uid"])] = answer["answer"] if isinstance(answer, dict) else answer
                names.add(str(row.get("model") or ""))
        except (KeyError, IndexError, TypeError):
            raise FusechatError(f"{where}: not a {spec.format} baseline answer") from None
    out = {}
    for q in questions:
        answer = by_text.get(q["prompt"]) if spec.format == "alpaca_eval" else by_id.get(q["id"])
        if answer is None:
            raise FusechatError(f"{spec.baseline}: no baseline answer to question {q['id']} of {spec.questions}")
        out[q["id"]] = answer
    return ", ".join(sorted(n for n in names if n)) or Path(spec.baseline).stem, out


def write_official(folder: Path, bench: str, model: str, rows: list[dict]) -> Path:
    """Write one model's answers (rows: {id, prompt, response, ...}) where the official tool reads them."""
    if bench == "alpaca_eval":
        path = inside(folder, "alpaca_eval", f"{model}.json")
        records = [{"instruction": r["prompt"], "output": r["response"], "generator": model, "dataset": r.get("dataset", "")}
                   for r in rows]
        text = json.dumps(records, ensure_ascii=False, indent=1)
    else:
        path = inside(folder, "arena_hard", "model_answer", f"{model}.jsonl")
        now, lines = 0.0, []  # no wall-clock stamp: the same answers write the same bytes (the stage's fingerprint)
        for r in rows:
            answer_id = stable_id(f"{model}\n{r['id']}\n{r['response']}")
            if r.get("version") == "v2":
                record = {"uid": r["id"], "ans_id": answer_id, "model": model, "tstamp": now,
                          "messages": [{"role": "user", "content": r["prompt"]},
                                       {"role": "assistant", "content": {"answer": r["response"]}}]}
            else:
                record = {"question_id": r["id"], "answer_id": answer_id, "model_id": model, "tstamp": now,
                          "choices": [{"index": 0, "turns": [{"content": r["response"]}]}]}
            lines.append(json.dumps(record, ensure_ascii=False))
        text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def judge_messages(question: str, a: str, b: str) -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": TEMPLATE.format(question=question[:MAX_CHARS], a=a[:MAX_CHARS], b=b[:MAX_CHARS])}]


def p_first(token_logprobs: dict[str, float]) -> float | None:
    """P(A) among the A/B readings of the first token; None when the judge gave neither letter."""
    a = sum(math.exp(lp) for tok, lp in token_logprobs.items() if tok.strip() == "A")
    b = sum(math.exp(lp) for tok, lp in token_logprobs.items() if tok.strip() == "B")
    return a / (a + b) if a + b > 0 else None


def item_score(candidate_first: float | None, baseline_first: float | None) -> float:
    """P(candidate better) averaged over both orders; an order without a verdict counts as a tie."""
    first = 0.5 if candidate_first is None else candidate_first
    second = 0.5 if baseline_first is None else 1.0 - baseline_first
    return (first + second) / 2


def agrees(candidate_first: float | None, baseline_first: float | None) -> bool:
    """Did both orders name the same winner?"""
    if candidate_first is None or baseline_first is None:
        return False
    return (candidate_first > 0.5) == (baseline_first < 0.5) and candidate_first != 0.5 and baseline_first != 0.5


class PairwiseJudgeClient:
    """The endpoint's verdicts, both orders of every pair, `concurrency` requests at a time."""

    def __init__(self, cfg: PairwiseJudge):
        from fusechat.backends.openai_api import OpenAIBackend

        self.backend = OpenAIBackend(cfg.endpoint, cfg.model, concurrency=cfg.concurrency, api_key_env=cfg.api_key_env)
        self.concurrency = cfg.concurrency

    def verdicts(self, triples: list[tuple[str, str, str]]) -> list[tuple[float | None, float | None]]:
        """For each (question, candidate, baseline): P(A) with the candidate as A, and with the baseline as A."""
        from concurrent.futures import ThreadPoolExecutor

        def one(messages):
            p = p_first(self.backend.first_token_logprobs(messages))
            return None if p is None else round(p, DIGITS)

        jobs = [judge_messages(q, c, b) for q, c, b in triples] + [judge_messages(q, b, c) for q, c, b in triples]
        with ThreadPoolExecutor(self.concurrency) as pool:
            ps = list(pool.map(one, jobs))
        return list(zip(ps[:len(triples)], ps[len(triples):]))

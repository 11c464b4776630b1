"""The report's data viewer: every sample, SFT example, DPO pair, dropped prompt and eval answer of a run,
readable in a browser with no server.

The rows go to small script files beside the report (`report/viewer/<set>/<group>-<k>.js`, 100 rows each,
each one `fusechatRows(key, [...])` call), grouped by what the viewer filters on (domain, source, whether
the answer was right; model and benchmark for the eval): the page loads only the chunk it shows, so a
paper-size run (millions of samples) opens as fast as a small one. Plain script files rather than JSON
because a page opened from disk (file://) may not fetch files, but it may load scripts. The page itself
(`viewer_html`) is a few hundred lines of plain JavaScript inside the report: no framework, no build step.

Why our own: the dataset viewers people use (the hub's, Argilla, Lilac) need a server or an upload; a
run folder on a cluster should be readable where it lies.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

from fusechat.runfolder import write_atomic

CHUNK = 100  # rows a page shows, and a file holds
TEXT_LIMIT = 20_000  # characters of one text field kept (a runaway answer stays readable, the file small)


def _cut(text) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + f" [... {len(text) - TEXT_LIMIT:,} more characters]"


def _last(messages: list[dict]) -> str:
    return messages[-1]["content"] if messages else ""


def _verdict(correct) -> str:
    return "unchecked" if correct is None else "right" if correct else "wrong"


def sample_rows(samples: list[dict], prompts: dict[str, str]) -> list[dict]:
    return [{"domain": s["domain"], "source": s["source"], "check": _verdict(s.get("correct")),
             "prompt_id": s["prompt_id"], "sample": s["sample_index"], "prompt": _cut(prompts.get(s["prompt_id"], "")),
             "response": _cut(s["text"]), "reward": s.get("reward"), "tokens": s.get("completion_tokens"),
             "finish": s.get("finish_reason"), "note": _cut(s.get("score_info") or s.get("error") or "")} for s in samples]


def sft_rows(sft: list[dict]) -> list[dict]:
    return [{"domain": r["domain"], "source": r["source"], "prompt_id": r["prompt_id"],
             "prompt": _cut(_last(r["messages"][:-1])), "response": _cut(_last(r["messages"])),
             "reward": r.get("reward")} for r in sft]


def dpo_rows(dpo: list[dict]) -> list[dict]:
    out = []
    for r in dpo:
        c, w = r.get("chosen_reward"), r.get("rejected_reward")
        out.append({"domain": r["domain"], "source": r["source"], "prompt_id": r["prompt_id"],
                    "prompt": _cut(_last(r["prompt"])), "chosen": _cut(_last(r["chosen"])),
                    "rejected": _cut(_last(r["rejected"])), "chosen_reward": c, "rejected_reward": w,
                    "gap": None if c is None or w is None else c - w})
    return out


def dropped_rows(dropped: list[dict]) -> list[dict]:
    return [{"domain": r["domain"], "reason": r["reason"], "prompt_id": r["prompt_id"], "prompt": _cut(r["prompt"])}
            for r in dropped]


def eval_rows(items: list[dict]) -> list[dict]:
    return [{"benchmark": r["benchmark"], "model": r["model"], "id": r["id"], "prompt": _cut(r.get("prompt")),
             "response": _cut(r.get("response")), "gold": _cut(r.get("gold")), "score": r.get("score")} for r in items]


def disagreement_rows(items: list[dict]) -> list[dict]:
    """The eval items where the base and the fused model (SFT+DPO) got different scores, side by side."""
    by = defaultdict(dict)
    for r in items:
        by[(r["benchmark"], r["id"])][r["model"]] = r
    out = []
    for (bench, item), models in by.items():
        base, fused = models.get("base"), models.get("sft+dpo")
        if base and fused and base.get("score") is not None and fused.get("score") is not None \
                and base["score"] != fused["score"]:
            out.append({"benchmark": bench, "change": "fused better" if fused["score"] > base["score"] else "fused worse",
                        "id": item, "prompt": _cut(base.get("prompt")), "gold": _cut(base.get("gold")),
                        "base": _cut(base.get("response")), "fused": _cut(fused.get("response")),
                        "base_score": base["score"], "fused_score": fused["score"]})
    return out


# set name -> (its title, the fields it is grouped and filtered by)
SETS = {
    "samples": ("Samples", ("domain", "source", "check")),
    "sft": ("SFT examples", ("domain", "source")),
    "dpo": ("DPO pairs", ("domain", "source")),
    "dropped": ("Dropped prompts", ("domain", "reason")),
    "eval": ("Eval answers", ("benchmark", "model")),
    "disagree": ("Base vs fused", ("benchmark", "change")),
}


def write_viewer(folder: Path, sets: dict[str, list[dict]]) -> dict:
    """Write every set's chunks under `folder` (replacing what was there); return the index the page reads:
    per set, its groups (their field values, row count and chunk count)."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    index = {}
    for name, rows in sets.items():
        if not rows:
            continue
        fields = SETS[name][1]
        groups = defaultdict(list)
        for r in rows:
            groups[tuple(str(r.get(f)) for f in fields)].append(r)
        entries = []
        for g, (values, members) in enumerate(sorted(groups.items())):
            chunks = [members[i : i + CHUNK] for i in range(0, len(members), CHUNK)]
            for k, chunk in enumerate(chunks):
                key = f"{name}/{g}-{k}"
                (tmp / name).mkdir(parents=True, exist_ok=True)
                text = json.dumps(chunk, ensure_ascii=False).replace("</", "<\\/")
                write_atomic(tmp / f"{key}.js", f"fusechatRows({json.dumps(key)}, {text});\n")
            entries.append({"values": list(values), "rows": len(members), "chunks": len(chunks), "id": g})
        index[name] = {"title": SETS[name][0], "fields": list(fields), "groups": entries}
    shutil.rmtree(folder, ignore_errors=True)
    if tmp.exists():
        tmp.rename(folder)
    return index


def viewer_html(index: dict, folder_name: str) -> str:
    """The viewer's markup and script for the report page (the chunks live in `folder_name/` beside it)."""
    if not index:
        return ""
    data = json.dumps(index, ensure_ascii=False).replace("</", "<\\/")
    return VIEWER.replace("__INDEX__", data).replace("__FOLDER__", json.dumps(folder_name))


VIEWER = """
<h2 id="data">The data</h2>
<p class="note">Every row of the run, 100 a page; filters pick the groups to page through. The rows are in
the files beside this page (viewer/); the run folder's JSONL files hold the same records.</p>
<div id="viewer">
  <div id="tabs"></div>
  <div id="filters"></div>
  <div id="pager"><button id="prev">&larr; previous</button> <span id="position"></span>
    <button id="next">next &rarr;</button></div>
  <div id="rows"></div>
</div>
<style>
#tabs button{margin:0 4px 4px 0;padding:4px 10px;border:1px solid #aaa;background:#f6f6f6;cursor:pointer}
#tabs button.active{background:#222;color:#fff}
#filters select{margin:4px 10px 4px 2px}
.row{border:1px solid #ddd;border-radius:4px;margin:8px 0;padding:6px 10px}
.row .meta{font-size:12px;color:#555;margin-bottom:4px}
.row pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:6px;margin:4px 0;font-size:12px;max-height:24em;overflow:auto}
.pair{display:flex;gap:10px}.pair>div{flex:1;min-width:0}
.label{font-size:12px;font-weight:600}
</style>
<script>
const INDEX = __INDEX__;
const FOLDER = __FOLDER__;
const loaded = {};
const waiting = {};
function fusechatRows(key, rows) { loaded[key] = rows; (waiting[key] || []).forEach(f => f(rows)); delete waiting[key]; }
function load(key, then) {
  if (loaded[key]) { then(loaded[key]); return; }
  if (waiting[key]) { waiting[key].push(then); return; }
  waiting[key] = [then];
  const s = document.createElement("script");
  s.src = FOLDER + "/" + key + ".js";
  document.head.appendChild(s);
}
let current = null, filters = {}, page = 0;
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v));
  children.forEach(c => e.append(c));
  return e;
}
function num(x) { return x === null || x === undefined ? "-" : (typeof x === "number" ? (Number.isInteger(x) ? x : x.toFixed(3)) : x); }
function pages() {
  const set = INDEX[current], out = [];
  set.groups.forEach(g => {
    if (set.fields.every((f, i) => !filters[f] || filters[f] === g.values[i]))
      for (let k = 0; k < g.chunks; k++) out.push([g, k]);
  });
  return out;
}
function showTabs() {
  const tabs = document.getElementById("tabs");
  tabs.innerHTML = "";
  Object.entries(INDEX).forEach(([name, set]) => {
    const total = set.groups.reduce((a, g) => a + g.rows, 0);
    const b = el("button", {"data-set": name, class: name === current ? "active" : ""}, set.title + " (" + total.toLocaleString() + ")");
    b.onclick = () => { current = name; filters = {}; page = 0; show(); };
    tabs.append(b);
  });
}
function showFilters() {
  const set = INDEX[current], box = document.getElementById("filters");
  box.innerHTML = "";
  set.fields.forEach((f, i) => {
    const values = [...new Set(set.groups.map(g => g.values[i]))].sort();
    const select = el("select", {"data-field": f}, el("option", {value: ""}, "all"));
    values.forEach(v => { const o = el("option", {value: v}, v); if (filters[f] === v) o.selected = true; select.append(o); });
    select.onchange = () => { filters[f] = select.value; page = 0; show(); };
    box.append(f + ": ", select);
  });
}
function block(label, text) { return el("div", {}, el("div", {class: "label"}, label), el("pre", {}, text || "")); }
function render(row) {
  const r = el("div", {class: "row"});
  if (current === "samples") {
    r.append(el("div", {class: "meta"}, `${row.source} · ${row.domain} · ${row.check} · reward ${num(row.reward)} · ${num(row.tokens)} tokens · ${row.finish} · ${row.prompt_id} #${row.sample}`),
             block("prompt", row.prompt), block("response", row.response));
    if (row.note) r.append(block("scorer's note", row.note));
  } else if (current === "sft") {
    r.append(el("div", {class: "meta"}, `${row.source} · ${row.domain} · reward ${num(row.reward)} · ${row.prompt_id}`),
             block("prompt", row.prompt), block("answer (trained on)", row.response));
  } else if (current === "dpo") {
    r.append(el("div", {class: "meta"}, `${row.source} · ${row.domain} · gap ${num(row.gap)} · ${row.prompt_id}`),
             block("prompt", row.prompt),
             el("div", {class: "pair"}, block("chosen · reward " + num(row.chosen_reward), row.chosen),
                                          block("rejected · reward " + num(row.rejected_reward), row.rejected)));
  } else if (current === "dropped") {
    r.append(el("div", {class: "meta"}, `${row.domain} · dropped: ${row.reason} · ${row.prompt_id}`), block("prompt", row.prompt));
  } else if (current === "eval") {
    r.append(el("div", {class: "meta"}, `${row.model} · ${row.benchmark} · score ${num(row.score)} · ${row.id}`),
             block("prompt", row.prompt), block("answer", row.response), block("gold", row.gold));
  } else {
    r.append(el("div", {class: "meta"}, `${row.benchmark} · ${row.change} · base ${num(row.base_score)} → fused ${num(row.fused_score)} · ${row.id}`),
             block("prompt", row.prompt), block("gold", row.gold),
             el("div", {class: "pair"}, block("base", row.base), block("fused (SFT+DPO)", row.fused)));
  }
  return r;
}
function show() {
  showTabs(); showFilters();
  const all = pages(), box = document.getElementById("rows"), position = document.getElementById("position");
  page = Math.max(0, Math.min(page, all.length - 1));
  const total = [...new Set(all.map(([g]) => g))].reduce((a, g) => a + g.rows, 0);
  if (!all.length) { box.innerHTML = "<p>No rows.</p>"; position.textContent = ""; return; }
  const [group, k] = all[page];
  load(`${current}/${group.id}-${k}`, list => {
    box.innerHTML = "";
    list.forEach(row => box.append(render(row)));
    position.textContent = `page ${page + 1} of ${all.length} · ${total.toLocaleString()} rows`;
  });
}
document.getElementById("prev").onclick = () => { page -= 1; show(); };
document.getElementById("next").onclick = () => { page += 1; show(); };
current = Object.keys(INDEX)[0];
show();
</script>
"""

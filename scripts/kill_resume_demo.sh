#!/usr/bin/env bash
# Kill `fusechat sample` midway on real models, rerun, and count records: none lost, none duplicated.
set -e
S=(--set name=killdemo --set 'sources=[{name: smollm2-135m, model: smollm2-135m-instruct, batch_size: 8, sampling: {max_new_tokens: 384}, samples_per_prompt: {instruction: 4, math: 4, code: 4}}]')
rm -rf runs/killdemo
fusechat prompts "${S[@]}" >/dev/null 2>&1
fusechat sample "${S[@]}" >/dev/null 2>&1 &
pid=$!
sleep 40
kill -9 $pid; wait $pid 2>/dev/null || true
echo "after kill: $(ls runs/killdemo/sample/shards | grep -c jsonl) shard(s) finished, manifest: $(ls runs/killdemo/sample/manifest.json 2>/dev/null || echo none)"
fusechat sample "${S[@]}" 2>&1 | grep -E "done|tok/s"
python - <<'PY'
import collections, json
samples = [json.loads(line) for line in open("runs/killdemo/sample/samples.jsonl")]
prompts = [json.loads(line) for line in open("runs/killdemo/prompts/prompts.jsonl")]
keys = collections.Counter((s["prompt_id"], s["sample_index"]) for s in samples)
expected = {(p["id"], k) for p in prompts for k in range(4)}
print("records", len(samples), "expected", len(expected), "duplicates", sum(v > 1 for v in keys.values()),
      "missing", len(expected - set(keys)))
PY

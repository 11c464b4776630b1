"""The build stage's datasets go into TRL's SFTTrainer and DPOTrainer unchanged."""

import datasets
import pytest

from fusechat.build import build_datasets
from fusechat.recipe import BuildConfig
from fusechat.records import Prompt
from fusechat.runfolder import Outputs, RunFolder

trl = pytest.importorskip("trl")


def built_datasets(tmp_path):
    prompts = [Prompt(id=f"p{i}", domain="instruction", prompt=f"Say something about {i}.", split="sft" if i < 2 else "dpo")
               for i in range(4)]
    scored = [{"prompt_id": p.id, "domain": "instruction", "source": "a", "sample_index": k, "seed": 0,
               "text": f"Answer {k} about {p.id}.", "prompt_tokens": 5, "completion_tokens": 4,
               "finish_reason": "stop", "reward": 0.2 + 0.03 * k, "correct": None, "score_info": ""}
              for p in prompts for k in range(2)]
    result = build_datasets(prompts, scored, BuildConfig(), ["a"])
    RunFolder(tmp_path).write("build", Outputs({"sft": result.sft, "dpo": result.dpo}))
    return datasets.load_from_disk(str(tmp_path / "build" / "sft")), datasets.load_from_disk(str(tmp_path / "build" / "dpo"))


def test_sft_and_dpo_trainers_accept_build_output(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft, dpo = built_datasets(tmp_path)
    assert len(sft) == 2 and len(dpo) == 2
    assert trl.data_utils.is_conversational(sft[0]) and trl.data_utils.is_conversational(dpo[0])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    common = dict(max_steps=1, per_device_train_batch_size=2, bf16=False, gradient_checkpointing=False,
                  report_to=[], use_cpu=True, save_strategy="no", logging_steps=1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(output_dir=str(tmp_path / "sft"), **common),
                             train_dataset=sft, processing_class=tokenizer)
    assert trainer.train().training_loss > 0
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = trl.DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), ref_model=ref,
                             args=trl.DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
                             train_dataset=dpo, processing_class=tokenizer)
    assert trainer.train().training_loss > 0

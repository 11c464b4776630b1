"""Stage 6, dpo: preference optimisation of the SFT model on same-source pairs (DPO or LN-DPO).

Input: `run/build/dpo`, `run/sft/model`. Output: `run/dpo/model` (a save_pretrained folder) and
`run/dpo/log` (one row per optimizer step). The maths are in `dpo_loss`, the loop in `dpo_loop`.
A killed run resumes from its last checkpoint (every `save_steps` optimizer steps).
"""

from __future__ import annotations

from fusechat import FusechatError
from fusechat.cards import model_card
from fusechat.runfolder import Outputs, StageRun, write_atomic
from fusechat.train.common import load_model, load_tokenizer, lora_config
from fusechat.train.dpo_loop import train_dpo


def dpo(run: StageRun) -> Outputs:
    rows = run.read("build", "dpo")
    cfg = run.recipe.dpo
    if not rows:
        raise FusechatError(f"{run.folder.stage_dir('build')}: the DPO set is empty; nothing to train on")
    path = run.model("sft")
    tokenizer = load_tokenizer(path)
    model = load_model(path, cfg)
    lora = lora_config(cfg)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    folder = run.work_dir / "model"
    _, log, summary = train_dpo(model, tokenizer, rows, cfg, run.work_dir, run.progress, save_to=folder,
                                tracking=run.dir / "tracking")
    if not run.is_main:
        return Outputs()
    write_atomic(folder / "README.md", model_card(run.recipe, "dpo", run.recipe.target.model))
    return Outputs(counts=summary | {"loss": cfg.loss, "beta": cfg.beta}, logs={"log": log}, files={"model": folder},
                   extra={"model": str(run.dir / "model")})

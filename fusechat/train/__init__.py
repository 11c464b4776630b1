"""Training stages: SFT (sft.py) then DPO / LN-DPO (dpo.py), with what they share (common.py)."""

# VPT-deep with 50 prompts per block: SHIP's prompt budget (0.23M).
_base_ = ['./_base_camvid-upernet_dinov2-s14.py']
model = dict(backbone=dict(prompt=dict(
    type='Prompter', placements=[dict(kind='deep', num_tokens=50)],
    dropout=0.1)))

_base_ = ['./_base_camvid_dinov2-s14.py']
model = dict(backbone=dict(prompt=dict(
    type='LoRA', rank=8, alpha=16.0, targets=['q', 'v'])))

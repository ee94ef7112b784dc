_base_ = ['./_base_camvid-upernet_dinov2-s14.py']
model = dict(backbone=dict(prompt=dict(
    type='Prompter', placements=[dict(kind='deep', num_tokens=10)],
    dropout=0.1)))

# VPT-deep with 50 prompts per block: the parameter-matched baseline of SHIP
# (0.23M prompt parameters).
_base_ = ['./_base_cifar10-1k_dinov2-s14.py']
model = dict(backbone=dict(prompt=dict(
    type='Prompter', placements=[dict(kind='deep', num_tokens=50)],
    dropout=0.1)))

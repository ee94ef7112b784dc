# Full fine-tuning: every backbone parameter trains, at 1/20 of the head's lr
# (1e-3 for the head).
_base_ = ['./_base_cifar10-1k_dinov2-s14.py']
model = dict(backbone=dict(freeze_backbone=False))
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.05)}))

# Full fine-tuning: every backbone parameter trains, at 1/20 of the heads'
# lr (1e-3 for the neck and heads), as in the CIFAR-10 1k table.
_base_ = ['./_base_camvid-upernet_dinov2-s14.py']
model = dict(backbone=dict(freeze_backbone=False))
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'backbone': dict(lr_mult=0.05),
        'neck': dict(lr_mult=1.0),
        'decode_head': dict(lr_mult=1.0),
        'auxiliary_head': dict(lr_mult=1.0)}))

# CamVid with mmseg's ViT UperNet recipe (vit_vit-b16_mln_upernet_8xb2-160k:
# featmaps of blocks 2, 5, 8, 11 -> MultiLevelNeck(scales 4, 2, 1, 0.5) ->
# UPerHead + FCN auxiliary head on the last level, weight 0.4) on the frozen
# DINOv2-layout ViT-S/14.  Widths are the recipe's scaled by 384 / 768 (neck
# 384, UPerHead 256, auxiliary 128); BN instead of SyncBN (one GPU).  Data,
# crops and augmentation are those of the linear bench.
#
# Schedule, shared by every method: 8 images per step, 300 steps (6.5 epochs
# of the 367 training images), AdamW with a 30-step warm-up then poly decay.
# Prompts (and biases) train at the linear bench's lr 3e-3 (chosen there on
# val); the neck and heads at 1e-3, from the head-only check on val in
# configs/bench/README.md (3e-4 / 1e-3 / 3e-3).
_base_ = ['./_base_camvid_dinov2-s14.py']

norm_cfg = dict(type='BN', requires_grad=True)
# fast_head: neck and heads channels_last and compiled (same math;
# docs/performance.md); model.fast_head=False gives mmseg's eager path.
model = dict(
    fast_head=True,
    backbone=dict(out_indices=(2, 5, 8, 11)),
    neck=dict(type='MultiLevelNeck', in_channels=[384, 384, 384, 384],
              out_channels=384, scales=[4, 2, 1, 0.5]),
    decode_head=dict(
        _delete_=True,
        type='UPerHead', in_channels=[384, 384, 384, 384],
        in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6), channels=256,
        dropout_ratio=0.1, num_classes=11, norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                         loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead', in_channels=384, in_index=3, channels=128,
        num_convs=1, concat_input=False, dropout_ratio=0.1, num_classes=11,
        norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                         loss_weight=0.4)))

train_dataloader = dict(batch_size=8)
max_iters = 300
head_lr_mult = 1 / 3  # 3e-3 * 1/3 = 1e-3 for the neck and heads
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'neck': dict(lr_mult=head_lr_mult),
    'decode_head': dict(lr_mult=head_lr_mult),
    'auxiliary_head': dict(lr_mult=head_lr_mult)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters))

# VPT-deep on ADE20K: mmseg's vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512
# (ViT-B/16 + MultiLevelNeck + UperNet, 512 x 512 crops, 160k iterations,
# batch 2 x 8 GPUs, AdamW, 1500 warm-up iterations then poly decay) with the
# backbone frozen and 10 prompts per block trained.  Prompts learn at
# `prompt_lr` (no weight decay); neck and heads at mmseg's lr.
_base_ = [
    '../_base_/models/upernet_vit-b16_vpt-deep.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))

lr = 6e-5
prompt_lr = 1e-3
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        custom_keys={
            'prompter': dict(lr_mult=prompt_lr / lr, decay_mult=0.),
        }))

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False,
    )
]

# By default, models are trained on 8 GPUs with 2 images per GPU
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

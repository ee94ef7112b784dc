# CIFAR-10 1k-shot (../shared/bench/cifar10_1k) on the frozen DINOv2-layout
# ViT-S/14 (../shared/bench/weights), the classification benchmark every
# method of mmship is compared on.  Data and weights come from
# $MMSHIP_BENCH (default data/bench; see tools/benchmark/prepare_bench.sh).
# Choices are made train800 -> val200; the table is train1000 -> test:
#   --cfg-options train_dataloader.dataset.ann_file=train1000.txt \
#                 val_dataloader.dataset.ann_file=test.txt
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
bench_root = '{{$MMSHIP_BENCH:data/bench}}'
data_root = bench_root + '/cifar10_1k'

model = dict(
    type='PromptedImageClassifier',
    backbone=dict(
        type='PromptedViT',
        arch='dinov2-small',
        img_size=224,
        patch_size=14,
        layer_scale_init_value=1e-5,
        out_type='cls_token',
        init_cfg=dict(type='Pretrained',
                      checkpoint=bench_root + '/weights/dinov2_vits14_fp32.pth')),
    neck=None,
    head=dict(type='LinearClsHead', num_classes=10, in_channels=384,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

data_preprocessor = dict(
    num_classes=10, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=224, interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=224, interpolation='bicubic'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=data_root, with_label=True,
                 ann_file='train800.txt', data_prefix='',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root, with_label=True,
                 ann_file='val200.txt', data_prefix='',
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = dict(
    batch_size=128, num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root, with_label=True,
                 ann_file='test.txt', data_prefix='',
                 pipeline=test_pipeline))
test_evaluator = val_evaluator

# Same schedule and budget for every method.
max_epochs = 40
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=3e-3, weight_decay=1e-4))  # chosen on val
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=4,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=4, end=max_epochs,
         eta_min=1e-6, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

# CamVid (11 classes, ../shared/bench/camvid) on the frozen DINOv2-layout
# ViT-S/14: the segmentation benchmark every method of mmship is compared on
# (train -> val).  The decoder is the bench README's linear probe (a 1x1 conv
# on the block-12 patch tokens, bilinear upsampling; 1500 AdamW steps of
# batch 16), so that the methods differ only in how they adapt the backbone.  Data and weights come from $MMSHIP_BENCH
# (default data/bench; see tools/benchmark/prepare_bench.sh).
default_scope = 'mmseg'
custom_imports = dict(imports=['mmship'], allow_failed_imports=False)
bench_root = '{{$MMSHIP_BENCH:data/bench}}'
data_root = bench_root + '/camvid'
crop_size = (364, 476)  # multiples of the 14 px patch, ~CamVid's 360x480

data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
    size=crop_size)
model = dict(
    type='PromptedEncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='PromptedViT',
        arch='dinov2-small',
        img_size=crop_size,
        patch_size=14,
        layer_scale_init_value=1e-5,
        out_type='featmap',
        out_indices=(11, ),
        init_cfg=dict(type='Pretrained',
                      checkpoint=bench_root + '/weights/dinov2_vits14_fp32.pth')),
    decode_head=dict(
        type='FCNHead', in_channels=384, in_index=0, channels=384,
        num_convs=0, concat_input=False, dropout_ratio=0.0, num_classes=11,
        norm_cfg=None, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                         loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset_type = 'BaseSegDataset'
metainfo = dict(
    classes=('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree',
             'SignSymbol', 'Fence', 'Car', 'Pedestrian', 'Bicyclist'),
    palette=[[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128],
             [60, 40, 222], [128, 128, 0], [192, 128, 128], [64, 64, 128],
             [64, 0, 128], [64, 64, 0], [0, 128, 192]])
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(476, 364), ratio_range=(0.75, 1.5),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(476, 364), keep_ratio=False),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo,
                img_suffix='.jpg', seg_map_suffix='.png',
                reduce_zero_label=False, ignore_index=255)
train_dataloader = dict(
    batch_size=16, num_workers=6, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**_dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='img_dir/train',
                                  seg_map_path='ann_dir/train')))
val_dataloader = dict(
    batch_size=1, num_workers=4, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**_dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='img_dir/val',
                                  seg_map_path='ann_dir/val')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# Same schedule and budget for every method.
max_iters = 1500
optim_wrapper = dict(
    type='AmpOptimWrapper', dtype='bfloat16',
    optimizer=dict(type='AdamW', lr=3e-3, weight_decay=1e-4),  # chosen on val
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=150),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=150,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends,
                  name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)

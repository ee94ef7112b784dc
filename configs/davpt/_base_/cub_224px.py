# CUB-200-2011 (FGVC) for ViT-B/16 at 224 px, VPT's FGVC protocol: train
# Resize 256 x 256 + RandomCrop 224 + flip, test Resize 256 x 256 + CenterCrop
# 224.  mmpretrain's CUB dataset reads data/CUB_200_2011 (images/, images.txt,
# image_class_labels.txt, train_test_split.txt, classes.txt).  Normalisation
# of timm's in21k ViT checkpoints (mean = std = 0.5).
dataset_type = 'CUB'
data_root = 'data/CUB_200_2011'
data_preprocessor = dict(
    num_classes=200,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), interpolation='bicubic'),
    dict(type='RandomCrop', crop_size=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 256), interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# A VTAB-1k task in the common layout (VPT / NOAH): data/vtab-1k/<task>/ with
# the images and list files train800.txt, val200.txt, train800val200.txt and
# test.txt ("relative/path label" per line), read by mmpretrain's
# CustomDataset.  Train on train800, select on val200, test on test (retrain
# on train800val200 for the final number with
#   --cfg-options train_dataloader.dataset.ann_file=train800val200.txt).
# 224 x 224 bicubic resize, no augmentation; timm in21k normalisation.
# Another task: set data_root / num_classes, e.g. for the CIFAR-100 task
#   data/vtab-1k/cifar, 100 classes (the default here).
dataset_type = 'CustomDataset'
data_root = 'data/vtab-1k/cifar'
num_classes = 100
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic'),
    dict(type='PackInputs'),
]
test_pipeline = train_pipeline
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='train800.txt', data_prefix='',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='val200.txt', data_prefix='',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    dataset=dict(type=dataset_type, data_root=data_root,
                 ann_file='test.txt', data_prefix='',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = val_evaluator

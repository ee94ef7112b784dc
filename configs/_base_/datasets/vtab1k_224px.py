# One VTAB-1k task in the layout of the VPT / NOAH release
# (data/vtab-1k/<task>/ with images and the list files train800.txt,
# val200.txt, train800val200.txt, test.txt; lines "<path> <label>", paths
# relative to the task folder), images resized to 224 x 224 without
# augmentation as in VPT and SHIP.  Normalisation matches timm's in21k ViT
# checkpoints (mean = std = 0.5).
#
# Hyper-parameters are chosen train800 -> val200 (the default here); the
# reported number is train800val200 -> test:
#   --cfg-options train_dataloader.dataset.ann_file=train800val200.txt \
#                 val_dataloader.dataset.ann_file=test.txt
# Another task: set data_root of the three dataloaders and the head's
# num_classes (cifar 100, caltech101 102, dtd 47, oxford_flowers102 102,
# oxford_iiit_pet 37, svhn 10, sun397 397, patch_camelyon 2, eurosat 10,
# resisc45 45, diabetic_retinopathy 5, clevr_count 8, clevr_dist 6,
# dmlab 6, kitti 4, dsprites_loc 16, dsprites_ori 16, smallnorb_azi 18,
# smallnorb_ele 9).
dataset_type = 'CustomDataset'
data_root = 'data/vtab-1k/cifar'
data_preprocessor = dict(
    num_classes=100,
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
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, with_label=True,
                 ann_file='train800.txt', data_prefix='',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, with_label=True,
                 ann_file='val200.txt', data_prefix='',
                 pipeline=test_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = dict(
    batch_size=128,
    num_workers=4,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, with_label=True,
                 ann_file='test.txt', data_prefix='',
                 pipeline=test_pipeline))
test_evaluator = val_evaluator
